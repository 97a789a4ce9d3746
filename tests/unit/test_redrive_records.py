"""What ``poller redrive`` reads out of an on-failure record, and which records it may remove."""

from __future__ import annotations

import json
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from poller.destinations.record import on_failure_record, with_payload
from poller.engine.discard import Discard, ResponseContext
from poller.recovery.failure_records import (
    DiscardedRange,
    FailureRecord,
    Fate,
    Refusal,
    decode_document,
    discarded_range,
)
from poller.recovery.kafka_inbox import held_back_among
from poller.recovery.stream_fetch import ShardRangeFetcher, judge
from poller.sources.dynamodb_streams.codec import DynamoDBStreamsCodec
from poller.sources.kinesis.codec import KinesisCodec
from poller.sources.kinesis.records import KinesisRecord
from poller.sources.kinesis.source import KinesisSource

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
TABLE_STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:f"


def _record(shard: str, ordinal: int) -> KinesisRecord:
    return KinesisRecord(shard, str(ordinal), ordinal, "k", b"x", 1_700_000_000.0, 10)


def _document(records: list[KinesisRecord], codec: Any = None, **changes: Any) -> dict[str, Any]:
    """The on-failure record poller itself writes for ``records``."""
    discard = Discard(
        mapping_id="m",
        partition=records[0].partition,
        records=tuple(records),
        condition="RetryAttemptsExhausted",
        invoke_count=2,
        request_id="r",
        response=ResponseContext(),
        timestamp=1_700_000_000.0,
    )
    codec = codec or KinesisCodec(STREAM, "us-east-1")
    document = on_failure_record(
        discard, function_arn=FUNCTION, batch_info=codec.batch_info(records)
    )
    return json.loads(json.dumps(document | changes))


@given(
    first=st.integers(min_value=1, max_value=10**21),
    count=st.integers(min_value=1, max_value=50),
    gap=st.integers(min_value=1, max_value=10**6),
)
def test_a_range_written_by_the_engine_reads_back_exactly(first: int, count: int, gap: int) -> None:
    records = [_record("shardId-000000000003", first + i * gap) for i in range(count)]
    found = discarded_range(_document(records), function_arn=FUNCTION, source_arn=STREAM)
    assert found == DiscardedRange(
        "shardId-000000000003",
        str(first),
        str(first + (count - 1) * gap),
        count,
        "RetryAttemptsExhausted",
    )
    assert all(found.covers(r.ordinal) for r in records)
    assert not found.covers(first - 1) and not found.covers(first + (count - 1) * gap + 1)


def test_dynamodb_ranges_read_back_too() -> None:
    records = [_record("shardId-1", 100), _record("shardId-1", 200)]
    document = _document(records, DynamoDBStreamsCodec(TABLE_STREAM, "us-east-1"))
    found = discarded_range(document, function_arn=FUNCTION, source_arn=TABLE_STREAM)
    assert isinstance(found, DiscardedRange) and (found.first, found.last) == ("100", "200")


def test_records_of_another_function_or_stream_belong_to_another_mapping() -> None:
    document = _document([_record("s", 1)])
    other_function = discarded_range(document, function_arn=FUNCTION + "2", source_arn=STREAM)
    other_stream = discarded_range(document, function_arn=FUNCTION, source_arn=STREAM + "2")
    assert isinstance(other_function, Refusal) and other_function.fate == Fate.OTHER_MAPPING
    assert isinstance(other_stream, Refusal) and other_stream.fate == Fate.OTHER_MAPPING


def test_malformed_records_say_what_is_wrong() -> None:
    good = _document([_record("s", 1), _record("s", 2)])
    info = good["KinesisBatchInfo"]
    cases = {
        "not a JSON object": None,
        "requestContext.functionArn": {**good, "requestContext": {}},
        "no KinesisBatchInfo": {k: v for k, v in good.items() if k != "KinesisBatchInfo"},
        "batchSize": {**good, "KinesisBatchInfo": {**info, "batchSize": 0}},
        "startSequenceNumber": {**good, "KinesisBatchInfo": {**info, "shardId": None}},
        "no sequence number range": {
            **good,
            "KinesisBatchInfo": {**info, "startSequenceNumber": "9", "endSequenceNumber": "3"},
        },
    }
    for words, document in cases.items():
        found = discarded_range(document, function_arn=FUNCTION, source_arn=STREAM)
        assert isinstance(found, Refusal) and found.fate == Fate.MALFORMED, (words, found)
        assert words in found.reason, (words, found.reason)


