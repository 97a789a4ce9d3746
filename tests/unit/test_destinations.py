"""On-failure destinations: the AWS record format and delivery to SQS, SNS and S3.

Delivery runs against moto served over HTTP in this process (aiobotocore talks to it like to
AWS); the record format is checked against the exact shape AWS sends.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from poller.aws import AwsClients
from poller.config import AwsConfig
from poller.destinations import (
    SNS_MAX_MESSAGE_BYTES,
    OnFailureSink,
    S3Destination,
    SnsDestination,
    SqsDestination,
    destination_for,
    format_timestamp,
    on_failure_record,
    s3_object_key,
    with_payload,
)
from poller.engine.discard import Discard, ResponseContext
from poller.errors import ConfigError, DestinationError
from poller.records import Record

ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:consumer"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"
MAPPING_ID = "6d1b1a8e-6a41-4b8e-9d3c-0f6f2d9a7c11"
SHARD = "shardId-000000000003"
# 2026-11-22T10:01:02.345Z
DISCARDED_AT = datetime(2026, 11, 22, 10, 1, 2, 345000, tzinfo=UTC).timestamp()

S3_KEY = re.compile(
    rf"^aws/lambda/{MAPPING_ID}/{SHARD}/2026/11/22/2026-11-22T10\.01\.02-"
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


class FakeRenderer:
    """Renders records the way a Kinesis source would, for the on-failure record."""

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        return {"Records": [{"kinesis": {"sequenceNumber": r.position}} for r in records]}

    def item_identifier(self, record: Record) -> str:
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        return (
            "KinesisBatchInfo",
            {
                "shardId": records[0].partition,
                "startSequenceNumber": records[0].position,
                "endSequenceNumber": records[-1].position,
                "approximateArrivalOfFirstRecord": format_timestamp(records[0].arrival),
                "approximateArrivalOfLastRecord": format_timestamp(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": STREAM_ARN,
            },
        )


def make_records(count: int = 2) -> tuple[Record, ...]:
    base = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
    return tuple(
        Record(
            partition=SHARD,
            position=str(base + i),
            ordinal=base + i,
            key=f"pk-{i}",
            data=b'{"n": %d}' % i,
            arrival=DISCARDED_AT - 60 + i,
            size=64,
        )
        for i in range(count)
    )


def make_discard(**changes: Any) -> Discard:
    records = make_records()
    fields: dict[str, Any] = {
        "mapping_id": MAPPING_ID,
        "partition": SHARD,
        "records": records,
        "condition": "RetryAttemptsExhausted",
        "invoke_count": 3,
        "request_id": "c9b8fa9f-5a7f-4f4b-9b5b-ad8b8c1a0f0a",
        "response": ResponseContext(),
        "timestamp": DISCARDED_AT,
        "payload": FakeRenderer().render_event(records),
    }
    fields.update(changes)
    return Discard(**fields)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_config(endpoint_url: str) -> AwsConfig:
    return AwsConfig(
        region=REGION,
        endpoint_url=endpoint_url,
        access_key_id="testing",
        secret_access_key="testing",
    )


@pytest.fixture
async def clients(moto_url: str) -> AsyncIterator[AwsClients]:
    aws = AwsClients(aws_config(moto_url))
    try:
        yield aws
    finally:
        await aws.aclose()


@pytest.fixture
async def unreachable() -> AsyncIterator[AwsClients]:
    aws = AwsClients(aws_config("http://127.0.0.1:1"))
    try:
        yield aws
    finally:
        await aws.aclose()


async def make_queue(clients: AwsClients) -> tuple[str, str]:
    """A fresh queue: (url, arn)."""
    sqs = await clients.client("sqs")
    name = unique("dlq")
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


async def receive_all(clients: AwsClients, url: str) -> list[str]:
    sqs = await clients.client("sqs")
    response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [message["Body"] for message in response.get("Messages", [])]


async def make_subscribed_topic(clients: AwsClients) -> tuple[str, str]:
    """A topic with a raw-delivery queue subscribed: (topic arn, queue url)."""
    sns = await clients.client("sns")
    topic_arn = (await sns.create_topic(Name=unique("failures")))["TopicArn"]
    url, queue_arn = await make_queue(clients)
    await sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return topic_arn, url


# --- the record ----------------------------------------------------------------------------------


def test_record_has_the_exact_aws_shape_and_key_order() -> None:
    discard = make_discard()
    records = discard.records

    record = on_failure_record(
        discard, function_arn=FUNCTION_ARN, batch_info=FakeRenderer().batch_info(records)
    )

    assert record == {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4f4b-9b5b-ad8b8c1a0f0a",
            "functionArn": FUNCTION_ARN,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2026-11-22T10:01:02.345Z",
        "KinesisBatchInfo": {
            "shardId": SHARD,
            "startSequenceNumber": records[0].position,
            "endSequenceNumber": records[1].position,
            "approximateArrivalOfFirstRecord": "2026-11-22T10:00:02.345Z",
            "approximateArrivalOfLastRecord": "2026-11-22T10:00:03.345Z",
            "batchSize": 2,
            "streamArn": STREAM_ARN,
        },
    }
    assert list(record) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    ]
    assert list(record["requestContext"]) == [
        "requestId",
        "functionArn",
        "condition",
        "approximateInvokeCount",
    ]
    assert list(record["responseContext"]) == ["statusCode", "executedVersion", "functionError"]


def test_response_context_is_omitted_when_never_invoked() -> None:
    discard = make_discard(condition="RecordAgeExceeded", invoke_count=1, response=None)

    record = on_failure_record(
        discard, function_arn=FUNCTION_ARN, batch_info=FakeRenderer().batch_info(discard.records)
    )

    assert "responseContext" not in record
    assert list(record) == ["requestContext", "version", "timestamp", "KinesisBatchInfo"]
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1


def test_partial_failure_exhaustion_has_null_function_error() -> None:
    discard = make_discard(response=ResponseContext(function_error=None))

    record = on_failure_record(
        discard, function_arn=FUNCTION_ARN, batch_info=FakeRenderer().batch_info(discard.records)
    )

    assert record["responseContext"]["functionError"] is None
    assert '"functionError":null' in json.dumps(record, separators=(",", ":"))


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (DISCARDED_AT, "2026-11-22T10:01:02.345Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1.345, "1970-01-01T00:00:01.345Z"),
        (59.9996, "1970-01-01T00:01:00.000Z"),
        (1_700_000_000.5, "2023-11-14T22:13:20.500Z"),
    ],
)
def test_timestamp_is_iso_utc_with_milliseconds_and_z(epoch: float, expected: str) -> None:
    assert format_timestamp(epoch) == expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", format_timestamp(epoch))


def test_s3_key_follows_the_aws_layout_and_is_stable_for_one_discard() -> None:
    discard = make_discard()

    key = s3_object_key(discard)

    assert S3_KEY.match(key), key
    assert s3_object_key(discard) == key
    assert s3_object_key(make_discard(request_id="another")) != key


def test_with_payload_appends_the_event_last() -> None:
    discard = make_discard()
    record = on_failure_record(
        discard, function_arn=FUNCTION_ARN, batch_info=FakeRenderer().batch_info(discard.records)
    )

    full = with_payload(record, discard.payload)

    assert list(full)[-1] == "payload"
    assert full["payload"] == discard.payload
    assert "payload" not in record


# --- the factory ---------------------------------------------------------------------------------


async def test_destination_for_picks_the_service(clients: AwsClients) -> None:
    assert isinstance(
        destination_for(f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq", clients), SqsDestination
    )
    assert isinstance(
        destination_for(f"arn:aws:sns:{REGION}:{ACCOUNT}:topic", clients), SnsDestination
    )
    s3 = destination_for("arn:aws:s3:::failures-bucket", clients)
    assert isinstance(s3, S3Destination)
    assert s3.bucket == "failures-bucket"
    assert s3.includes_payload


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq.fifo",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:topic.fifo",
        f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders",
        "arn:aws:s3:::bucket/prefix",
        "not-an-arn",
    ],
)
async def test_destination_for_refuses_what_aws_refuses(clients: AwsClients, arn: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(arn)):
        destination_for(arn, clients)


# --- delivery ------------------------------------------------------------------------------------


async def test_sqs_receives_the_record_as_body(clients: AwsClients) -> None:
    url, arn = await make_queue(clients)
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(arn, clients))
    discard = make_discard()

    await sink.deliver(discard)

    bodies = await receive_all(clients, url)
    assert [json.loads(body) for body in bodies] == [sink.record_for(discard)]
    assert "payload" not in json.loads(bodies[0])


async def test_sqs_resolves_the_queue_url_once(clients: AwsClients) -> None:
    url, arn = await make_queue(clients)
    sqs = await clients.client("sqs")
    lookups: list[str] = []

    def count(**_: Any) -> None:
        lookups.append("GetQueueUrl")

    sqs.meta.events.register("before-call.sqs.GetQueueUrl", count)
    try:
        sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, SqsDestination(arn, clients))
        await sink.deliver(make_discard())
        await sink.deliver(make_discard(request_id="second"))
    finally:
        sqs.meta.events.unregister("before-call.sqs.GetQueueUrl", count)

    assert lookups == ["GetQueueUrl"]
    assert len(await receive_all(clients, url)) == 2


async def test_sns_publishes_the_record_as_message(clients: AwsClients) -> None:
    topic_arn, url = await make_subscribed_topic(clients)
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(topic_arn, clients))
    discard = make_discard(condition="RecordAgeExceeded", invoke_count=1, response=None)

    await sink.deliver(discard)

    bodies = await receive_all(clients, url)
    assert len(bodies) == 1
    message = json.loads(bodies[0])
    assert message == sink.record_for(discard)
    assert "responseContext" not in message
    assert "payload" not in message


async def test_sns_drops_a_payload_that_would_exceed_256_kb(clients: AwsClients) -> None:
    topic_arn, url = await make_subscribed_topic(clients)
    destination = SnsDestination(topic_arn, clients)
    discard = make_discard()
    record = on_failure_record(
        discard, function_arn=FUNCTION_ARN, batch_info=FakeRenderer().batch_info(discard.records)
    )
    big = {"Records": [{"data": "x" * SNS_MAX_MESSAGE_BYTES}]}

    await destination.send(with_payload(record, big), discard=discard)

    bodies = await receive_all(clients, url)
    assert [json.loads(body) for body in bodies] == [record]


async def test_sns_keeps_a_payload_that_fits(clients: AwsClients) -> None:
    topic_arn, url = await make_subscribed_topic(clients)
    destination = SnsDestination(topic_arn, clients)
    discard = make_discard()
    record = with_payload(
        on_failure_record(
            discard,
            function_arn=FUNCTION_ARN,
            batch_info=FakeRenderer().batch_info(discard.records),
        ),
        discard.payload,
    )

    await destination.send(record, discard=discard)

    assert [json.loads(body) for body in await receive_all(clients, url)] == [record]


async def test_sns_refuses_a_record_too_large_even_without_payload(clients: AwsClients) -> None:
    topic_arn, url = await make_subscribed_topic(clients)
    destination = SnsDestination(topic_arn, clients)
    discard = make_discard()
    huge_info = ("KinesisBatchInfo", {"shardId": "s" * (SNS_MAX_MESSAGE_BYTES + 1)})
    record = on_failure_record(discard, function_arn=FUNCTION_ARN, batch_info=huge_info)

    with pytest.raises(DestinationError, match=re.escape(topic_arn)) as raised:
        await destination.send(with_payload(record, discard.payload), discard=discard)

    assert "262144" in str(raised.value)
    assert await receive_all(clients, url) == []


async def test_s3_stores_the_record_with_payload_at_the_aws_key(clients: AwsClients) -> None:
    s3 = await clients.client("s3")
    bucket = unique("failures")
    await s3.create_bucket(Bucket=bucket)
    sink = OnFailureSink(
        FakeRenderer(), FUNCTION_ARN, destination_for(f"arn:aws:s3:::{bucket}", clients)
    )
    discard = make_discard()

    await sink.deliver(discard)

    listed = await s3.list_objects_v2(Bucket=bucket)
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert len(keys) == 1
    assert S3_KEY.match(keys[0]), keys[0]
    stored = await s3.get_object(Bucket=bucket, Key=keys[0])
    async with stored["Body"] as body:
        document = json.loads(await body.read())
    assert stored["ContentType"] == "application/json"
    assert list(document) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
        "payload",
    ]
    assert document["payload"] == discard.payload


async def test_s3_renders_the_payload_when_records_were_never_invoked(
    clients: AwsClients,
) -> None:
    s3 = await clients.client("s3")
    bucket = unique("failures")
    await s3.create_bucket(Bucket=bucket)
    sink = OnFailureSink(
        FakeRenderer(), FUNCTION_ARN, S3Destination(f"arn:aws:s3:::{bucket}", clients)
    )
    discard = make_discard(condition="RecordAgeExceeded", response=None, payload=None)

    await sink.deliver(discard)

    stored = await s3.get_object(Bucket=bucket, Key=s3_object_key(discard))
    async with stored["Body"] as body:
        document = json.loads(await body.read())
    assert "responseContext" not in document
    assert document["payload"] == FakeRenderer().render_event(discard.records)


# --- failures ------------------------------------------------------------------------------------


async def test_missing_queue_raises_destination_error_naming_the_arn(
    clients: AwsClients,
) -> None:
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('absent')}"
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(arn, clients))

    with pytest.raises(DestinationError, match=re.escape(arn)) as raised:
        await sink.deliver(make_discard())

    assert "queue" in str(raised.value).lower()


async def test_missing_topic_raises_destination_error_naming_the_arn(
    clients: AwsClients,
) -> None:
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{unique('absent')}"
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(arn, clients))

    with pytest.raises(DestinationError, match=re.escape(arn)):
        await sink.deliver(make_discard())


async def test_missing_bucket_raises_destination_error_naming_the_arn(
    clients: AwsClients,
) -> None:
    arn = f"arn:aws:s3:::{unique('absent')}"
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(arn, clients))

    with pytest.raises(DestinationError, match=re.escape(arn)) as raised:
        await sink.deliver(make_discard())

    assert "NoSuchBucket" in str(raised.value)


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:failures",
        "arn:aws:s3:::failures",
    ],
)
async def test_unreachable_endpoint_raises_destination_error(
    unreachable: AwsClients, arn: str
) -> None:
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(arn, unreachable))

    with pytest.raises(DestinationError, match=re.escape(arn)) as raised:
        await sink.deliver(make_discard())

    assert "127.0.0.1:1" in str(raised.value)


async def test_a_failed_queue_lookup_is_retried_on_the_next_delivery(
    clients: AwsClients,
) -> None:
    name = unique("late")
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    sink = OnFailureSink(FakeRenderer(), FUNCTION_ARN, destination_for(arn, clients))
    with pytest.raises(DestinationError):
        await sink.deliver(make_discard())

    sqs = await clients.client("sqs")
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    await sink.deliver(make_discard())

    assert len(await receive_all(clients, url)) == 1
