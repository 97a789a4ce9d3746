"""DynamoDBStreamsSource against a real moto server over HTTP, plus what moto cannot produce.

moto covers the stream itself: INSERT/MODIFY/REMOVE records for every view type, iterators and
the records' DynamoDB JSON. It keeps one shard per stream and never expires, trims or throttles;
shard rollover (parent, child, grandchild), expired iterators, trimmed records and throttling reach
the source through ``tests/faults.py`` wrapped around the same real client (``VirtualShards`` cuts
moto's shard into a lineage), so the recovery code runs against real responses.
"""

from __future__ import annotations

import base64
import itertools
import json
import urllib.request
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from structlog.testing import capture_logs

from poller.config import StartingPosition
from poller.engine.backoff import Backoff
from poller.engine.protocols import PartitionInfo, ReadResult, StartAt, TrimmedRange
from poller.errors import SourceNotFoundError
from poller.records import Batch, Record
from poller.runtime.worker import Worker
from poller.sources.dynamodb_streams import DynamoDBRecord, from_attribute_value
from poller.sources.dynamodb_streams.source import DynamoDBStreamsOptions, DynamoDBStreamsSource
from poller.stores import SqliteStore
from tests.conformance.dynamodb_helpers import DynamoDBSetup, dynamodb_aws, virtual_streams
from tests.faults import FaultyClient, VirtualShards, created_at, shard_end, trimmed_before
from tests.kit import (
    REGION,
    LambdaRecorder,
    Seen,
    TypedRecorder,
    drain_queue,
    poller_client,
    poller_config,
    read_until,
    run_until_idle,
    stream_mapping,
    wait_until,
)

pytestmark = pytest.mark.integration

#: Quick pacing for tests that are not about pacing.
FAST = DynamoDBStreamsOptions(
    min_read_interval=0.0, idle_read_interval=0.02, backoff=Backoff(initial=0.01, maximum=0.05)
)
TRIM = StartAt(StartingPosition.TRIM_HORIZON)
VIEW_TYPES = ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
KEY = {"pk": {"S": "a"}, "sk": {"N": "1"}}


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[DynamoDBSetup]:
    async with dynamodb_aws(moto_endpoint) as setup:
        yield setup


@pytest.fixture
async def streams(moto_endpoint: str) -> AsyncIterator[Any]:
    """The client poller itself would use (timestamps as epoch floats)."""
    async with poller_client(moto_endpoint, "dynamodbstreams") as client:
        yield client


async def only_shard(source: DynamoDBStreamsSource) -> PartitionInfo:
    (partition,) = await source.list_partitions()
    return partition


async def insert_modify_remove(aws: DynamoDBSetup, table: str) -> None:
    """One item's life: put, update (a new attribute), delete."""
    await aws.dynamodb.put_item(TableName=table, Item={**KEY, "v": {"S": "one"}})
    await aws.dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET v = :v, n = :n",
        ExpressionAttributeValues={":v": {"S": "two"}, ":n": {"N": "2"}},
    )
    await aws.dynamodb.delete_item(TableName=table, Key=KEY)