def test_kafka_ranges_name_their_topic_partition() -> None:
    document = {
        "requestContext": {"functionArn": FUNCTION, "condition": "RetryAttemptsExhausted"},
        "KafkaBatchInfo": {
            "batchSize": 3,
            "bootstrapServers": "127.0.0.1:9092",
            "recordsInfo": {"my-topic-2": {"firstRecordOffset": "7", "lastRecordOffset": "9"}},
        },
    }
    found = discarded_range(document, function_arn=FUNCTION, source_arn="", kafka_topic="my-topic")
    assert found == DiscardedRange("my-topic-2", "7", "9", 3, "RetryAttemptsExhausted")
    other = discarded_range(document, function_arn=FUNCTION, source_arn="", kafka_topic="other")
    assert isinstance(other, Refusal) and other.fate == Fate.OTHER_MAPPING
    document["KafkaBatchInfo"]["recordsInfo"]["my-topic-3"] = {}
    two = discarded_range(document, function_arn=FUNCTION, source_arn="", kafka_topic="my-topic")
    assert isinstance(two, Refusal) and two.fate == Fate.MALFORMED


def test_an_sns_envelope_is_taken_off_and_raw_delivery_read_as_it_is() -> None:
    record = {"requestContext": {"functionArn": FUNCTION}}
    envelope = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(record)}
    assert decode_document(json.dumps(envelope)) == record
    assert decode_document(json.dumps(record)) == record
    assert decode_document("not json") is None
    assert decode_document("[1, 2]") is None


def test_a_range_is_retained_only_when_whole() -> None:
    wanted = DiscardedRange("s", "10", "30", 3, "RetryAttemptsExhausted")
    whole = [_record("s", 10), _record("s", 20), _record("s", 30)]
    assert judge(wanted, whole).missing is None
    assert "trimmed" in str(judge(wanted, whole[1:]).missing)
    assert "ends at 30" in str(judge(wanted, whole[:2]).missing)
    assert "none of 10..30" in str(judge(wanted, []).missing)
    short = DiscardedRange("s", "10", "30", 4, "RetryAttemptsExhausted")
    assert "3 of 4" in str(judge(short, whole).missing)


def _kafka_record(name: str, *places: tuple[int, int]) -> FailureRecord:
    return FailureRecord(name, "", tuple(places))


def test_kafka_records_behind_a_kept_one_are_held_back_and_it_spreads() -> None:
    a = _kafka_record("a", (0, 1))
    kept = _kafka_record("kept", (0, 2))
    b = _kafka_record("b", (0, 3), (1, 5))  # behind the kept one in partition 0
    c = _kafka_record("c", (1, 6))  # behind b in partition 1, which is now held
    d = _kafka_record("d", (1, 4))  # before b: free
    held = held_back_among([a, kept, b, c, d], [kept])
    assert [r.where for r in held] == ["b", "c"]
    assert held_back_among([a, b, c, d], []) == []


def test_the_s3_payload_turns_back_into_the_records_it_was_rendered_from() -> None:
    codec = KinesisCodec(STREAM, "us-east-1")
    records = [
        KinesisRecord("shardId-7", str(n), n, f"key-{n}", f"data {n}".encode(), 1_700_000_000.5, 1)
        for n in (11, 12, 13)
    ]
    document = with_payload(_document(records), codec.render_event(records))
    fetcher = ShardRangeFetcher(KinesisSource(STREAM, cast(Any, None), "us-east-1"))
    wanted = discarded_range(document, function_arn=FUNCTION, source_arn=STREAM)
    assert isinstance(wanted, DiscardedRange)
    fetched = fetcher.from_payload(wanted, document)
    assert fetched is not None and fetched.missing is None
    assert [(r.partition, r.position, r.key, r.data, r.arrival) for r in fetched.records] == [
        (r.partition, r.position, r.key, r.data, r.arrival) for r in records
    ]
    assert codec.render_event(fetched.records) == codec.render_event(records)
    assert fetcher.from_payload(wanted, {**document, "payload": None}) is None
    broken = {**document, "payload": {"Records": [{"kinesis": {"data": "!"}}]}}
    assert fetcher.from_payload(wanted, broken) is None
