"""KinesisSource against a real moto server over HTTP, plus the faults moto cannot produce.

moto covers listing, lineage, every iterator type and the record data; expired iterators,
throttling and shard ends reach the source through ``tests/faults.py`` wrapped around the same
real client, so the recovery code runs against real responses.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.config import StartingPosition
from poller.engine.backoff import Backoff
from poller.engine.protocols import PartitionInfo, ReadResult, StartAt
from poller.errors import SourceNotFoundError
from poller.sources.kinesis.source import KinesisOptions, KinesisSource
from tests.conformance.kinesis_helpers import SHARD0
from tests.faults import FaultyClient, arrived_at, shard_end
from tests.kit import REGION, create_stream, poller_client, read_until

pytestmark = pytest.mark.integration

#: Quick pacing for tests that are not about pacing.
FAST = KinesisOptions(
    min_read_interval=0.0, idle_read_interval=0.02, backoff=Backoff(initial=0.01, maximum=0.05)
)
TRIM = StartAt(StartingPosition.TRIM_HORIZON)


@pytest.fixture
async def kinesis(moto_endpoint: str) -> AsyncIterator[Any]:
    async with poller_client(moto_endpoint, "kinesis") as client:
        yield client


async def put(kinesis: Any, arn: str, *payloads: bytes, key: str = "k") -> list[str]:
    """Write ``payloads`` in order; return their sequence numbers."""
    numbers = []
    for payload in payloads:
        response = await kinesis.put_record(StreamARN=arn, Data=payload, PartitionKey=key)
        numbers.append(response["SequenceNumber"])
    return numbers


async def wait_for_clock_past(moment: float) -> None:
    """Let the wall clock (moto's too: same host) pass ``moment``, a few ms away at most."""
    delay = moment - time.time()
    assert delay < 1.0
    if delay > 0:
        await anyio.sleep(delay + 0.002)
    assert time.time() > moment


# --- listing -----------------------------------------------------------------------------------


async def test_list_shards_follows_pagination(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name, shards=5)
    faults = FaultyClient(kinesis)
    source = KinesisSource(arn, faults, REGION, KinesisOptions(list_page_size=2))

    partitions = await source.list_partitions()

    assert [p.id for p in partitions] == [f"shardId-00000000000{i}" for i in range(5)]
    assert all(p.parents == () and not p.closed for p in partitions)
    calls = faults.calls_to("list_shards")
    assert calls[0].kwargs == {"StreamARN": arn, "MaxResults": 2}
    # AWS's rule first: the token alone. moto refuses that, so the source adds the ARN.
    assert calls[1].kwargs.keys() == {"NextToken", "MaxResults"}
    assert calls[1].error == "InvalidToken"
    succeeded = [call for call in calls if call.error is None]
    assert len(succeeded) == 3  # 2 + 2 + 1 shards

    # The endpoint's preference is remembered: a second listing makes no failing call.
    before = len(faults.calls)
    assert [p.id for p in await source.list_partitions()] == [p.id for p in partitions]
    again = faults.calls[before:]
    assert len(again) == 3 and all(call.error is None for call in again)


async def test_split_and_merge_give_parent_lineage(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name, shards=1)
    await put(kinesis, arn, b"before split")
    await kinesis.split_shard(StreamARN=arn, ShardToSplit=SHARD0, NewStartingHashKey=str(2**127))
    source = KinesisSource(arn, kinesis, REGION, FAST)

    after_split = {p.id: p for p in await source.list_partitions()}

    assert after_split[SHARD0] == PartitionInfo(SHARD0, (), closed=True)
    children = sorted(i for i, p in after_split.items() if p.parents == (SHARD0,))
    assert len(children) == 2
    assert all(not after_split[child].closed for child in children)

    await kinesis.merge_shards(
        StreamARN=arn, ShardToMerge=children[0], AdjacentShardToMerge=children[1]
    )
    after_merge = {p.id: p for p in await source.list_partitions()}
    (merged,) = [p for p in after_merge.values() if len(p.parents) == 2]
    assert merged.parents == (children[0], children[1])
    assert after_merge[children[0]].closed and after_merge[children[1]].closed
    assert not merged.closed


async def test_missing_stream_says_stream_not_found(kinesis: Any, unique_name: str) -> None:
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/{unique_name}-missing"
    source = KinesisSource(arn, kinesis, REGION, FAST)

    with pytest.raises(SourceNotFoundError) as listing:
        await source.list_partitions()
    assert str(listing.value) == f"Stream not found: {arn}"

    with pytest.raises(SourceNotFoundError) as opening:
        await source.open_reader(PartitionInfo(SHARD0), TRIM)
    assert str(opening.value) == f"Stream not found: {arn}"


# --- starting positions ------------------------------------------------------------------------


async def test_trim_horizon_reads_records_written_before(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    payloads = [f"r{i}".encode() for i in range(5)]
    numbers = await put(kinesis, arn, *payloads)
    source = KinesisSource(arn, kinesis, REGION, FAST)

    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)
    records = await read_until(reader, 5)

    assert [r.data for r in records] == payloads
    assert [r.position for r in records] == numbers
    assert [r.ordinal for r in records] == sorted(int(n) for n in numbers)
    assert all(r.partition == SHARD0 and r.key == "k" for r in records)
    assert reader.position == numbers[-1]
    await source.aclose()


async def test_latest_skips_records_written_before(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    await put(kinesis, arn, b"old-1", b"old-2", b"old-3")
    faults = FaultyClient(kinesis)
    source = KinesisSource(arn, faults, REGION, FAST)

    reader = await source.open_reader(PartitionInfo(SHARD0), StartAt(StartingPosition.LATEST))
    first = await reader.read()
    assert first.records == []
    await put(kinesis, arn, b"new-1", b"new-2")
    records = await read_until(reader, 2)

    assert [r.data for r in records] == [b"new-1", b"new-2"]
    assert faults.calls_to("get_shard_iterator")[0].kwargs["ShardIteratorType"] == "LATEST"
    await source.aclose()


async def test_at_timestamp_starts_at_records_arrived_since(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    await put(kinesis, arn, b"early-1", b"early-2")
    source = KinesisSource(arn, kinesis, REGION, FAST)
    early = await read_until(await source.open_reader(PartitionInfo(SHARD0), TRIM), 2)
    await wait_for_clock_past(early[-1].arrival + 0.01)
    boundary = datetime.now(UTC)
    await wait_for_clock_past(boundary.timestamp() + 0.01)
    await put(kinesis, arn, b"late-1", b"late-2")

    start = StartAt(StartingPosition.AT_TIMESTAMP, timestamp=boundary)
    reader = await source.open_reader(PartitionInfo(SHARD0), start)
    records = await read_until(reader, 2)

    assert [r.data for r in records] == [b"late-1", b"late-2"]
    assert (await reader.read()).records == []
    await source.aclose()


async def test_resume_after_checkpoint_wins_over_starting_position(
    kinesis: Any, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, b"a", b"b", b"c", b"d", b"e")
    faults = FaultyClient(kinesis)
    source = KinesisSource(arn, faults, REGION, FAST)

    start = StartAt(StartingPosition.LATEST, after=numbers[1])
    reader = await source.open_reader(PartitionInfo(SHARD0), start)
    records = await read_until(reader, 3)

    assert [r.data for r in records] == [b"c", b"d", b"e"]
    (request,) = faults.calls_to("get_shard_iterator")
    assert request.kwargs == {
        "StreamARN": arn,
        "ShardId": SHARD0,
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": numbers[1],
    }
    await source.aclose()


# --- rendering ---------------------------------------------------------------------------------


async def test_event_record_shape(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    payload = b'\x00\xff{"event_type": "function_1"}'
    (number,) = await put(kinesis, arn, payload, key="pk-\u00e9")
    source = KinesisSource(arn, kinesis, REGION, FAST)
    (record,) = await read_until(await source.open_reader(PartitionInfo(SHARD0), TRIM), 1)

    event = source.codec.render_event([record])

    assert list(event) == ["Records"]
    (rendered,) = event["Records"]
    assert rendered == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "pk-\u00e9",
            "sequenceNumber": number,
            "data": base64.b64encode(payload).decode(),
            "approximateArrivalTimestamp": record.arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD0}:{number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/poller",
        "awsRegion": REGION,
        "eventSourceARN": arn,
    }
    assert type(rendered["kinesis"]["approximateArrivalTimestamp"]) is float
    assert abs(record.arrival - time.time()) < 60
    assert round(record.arrival, 3) == record.arrival  # millisecond precision, as AWS
    assert base64.b64decode(rendered["kinesis"]["data"]) == payload
    assert source.codec.item_identifier(record) == number
    # The size estimate is what the record adds to the JSON payload, give or take a few digits.
    assert abs(record.size - (len(json.dumps(rendered)) + 2)) <= 4
    await source.aclose()


async def test_size_estimate_tracks_the_rendered_payload(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    await put(kinesis, arn, *(bytes(range(n)) for n in (0, 1, 2, 3, 100, 255)))
    source = KinesisSource(arn, kinesis, REGION, FAST)
    records = await read_until(await source.open_reader(PartitionInfo(SHARD0), TRIM), 6)

    payload = len(json.dumps(source.codec.render_event(records)))

    assert abs(sum(r.size for r in records) - payload) <= 4 * len(records) + len('{"Records": []}')
    await source.aclose()


async def test_batch_info_shape(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, b"one", b"two", b"three")
    faults = FaultyClient(kinesis)
    old = datetime(2019, 11, 14, 0, 38, 4, 835000, tzinfo=UTC)
    faults.rewrite("get_records", arrived_at(old))
    source = KinesisSource(arn, faults, REGION, FAST)
    records = await read_until(await source.open_reader(PartitionInfo(SHARD0), TRIM), 3)

    assert {r.arrival for r in records} == {old.timestamp()}
    assert source.codec.batch_info(records) == (
        "KinesisBatchInfo",
        {
            "shardId": SHARD0,
            "startSequenceNumber": numbers[0],
            "endSequenceNumber": numbers[2],
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:04.835Z",
            "batchSize": 3,
            "streamArn": arn,
        },
    )
    assert source.codec.batch_info(records[1:2])[1]["startSequenceNumber"] == numbers[1]
    assert source.codec.batch_info(records[1:2])[1]["endSequenceNumber"] == numbers[1]
    await source.aclose()


# --- recovery through injected faults ----------------------------------------------------------


async def test_expired_iterator_resumes_after_last_handed_out(
    kinesis: Any, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, *(f"r{i}".encode() for i in range(6)))
    faults = FaultyClient(kinesis)
    options = KinesisOptions(read_limit=2, min_read_interval=0.0, idle_read_interval=0.02)
    source = KinesisSource(arn, faults, REGION, options)
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    first = await reader.read()
    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    second = await reader.read()
    rest = await read_until(reader, 2)

    delivered = [r.position for r in [*first.records, *second.records, *rest]]
    assert delivered == numbers  # nothing skipped, nothing repeated
    renewal = faults.calls_to("get_shard_iterator")[-1]
    assert renewal.kwargs["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert renewal.kwargs["StartingSequenceNumber"] == numbers[1]
    assert [c.error for c in faults.calls_to("get_records")][:3] == [
        None,
        "ExpiredIteratorException",
        None,
    ]
    await source.aclose()


async def test_expired_iterator_before_any_record_keeps_the_start(
    kinesis: Any, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, b"a", b"b")
    faults = FaultyClient(kinesis)
    source = KinesisSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    records = await read_until(reader, 2)

    assert [r.position for r in records] == numbers
    types = [c.kwargs["ShardIteratorType"] for c in faults.calls_to("get_shard_iterator")]
    assert types == ["TRIM_HORIZON", "TRIM_HORIZON"]
    await source.aclose()


async def test_expired_latest_iterator_renews_at_open_time(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    faults = FaultyClient(kinesis)
    source = KinesisSource(arn, faults, REGION, FAST)
    opened = datetime.now(UTC)
    reader = await source.open_reader(PartitionInfo(SHARD0), StartAt(StartingPosition.LATEST))
    assert (await reader.read()).records == []
    # Written while the iterator was unused: a fresh LATEST iterator would skip it.
    await put(kinesis, arn, b"written while expired")

    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    records = await read_until(reader, 1)

    assert [r.data for r in records] == [b"written while expired"]
    renewal = faults.calls_to("get_shard_iterator")[-1].kwargs
    assert renewal["ShardIteratorType"] == "AT_TIMESTAMP"
    assert renewal["Timestamp"] <= opened
    await source.aclose()


async def test_throttling_backs_off_and_skips_nothing(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, b"a", b"b", b"c", b"d")
    faults = FaultyClient(kinesis)
    options = KinesisOptions(
        read_limit=2, min_read_interval=0.0, backoff=Backoff(initial=0.01, maximum=0.05)
    )
    source = KinesisSource(arn, faults, REGION, options)
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    faults.fail("get_records", code="ProvisionedThroughputExceededException", times=3)
    with capture_logs() as logs:
        first = await reader.read()
    rest = await read_until(reader, 2)

    assert [r.position for r in [*first.records, *rest]] == numbers
    errors = [c.error for c in faults.calls_to("get_records")]
    assert errors[:4] == [*(["ProvisionedThroughputExceededException"] * 3), None]
    retries = [e for e in logs if e["event"] == "aws call throttled, backing off"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert all(e["shard"] == SHARD0 and e["log_level"] == "warning" for e in retries)
    # The throttled calls reused the iterator: no new one was requested.
    assert len(faults.calls_to("get_shard_iterator")) == 1
    await source.aclose()


async def test_other_errors_propagate(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    faults = FaultyClient(kinesis)
    source = KinesisSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    faults.fail("get_records", code="AccessDeniedException")
    with pytest.raises(kinesis.exceptions.ClientError) as raised:
        await reader.read()
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    await source.aclose()


async def test_forced_shard_end_reports_children(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, b"a", b"b", b"c")
    faults = FaultyClient(kinesis)
    child = {
        "ShardId": "shardId-000000000001",
        "ParentShards": [SHARD0],
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
    }
    faults.rewrite("get_records", shard_end([child]))
    source = KinesisSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    result = await reader.read()

    assert [r.position for r in result.records] == numbers
    assert result.ended
    assert result.children == (PartitionInfo("shardId-000000000001", (SHARD0,)),)
    calls = len(faults.calls)
    assert await reader.read() == ReadResult((), ended=True, children=result.children)
    assert len(faults.calls) == calls  # an ended reader calls AWS no more
    await source.aclose()


async def test_closed_shard_ends_at_its_ending_sequence_number(
    kinesis: Any, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name)
    numbers = await put(kinesis, arn, b"a", b"b", b"c")
    await kinesis.split_shard(StreamARN=arn, ShardToSplit=SHARD0, NewStartingHashKey=str(2**127))
    options = KinesisOptions(read_limit=2, min_read_interval=0.0, idle_read_interval=0.02)
    source = KinesisSource(arn, kinesis, REGION, options)
    partitions = {p.id: p for p in await source.list_partitions()}
    children = tuple(p for p in partitions.values() if p.parents == (SHARD0,))

    reader = await source.open_reader(partitions[SHARD0], TRIM)
    first = await reader.read()
    last = await reader.read()

    assert not first.ended
    assert [r.position for r in [*first.records, *last.records]] == numbers
    assert last.ended and last.children == children

    # Resuming from a checkpoint at the shard's end ends at once, with no record.
    resumed = await source.open_reader(
        partitions[SHARD0], StartAt(TRIM.starting_position, numbers[-1])
    )
    result = await resumed.read()
    assert result.ended and result.records == []
    await source.aclose()


async def test_reads_are_paced_per_shard(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    await put(kinesis, arn, b"a", b"b")
    faults = FaultyClient(kinesis)
    options = KinesisOptions(read_limit=1, min_read_interval=0.2, idle_read_interval=0.5)
    source = KinesisSource(arn, faults, REGION, options)
    assert source.min_read_interval == 0.2
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    for _ in range(4):  # a, b, then two idle reads
        await reader.read()

    at = [c.at for c in faults.calls_to("get_records")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.19  # after records: min_read_interval
    assert gaps[2] >= 0.49  # after an empty read at the tip: idle_read_interval
    await source.aclose()


async def test_closed_reader_refuses_reads(kinesis: Any, unique_name: str) -> None:
    arn = await create_stream(kinesis, unique_name)
    source = KinesisSource(arn, kinesis, REGION, FAST)
    reader = await source.open_reader(PartitionInfo(SHARD0), TRIM)

    await source.aclose()

    with pytest.raises(anyio.ClosedResourceError):
        await reader.read()