def wire_records(endpoint: str, stream_arn: str) -> list[dict[str, Any]]:
    """The stream's records as JSON text straight off the wire, no SDK in between (blocking)."""

    def call(target: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            endpoint,
            data=json.dumps(body).encode(),
            headers={
                "X-Amz-Target": f"DynamoDBStreams_20120810.{target}",
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/"
                f"{REGION}/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    shard = call("DescribeStream", {"StreamArn": stream_arn})["StreamDescription"]["Shards"][0]
    iterator = call(
        "GetShardIterator",
        {"StreamArn": stream_arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
    )["ShardIterator"]
    records: list[dict[str, Any]] = call("GetRecords", {"ShardIterator": iterator})["Records"]
    return records


# --- shape: view types, DynamoDB JSON, typed records ---------------------------------------------


@pytest.mark.parametrize("view_type", VIEW_TYPES)
async def test_insert_modify_remove_arrive_in_order_with_the_view_types_images(
    aws: DynamoDBSetup, streams: Any, unique_name: str, view_type: str
) -> None:
    arn = await aws.create_table(unique_name, view_type)
    await insert_modify_remove(aws, unique_name)
    numbers = await aws.sequence_numbers(arn)
    source = DynamoDBStreamsSource(arn, streams, REGION, FAST)
    reader = await source.open_reader(await only_shard(source), TRIM)

    records = await read_until(reader, 3)

    assert [r.position for r in records] == numbers
    assert all(isinstance(r, DynamoDBRecord) for r in records)
    events = source.codec.render_event(records)["Records"]
    assert [e["eventName"] for e in events] == ["INSERT", "MODIFY", "REMOVE"]
    new = view_type in {"NEW_IMAGE", "NEW_AND_OLD_IMAGES"}
    old = view_type in {"OLD_IMAGE", "NEW_AND_OLD_IMAGES"}
    images = [("NewImage" in e["dynamodb"], "OldImage" in e["dynamodb"]) for e in events]
    assert images == [(new, False), (new, old), (False, old)]
    for event, number in zip(events, numbers, strict=True):
        assert list(event) == [
            "eventID",
            "eventName",
            "eventVersion",
            "eventSource",
            "awsRegion",
            "dynamodb",
            "eventSourceARN",
        ]
        assert event["eventVersion"] == "1.1"
        assert event["eventSource"] == "aws:dynamodb"
        assert event["awsRegion"] == REGION
        assert event["eventSourceARN"] == arn
        block = event["dynamodb"]
        assert block["Keys"] == KEY
        assert block["SequenceNumber"] == number
        assert block["StreamViewType"] == view_type
        assert type(block["ApproximateCreationDateTime"]) is float
        assert isinstance(block["SizeBytes"], int)
    if new:
        assert events[0]["dynamodb"]["NewImage"] == {**KEY, "v": {"S": "one"}}
        assert events[1]["dynamodb"]["NewImage"] == {**KEY, "v": {"S": "two"}, "n": {"N": "2"}}
    if old:
        assert events[1]["dynamodb"]["OldImage"] == {**KEY, "v": {"S": "one"}}
        assert events[2]["dynamodb"]["OldImage"] == {**KEY, "v": {"S": "two"}, "n": {"N": "2"}}
    await source.aclose()


async def test_dynamodb_block_is_exactly_what_the_stream_returned(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    item = {
        **KEY,
        "s": {"S": "caf\u00e9 \u2615"},
        "n": {"N": "-12.50"},
        "b": {"B": b"\x00\xff\x10"},
        "yes": {"BOOL": True},
        "none": {"NULL": True},
        "m": {"M": {"inner": {"L": [{"N": "1"}, {"S": "x"}, {"B": b"\x01"}]}}},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"\x02", b"\x03"]},
    }
    await aws.dynamodb.put_item(TableName=unique_name, Item=item)
    await aws.dynamodb.update_item(
        TableName=unique_name,
        Key=KEY,
        UpdateExpression="SET s = :s",
        ExpressionAttributeValues={":s": {"S": "changed"}},
    )
    source = DynamoDBStreamsSource(arn, streams, REGION, FAST)
    records = await read_until(await source.open_reader(await only_shard(source), TRIM), 2)

    wire = await anyio.to_thread.run_sync(wire_records, aws.endpoint, arn)
    events = source.codec.render_event(records)["Records"]

    assert [e["dynamodb"] for e in events] == [w["dynamodb"] for w in wire]
    assert [e["eventID"] for e in events] == [w["eventID"] for w in wire]
    binary = events[0]["dynamodb"]["NewImage"]["b"]["B"]
    assert base64.b64decode(binary) == b"\x00\xff\x10"
    # The size estimate is what each record adds to the JSON payload.
    for record, event in zip(records, events, strict=True):
        assert record.size == len(json.dumps(event)) + 2
    assert (
        sum(r.size for r in records)
        == len(json.dumps({"Records": events})) - len('{"Records": []}') + 2
    )
    await source.aclose()


async def test_typed_records_expose_raw_and_python_images(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    await aws.dynamodb.put_item(
        TableName=unique_name,
        Item={
            **KEY,
            "n": {"N": "0.1"},
            "b": {"B": b"\x00"},
            "l": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {"k": {"SS": ["x"]}}}]},
            "ns": {"NS": ["3"]},
            "bs": {"BS": [b"\x09"]},
        },
    )
    await aws.dynamodb.delete_item(TableName=unique_name, Key=KEY)
    source = DynamoDBStreamsSource(arn, streams, REGION, FAST)
    insert, remove = await read_until(await source.open_reader(await only_shard(source), TRIM), 2)
    assert isinstance(insert, DynamoDBRecord) and isinstance(remove, DynamoDBRecord)

    assert insert.event_name == "INSERT" and remove.event_name == "REMOVE"
    assert insert.keys == KEY
    assert insert.item_keys == {"pk": "a", "sk": Decimal("1")}
    assert insert.new_image is not None and insert.new_image["b"] == {"B": "AA=="}
    assert insert.new_item == {
        "pk": "a",
        "sk": Decimal("1"),
        "n": Decimal("0.1"),
        "b": b"\x00",
        "l": [None, False, {"k": {"x"}}],
        "ns": {Decimal("3")},
        "bs": {b"\x09"},
    }
    assert insert.old_image is None and insert.old_item is None
    assert remove.new_item is None
    assert remove.old_item == insert.new_item
    assert insert.stream_view_type == "NEW_AND_OLD_IMAGES"
    assert insert.sequence_number == insert.position and insert.shard_id == insert.partition
    assert insert.event_id == insert.native["eventID"]
    assert insert.approximate_creation_time == insert.dynamodb["ApproximateCreationDateTime"]
    assert insert.size_bytes == insert.dynamodb["SizeBytes"]
    assert insert.user_identity is None
    # Lanes keep each item's changes in order: the ordering key is the item's whole key.
    assert insert.key == remove.key == '{"pk":{"S":"a"},"sk":{"N":"1"}}'
    await source.aclose()


def test_attribute_values_decode_every_type() -> None:
    assert from_attribute_value({"S": "x"}) == "x"
    assert from_attribute_value({"N": "10.000"}) == Decimal("10.000")
    assert from_attribute_value({"B": "AAE="}) == b"\x00\x01"
    assert from_attribute_value({"B": b"\x00\x01"}) == b"\x00\x01"
    assert from_attribute_value({"BOOL": False}) is False
    assert from_attribute_value({"NULL": True}) is None
    assert from_attribute_value({"M": {"a": {"N": "1"}}}) == {"a": Decimal(1)}
    assert from_attribute_value({"L": [{"S": "a"}, {"L": []}]}) == ["a", []]
    assert from_attribute_value({"SS": ["a", "b"]}) == {"a", "b"}
    assert from_attribute_value({"NS": ["1", "1.5"]}) == {Decimal(1), Decimal("1.5")}
    assert from_attribute_value({"BS": ["AA==", b"\x01"]}) == {b"\x00", b"\x01"}
    for bad in ({}, {"S": "a", "N": "1"}, {"X": 1}, {"B": "not base64!"}):
        with pytest.raises(ValueError):
            from_attribute_value(bad)


async def test_user_identity_of_ttl_deletes_passes_through(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    """TTL deletes carry userIdentity; moto never sends one, so it is added to the response."""
    arn = await aws.create_table(unique_name)
    await aws.dynamodb.put_item(TableName=unique_name, Item=KEY)
    await aws.dynamodb.delete_item(TableName=unique_name, Key=KEY)
    identity = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

    def by_ttl(_kwargs: Any, response: dict[str, Any]) -> dict[str, Any]:
        records = [
            {**r, "userIdentity": identity} if r["eventName"] == "REMOVE" else r
            for r in response["Records"]
        ]
        return {**response, "Records": records}

    faults = FaultyClient(streams)
    faults.rewrite("get_records", by_ttl, times=None)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    records = await read_until(await source.open_reader(await only_shard(source), TRIM), 2)

    insert, remove = source.codec.render_event(records)["Records"]
    assert "userIdentity" not in insert
    assert remove["userIdentity"] == identity
    assert list(remove)[-2:] == ["userIdentity", "eventSourceARN"]
    assert records[1].size == len(json.dumps(remove)) + 2
    await source.aclose()


async def test_batch_info_spells_arrivals_to_the_second(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 3)
    created = datetime(2019, 11, 14, 0, 13, 19, 835000, tzinfo=UTC)
    faults = FaultyClient(streams)
    faults.rewrite("get_records", created_at(created), times=None)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    partition = await only_shard(source)
    records = await read_until(await source.open_reader(partition, TRIM), 3)

    assert {r.arrival for r in records} == {created.timestamp()}
    assert source.codec.batch_info(records) == (
        "DDBStreamBatchInfo",
        {
            "shardId": partition.id,
            "startSequenceNumber": numbers[0],
            "endSequenceNumber": numbers[2],
            "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
            "batchSize": 3,
            "streamArn": arn,
        },
    )
    assert source.codec.item_identifier(records[1]) == numbers[1]
    await source.aclose()


# --- listing, lineage, starting positions ------------------------------------------------------


async def test_describe_stream_follows_exclusive_start_shard_id(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    lineage = VirtualShards(streams, first="shardId-00000001000000000000-00000000")
    for n in range(1, 5):
        lineage.roll_over(1100000000017454423009 + n, f"shardId-0000000100000000000{n}-0000000{n}")
    faults = FaultyClient(lineage)
    source = DynamoDBStreamsSource(arn, faults, REGION, DynamoDBStreamsOptions(list_page_size=2))

    partitions = await source.list_partitions()

    ids = [shard.id for shard in lineage.shards]
    assert [p.id for p in partitions] == ids
    assert [p.parents for p in partitions] == [(), *((parent,) for parent in ids[:-1])]
    assert [p.closed for p in partitions] == [True, True, True, True, False]
    calls = faults.calls_to("describe_stream")
    assert [c.kwargs.get("ExclusiveStartShardId") for c in calls] == [None, ids[1], ids[3]]
    assert all(c.kwargs["Limit"] == 2 and c.kwargs["StreamArn"] == arn for c in calls)


async def test_moto_lists_one_open_shard(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    source = DynamoDBStreamsSource(arn, streams, REGION)

    partition = await only_shard(source)

    assert partition.parents == () and not partition.closed
    assert source.kind == "dynamodb"
    assert source.idle_poll_interval == 0.25  # Lambda polls a caught-up shard 4 times a second
    assert source.min_read_interval == 0.0
    assert source.supports_at_timestamp is False


async def test_missing_stream_says_stream_not_found(streams: Any, unique_name: str) -> None:
    arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{unique_name}/stream/2026-01-01T00:00:00"
    source = DynamoDBStreamsSource(arn, streams, REGION, FAST)

    with pytest.raises(SourceNotFoundError) as listing:
        await source.list_partitions()
    assert str(listing.value) == f"Stream not found: {arn}"

    shard = PartitionInfo("shardId-00000001541626099285-f35f62ef")
    with pytest.raises(SourceNotFoundError) as opening:
        await source.open_reader(shard, TRIM)
    assert str(opening.value) == f"Stream not found: {arn}"


def test_only_stream_arns_and_known_positions_are_taken() -> None:
    client = object()  # never called
    with pytest.raises(ValueError, match="not a DynamoDB stream ARN"):
        DynamoDBStreamsSource("arn:aws:dynamodb:us-east-1:1:table/t", client, REGION)
    with pytest.raises(ValueError, match="not a DynamoDB stream ARN"):
        DynamoDBStreamsSource("arn:aws:kinesis:us-east-1:1:stream/s", client, REGION)
    with pytest.raises(ValueError, match="read_limit 1001"):
        DynamoDBStreamsOptions(read_limit=1001)
    with pytest.raises(ValueError, match="list_page_size 101"):
        DynamoDBStreamsOptions(list_page_size=101)


async def test_at_timestamp_is_refused_by_the_reader(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    source = DynamoDBStreamsSource(arn, streams, REGION, FAST)
    start = StartAt(StartingPosition.AT_TIMESTAMP, timestamp=datetime.now(UTC))

    with pytest.raises(ValueError, match="DynamoDB Streams has no AT_TIMESTAMP"):
        await source.open_reader(await only_shard(source), start)


async def test_latest_skips_records_written_before(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    await aws.put_items(unique_name, 3)
    faults = FaultyClient(streams)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)

    reader = await source.open_reader(await only_shard(source), StartAt(StartingPosition.LATEST))
    assert (await reader.read()).records == []
    await aws.put_items(unique_name, 2, first=3)
    records = await read_until(reader, 2)

    assert [r.position for r in records] == (await aws.sequence_numbers(arn))[3:]
    assert faults.calls_to("get_shard_iterator")[0].kwargs["ShardIteratorType"] == "LATEST"
    await source.aclose()


async def test_resume_after_checkpoint_wins_over_starting_position(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 5)
    faults = FaultyClient(streams)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    partition = await only_shard(source)

    reader = await source.open_reader(partition, StartAt(StartingPosition.LATEST, numbers[1]))
    records = await read_until(reader, 3)

    assert [r.position for r in records] == numbers[2:]
    (request,) = faults.calls_to("get_shard_iterator")
    assert request.kwargs == {
        "StreamArn": arn,
        "ShardId": partition.id,
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "SequenceNumber": numbers[1],
    }
    await source.aclose()


# --- recovery through injected faults ----------------------------------------------------------


async def test_expired_iterator_resumes_after_last_handed_out(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 6)
    faults = FaultyClient(streams)
    options = DynamoDBStreamsOptions(read_limit=2, idle_read_interval=0.02)
    source = DynamoDBStreamsSource(arn, faults, REGION, options)
    reader = await source.open_reader(await only_shard(source), TRIM)

    first = await reader.read()
    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    second = await reader.read()
    rest = await read_until(reader, 2)

    delivered = [r.position for r in [*first.records, *second.records, *rest]]
    assert delivered == numbers  # nothing skipped, nothing repeated
    renewal = faults.calls_to("get_shard_iterator")[-1]
    assert renewal.kwargs["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert renewal.kwargs["SequenceNumber"] == numbers[1]
    await source.aclose()


async def test_expired_iterator_before_any_record_keeps_the_start(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 2)
    faults = FaultyClient(streams)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(await only_shard(source), TRIM)

    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    records = await read_until(reader, 2)

    assert [r.position for r in records] == numbers
    types = [c.kwargs["ShardIteratorType"] for c in faults.calls_to("get_shard_iterator")]
    assert types == ["TRIM_HORIZON", "TRIM_HORIZON"]
    await source.aclose()


async def test_expired_latest_iterator_passes_over_what_predates_the_reader(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    """No AT_TIMESTAMP here: the renewal reads from the oldest record and passes over records
    created before the reader opened, so what was written while it expired is not skipped."""
    arn = await aws.create_table(unique_name)
    older = await aws.write_records(unique_name, arn, 3)
    faults = FaultyClient(streams)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    faults.rewrite("get_records", created_at(an_hour_ago, set(older)), times=None)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(await only_shard(source), StartAt(StartingPosition.LATEST))
    assert (await reader.read()).records == []
    written_while_expired = await aws.write_records(unique_name, arn, 2)

    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    records = await read_until(reader, 2)

    assert [r.position for r in records] == written_while_expired
    renewal = faults.calls_to("get_shard_iterator")[-1].kwargs
    assert renewal["ShardIteratorType"] == "TRIM_HORIZON"
    await source.aclose()


async def test_trimmed_records_resume_at_the_oldest_and_are_counted(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 6)
    faults = FaultyClient(streams)
    options = DynamoDBStreamsOptions(read_limit=2, idle_read_interval=0.02)
    source = DynamoDBStreamsSource(arn, faults, REGION, options)
    partition = await only_shard(source)
    reader = await source.open_reader(partition, TRIM)
    first = await reader.read()

    # Records 2 and 3 pass the retention before they are read: the stream says so once, and
    # from then on its oldest record is number 4.
    faults.fail("get_records", code="TrimmedDataAccessException", times=1)
    faults.rewrite("get_records", trimmed_before(numbers[4]), times=None)
    with capture_logs() as logs:
        rest = await read_until(reader, 2)

    assert [r.position for r in [*first.records, *rest]] == numbers[:2] + numbers[4:]
    assert source.trimmed_events == 1
    (lost,) = source.trimmed_ranges
    assert lost == TrimmedRange(partition.id, numbers[1], numbers[4], lost.noticed_at)
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == [
        "unread records were trimmed; resuming at the oldest available record",
        "records lost to trimming",
    ]
    assert errors[0]["after"] == numbers[1]
    assert errors[0]["code"] == "TrimmedDataAccessException"
    assert (errors[1]["after"], errors[1]["resumed_at"]) == (numbers[1], numbers[4])
    assert errors[1]["shard"] == partition.id
    resumed = faults.calls_to("get_shard_iterator")[-1].kwargs
    assert resumed["ShardIteratorType"] == "TRIM_HORIZON"
    await source.aclose()


async def test_resuming_after_trimming_never_repeats_a_record(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    """The oldest record after a trim may be one already handed out: it is not handed out again."""
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 4)
    faults = FaultyClient(streams)
    options = DynamoDBStreamsOptions(read_limit=2, idle_read_interval=0.02)
    source = DynamoDBStreamsSource(arn, faults, REGION, options)
    partition = await only_shard(source)
    reader = await source.open_reader(partition, TRIM)
    first = await reader.read()

    faults.fail("get_records", code="TrimmedDataAccessException", times=1)
    rest = await read_until(reader, 2)

    assert [r.position for r in [*first.records, *rest]] == numbers
    assert source.trimmed_events == 1
    assert [(t.after, t.resumed_at) for t in source.trimmed_ranges] == [(numbers[1], numbers[2])]
    await source.aclose()


async def test_trimmed_checkpoint_resumes_at_the_oldest_record(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 4)
    faults = FaultyClient(streams)
    faults.fail("get_shard_iterator", code="TrimmedDataAccessException", times=1)
    faults.rewrite("get_records", trimmed_before(numbers[2]), times=None)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    partition = await only_shard(source)

    reader = await source.open_reader(partition, StartAt(StartingPosition.LATEST, numbers[0]))
    records = await read_until(reader, 2)

    assert [r.position for r in records] == numbers[2:]
    assert [(t.after, t.resumed_at) for t in source.trimmed_ranges] == [(numbers[0], numbers[2])]
    types = [c.kwargs["ShardIteratorType"] for c in faults.calls_to("get_shard_iterator")]
    assert types == ["AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON"]
    await source.aclose()


async def test_throttling_backs_off_and_skips_nothing(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 4)
    faults = FaultyClient(streams)
    options = DynamoDBStreamsOptions(read_limit=2, backoff=Backoff(initial=0.01, maximum=0.05))
    source = DynamoDBStreamsSource(arn, faults, REGION, options)
    faults.fail("describe_stream", code="LimitExceededException", times=2)
    partition = await only_shard(source)
    reader = await source.open_reader(partition, TRIM)

    faults.fail("get_records", code="LimitExceededException", times=3)
    with capture_logs() as logs:
        first = await reader.read()
    rest = await read_until(reader, 2)

    assert [r.position for r in [*first.records, *rest]] == numbers
    errors = [c.error for c in faults.calls_to("get_records")]
    assert errors[:4] == [*(["LimitExceededException"] * 3), None]
    retries = [e for e in logs if e["event"] == "aws call throttled, backing off"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert all(e["shard"] == partition.id and e["log_level"] == "warning" for e in retries)
    assert [c.error for c in faults.calls_to("describe_stream")][:3] == [
        "LimitExceededException",
        "LimitExceededException",
        None,
    ]
    assert len(faults.calls_to("get_shard_iterator")) == 1
    await source.aclose()


async def test_other_errors_propagate(aws: DynamoDBSetup, streams: Any, unique_name: str) -> None:
    arn = await aws.create_table(unique_name)
    faults = FaultyClient(streams)
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(await only_shard(source), TRIM)

    faults.fail("get_records", code="AccessDeniedException")
    with pytest.raises(streams.exceptions.ClientError) as raised:
        await reader.read()
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    await source.aclose()


async def test_closed_shard_ends_with_a_null_iterator_and_names_its_child(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 3)
    lineage = VirtualShards(streams)
    parent = lineage.shards[0].id
    lineage.roll_over(numbers[1], "shardId-00000001000000000001-0000bbbb")
    faults = FaultyClient(lineage)
    options = DynamoDBStreamsOptions(read_limit=1, idle_read_interval=0.02)
    source = DynamoDBStreamsSource(arn, faults, REGION, options)
    partitions = {p.id: p for p in await source.list_partitions()}
    child = partitions["shardId-00000001000000000001-0000bbbb"]
    assert child.parents == (parent,) and partitions[parent].closed

    reader = await source.open_reader(partitions[parent], TRIM)
    results = [await reader.read() for _ in range(2)]

    assert [r.position for result in results for r in result.records] == numbers[:2]
    # The page that reaches the ending sequence number comes with a null iterator.
    assert [result.ended for result in results] == [False, True]
    assert results[-1].children == (child,)
    calls = len(faults.calls)
    assert await reader.read() == ReadResult((), ended=True, children=(child,))
    assert len(faults.calls) == calls  # an ended reader calls AWS no more

    child_reader = await source.open_reader(child, TRIM)
    assert [r.position for r in await read_until(child_reader, 1)] == numbers[2:]
    await source.aclose()


async def test_shard_end_from_a_null_iterator_alone(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    """A shard the listing still shows open ends when GetRecords says so."""
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 2)
    faults = FaultyClient(streams)
    faults.rewrite("get_records", shard_end([]))
    source = DynamoDBStreamsSource(arn, faults, REGION, FAST)
    reader = await source.open_reader(await only_shard(source), TRIM)

    result = await reader.read()

    assert [r.position for r in result.records] == numbers
    assert result.ended and result.children == ()
    await source.aclose()


async def test_reads_are_paced_four_a_second_when_idle(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    await aws.put_items(unique_name, 2)
    faults = FaultyClient(streams)
    source = DynamoDBStreamsSource(arn, faults, REGION, DynamoDBStreamsOptions(read_limit=1))
    reader = await source.open_reader(await only_shard(source), TRIM)

    for _ in range(4):  # a, b, then two idle reads
        await reader.read()

    calls = faults.calls_to("get_records")
    # After records: no pause of the reader's own between one call's answer and the next call
    # (the server's time left out, so a slow moto under load does not count as a pause).
    pauses = [later.at - earlier.done for earlier, later in itertools.pairwise(calls)]
    assert pauses[0] < 0.2 and pauses[1] < 0.2  # records came back: read again at once
    # After an empty read at the tip: Lambda's 4 polls a second, call start to call start.
    assert calls[3].at - calls[2].at >= 0.24
    await source.aclose()


async def test_closed_reader_refuses_reads(
    aws: DynamoDBSetup, streams: Any, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    source = DynamoDBStreamsSource(arn, streams, REGION, FAST)
    reader = await source.open_reader(await only_shard(source), TRIM)

    await source.aclose()

    with pytest.raises(anyio.ClosedResourceError):
        await reader.read()


# --- a worker on a DynamoDB stream ---------------------------------------------------------------


async def test_parent_child_grandchild_are_read_in_lineage_order(
    aws: DynamoDBSetup, unique_name: str, tmp_path: Path
) -> None:
    """A closed parent, its closed child and an open grandchild, all listed from the start: each
    shard starts only after the one before it is fully processed and checkpointed as finished."""
    arn = await aws.create_table(unique_name)
    numbers = await aws.write_records(unique_name, arn, 9)
    made: list[VirtualShards] = []
    wrap = virtual_streams(made)

    def lineage(service: str, client: Any) -> Any:
        wrapped = wrap(service, client)
        if made and wrapped is made[-1]:
            made[-1].roll_over(numbers[2], "shardId-00000001000000000001-0000bbbb")
            made[-1].roll_over(numbers[5], "shardId-00000001000000000002-0000cccc")
        return wrapped

    mapping_id = "ddb-lineage"
    handler = TypedRecorder()
    state = tmp_path / "state.db"
    config = poller_config(
        aws.endpoint,
        stream_mapping(arn, uuid=mapping_id, BatchSize=2),
        store_url=f"sqlite:///{state}",
    )

    await run_until_idle(Worker(config, handlers={mapping_id: handler}, wrap_client=lineage))

    parent, child, grandchild = (shard.id for shard in made[0].shards)
    assert handler.delivered() == numbers
    assert handler.partitions() == [parent, child, grandchild]
    by_shard = {s: handler.seen(s) for s in (parent, child, grandchild)}
    assert by_shard == {parent: numbers[:3], child: numbers[3:6], grandchild: numbers[6:]}
    async with SqliteStore(state) as store:
        checkpoints = [await store.get_checkpoint(mapping_id, s) for s in (parent, child)]
        assert all(c is not None and c.finished for c in checkpoints)
        last = await store.get_checkpoint(mapping_id, grandchild)
        assert last is not None and not last.finished and last.position == numbers[-1]


async def test_rollover_while_running_hands_over_in_order(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """DynamoDB rolls shards over in normal operation: a running mapping follows the lineage."""
    arn = await aws.create_table(unique_name)
    made: list[VirtualShards] = []
    mapping_id = "ddb-rollover"
    handler = TypedRecorder()
    config = poller_config(aws.endpoint, stream_mapping(arn, uuid=mapping_id))
    written: list[str] = []

    async with Worker(
        config, handlers={mapping_id: handler}, wrap_client=virtual_streams(made)
    ) as worker:
        for generation in range(3):
            written.extend(await aws.write_records(unique_name, arn, 3))
            await wait_until(
                lambda: handler.delivered() == written, what=f"generation {generation} delivered"
            )
            if generation < 2:
                made[0].roll_over(written[-1], f"shardId-0000000100000000000{generation + 1}-0")
        await wait_until(lambda: worker.idle, what="the worker to be idle")
        runner_status = worker.status()[mapping_id]

    shards = [shard.id for shard in made[0].shards]
    assert handler.partitions() == shards
    by_shard = {s: handler.seen(s) for s in shards}
    assert by_shard == dict(zip(shards, (written[:3], written[3:6], written[6:]), strict=True))
    assert runner_status["finished_partitions"] == shards[:2]


async def test_failing_handler_blocks_the_shard_then_one_on_failure_record(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """While a batch fails, later records wait; once retries are exhausted exactly one on-failure
    record (DDBStreamBatchInfo) goes to the queue and the shard moves on."""
    arn = await aws.create_table(unique_name)
    failing = await aws.write_records(unique_name, arn, 2)
    queue = await aws.create_queue(unique_name)

    def respond(seen: Seen) -> Any:
        if failing[0] in seen.sequence_numbers:
            raise RuntimeError("the function fails on these records")
        return None

    mapping_id = "ddb-failing"
    handler = LambdaRecorder(respond)
    config = poller_config(
        aws.endpoint,
        stream_mapping(
            arn,
            uuid=mapping_id,
            on_failure=queue,
            MaximumRetryAttempts=2,
            RetryBackoffSeconds=0.2,
            RetryBackoffMaxSeconds=0.2,
        ),
    )

    async with Worker(config, handlers={mapping_id: handler}) as worker:
        await wait_until(lambda: len(handler.invocations) >= 1, what="the first invocation")
        later = await aws.write_records(unique_name, arn, 2)
        await wait_until(lambda: later[-1] in handler.delivered(), what="the later records")
        await wait_until(lambda: worker.idle, what="the worker to be idle")

    assert handler.batches == [failing, failing, failing, later]
    last_failure, after = handler.invocations[-2], handler.invocations[-1]
    assert last_failure.ended is not None and after.started >= last_failure.ended
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    (message,) = messages
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    info = message["DDBStreamBatchInfo"]
    description = (await aws.streams.describe_stream(StreamArn=arn))["StreamDescription"]
    assert info == {
        "shardId": description["Shards"][0]["ShardId"],
        "startSequenceNumber": failing[0],
        "endSequenceNumber": failing[1],
        "approximateArrivalOfFirstRecord": info["approximateArrivalOfFirstRecord"],
        "approximateArrivalOfLastRecord": info["approximateArrivalOfLastRecord"],
        "batchSize": 2,
        "streamArn": arn,
    }
    for stamp in (info["approximateArrivalOfFirstRecord"], info["approximateArrivalOfLastRecord"]):
        assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


async def test_restart_resumes_from_the_checkpoint(
    aws: DynamoDBSetup, unique_name: str, tmp_path: Path
) -> None:
    arn = await aws.create_table(unique_name)
    first = await aws.write_records(unique_name, arn, 3)
    mapping_id = "ddb-restart"
    config = poller_config(
        aws.endpoint,
        stream_mapping(arn, uuid=mapping_id, StartingPosition="TRIM_HORIZON"),
        store_url=f"sqlite:///{tmp_path / 'state.db'}",
    )
    before = TypedRecorder()
    await run_until_idle(Worker(config, handlers={mapping_id: before}))
    second = await aws.write_records(unique_name, arn, 2)

    after = TypedRecorder()
    await run_until_idle(Worker(config, handlers={mapping_id: after}))

    assert before.delivered() == first
    assert after.delivered() == second


async def test_worker_reads_records_as_typed_dynamodb_records(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    arn = await aws.create_table(unique_name)
    await insert_modify_remove(aws, unique_name)
    mapping_id = "ddb-typed"
    seen: list[Sequence[Record]] = []

    async def handler(batch: Batch) -> None:
        seen.append(list(batch))

    config = poller_config(aws.endpoint, stream_mapping(arn, uuid=mapping_id))
    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    (records,) = seen
    assert all(isinstance(r, DynamoDBRecord) for r in records)
    typed = [r for r in records if isinstance(r, DynamoDBRecord)]
    assert [r.event_name for r in typed] == ["INSERT", "MODIFY", "REMOVE"]
    assert typed[1].old_item == {"pk": "a", "sk": Decimal(1), "v": "one"}
    assert typed[1].new_item == {"pk": "a", "sk": Decimal(1), "v": "two", "n": Decimal(2)}
