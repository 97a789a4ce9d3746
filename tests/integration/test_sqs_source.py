"""SqsSource against a real moto server over HTTP, plus the faults moto cannot produce.

moto covers queue lookup, attributes, long polling, visibility and receive counts; throttling,
failed batch entries and lost connections reach the source through ``tests/faults.py`` wrapped
around the same real client. Queues stay small: moto's SQS calls cost O(queue size).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from botocore.exceptions import EndpointConnectionError
from structlog.testing import capture_logs

from poller import SqsRecord
from poller.engine.backoff import Backoff
from poller.engine.protocols import QueueInfo
from poller.errors import SourceError, SourceNotFoundError
from poller.sources.sqs.source import SqsOptions, SqsSource
from tests.faults import FaultyClient, entries_failed
from tests.kit import REGION, poller_client

pytestmark = pytest.mark.integration

#: Quick waits for tests that are not about waiting.
FAST = SqsOptions(
    backoff=Backoff(initial=0.01, maximum=0.05),
    settle_backoff=Backoff(initial=0.01, maximum=0.05),
)


@pytest.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Any]:
    async with poller_client(moto_endpoint, "sqs") as client:
        yield client


async def create_queue(
    sqs: Any, name: str, *, fifo: bool = False, **attributes: str
) -> tuple[str, str]:
    """Create a queue; return its URL and ARN."""
    if fifo:
        name += ".fifo"
        attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true", **attributes}
    url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    return str(url), str(arn)


async def send(sqs: Any, url: str, *bodies: str, **extra: Any) -> list[dict[str, Any]]:
    """Send ``bodies`` in order; return the SendMessage responses."""
    return [await sqs.send_message(QueueUrl=url, MessageBody=body, **extra) for body in bodies]


async def receive_all(source: SqsSource, count: int, within: float = 10.0) -> list[SqsRecord]:
    """Receive until ``count`` messages arrived (fails after ``within`` seconds)."""
    records: list[SqsRecord] = []
    with anyio.fail_after(within):
        while len(records) < count:
            records.extend(await source.receive(10, 1))
    return records


async def counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def exact_size(source: SqsSource, record: SqsRecord) -> int:
    """What ``record`` adds to a serialized event: its JSON (UTF-8) and the ", " before the next."""
    rendered = source.codec.render_event([record])["Records"][0]
    return len(json.dumps(rendered, ensure_ascii=False).encode()) + 2


# --- describe ------------------------------------------------------------------------------------


async def test_describe_standard_queue_looks_the_url_up_once(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name, VisibilityTimeout="17")
    faults = FaultyClient(sqs)
    source = SqsSource(arn, faults, REGION)

    info = await source.describe()
    assert info == QueueInfo(fifo=False, visibility_timeout=17.0)
    assert await source.describe() == info

    lookups = faults.calls_to("get_queue_url")
    assert len(lookups) == 1
    assert lookups[0].kwargs == {"QueueName": unique_name, "QueueOwnerAWSAccountId": "123456789012"}
    assert source.queue_url == url
    assert faults.calls_to("get_queue_attributes")[0].kwargs == {
        "QueueUrl": url,
        "AttributeNames": ["VisibilityTimeout", "RedrivePolicy", "FifoQueue"],
    }
    assert source.kind == "sqs" and source.max_receive == 10


async def test_describe_fifo_queue(sqs: Any, unique_name: str) -> None:
    _, arn = await create_queue(sqs, unique_name, fifo=True)
    info = await SqsSource(arn, sqs, REGION).describe()
    assert info == QueueInfo(fifo=True, visibility_timeout=30.0)


async def test_describe_reads_the_redrive_policy(sqs: Any, unique_name: str) -> None:
    _, dlq_arn = await create_queue(sqs, unique_name + "-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"})
    _, arn = await create_queue(sqs, unique_name, RedrivePolicy=policy, VisibilityTimeout="5")

    info = await SqsSource(arn, sqs, REGION).describe()

    assert info == QueueInfo(
        fifo=False, visibility_timeout=5.0, max_receive_count=4, dead_letter_target=dlq_arn
    )


async def test_missing_queue_is_not_found_until_it_exists(sqs: Any, unique_name: str) -> None:
    arn = f"arn:aws:sqs:{REGION}:123456789012:{unique_name}"
    source = SqsSource(arn, sqs, REGION)

    for _ in range(2):  # a failed lookup is not kept
        with pytest.raises(SourceNotFoundError) as caught:
            await source.describe()
        assert str(caught.value) == f"Queue not found: {arn}"

    await create_queue(sqs, unique_name)
    assert (await source.describe()).fifo is False


async def test_access_denied_names_the_queue_and_the_cause(sqs: Any, unique_name: str) -> None:
    _, arn = await create_queue(sqs, unique_name)
    faults = FaultyClient(sqs)
    faults.fail("get_queue_url", code="AccessDenied", message="not authorized to GetQueueUrl")
    source = SqsSource(arn, faults, REGION, FAST)

    with pytest.raises(SourceError) as caught:
        await source.describe()

    assert not isinstance(caught.value, SourceNotFoundError)
    assert str(caught.value) == (
        f"Access denied to queue {arn} (GetQueueUrl): AccessDenied: not authorized to GetQueueUrl"
    )
    assert (await source.describe()).visibility_timeout == 30.0  # and it recovers


async def test_queue_deleted_while_polling_is_not_found(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    source = SqsSource(arn, sqs, REGION)
    await source.describe()
    await sqs.delete_queue(QueueUrl=url)

    with pytest.raises(SourceNotFoundError, match=f"Queue not found: {arn}"):
        await source.receive(10, 0)


async def test_lost_connection_is_a_source_error_naming_the_queue(
    sqs: Any, unique_name: str
) -> None:
    _, arn = await create_queue(sqs, unique_name)
    faults = FaultyClient(sqs)
    faults.fail_with("get_queue_url", EndpointConnectionError(endpoint_url="http://gone"))

    with pytest.raises(SourceError, match=f"Cannot reach queue {arn} \\(GetQueueUrl\\)"):
        await SqsSource(arn, faults, REGION).describe()


def test_rejects_other_arns() -> None:
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        SqsSource("arn:aws:kinesis:us-east-1:123456789012:stream/s", object(), REGION)
    with pytest.raises(ValueError, match="not an ARN"):
        SqsSource("my-queue", object(), REGION)


# --- receive -------------------------------------------------------------------------------------


async def test_receive_long_polls(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    faults = FaultyClient(sqs)
    source = SqsSource(arn, faults, REGION)

    started = time.monotonic()
    assert await source.receive(25, 1.9) == []
    assert time.monotonic() - started >= 0.9  # the server held the empty poll for a second
    assert faults.calls_to("receive_message")[0].kwargs == {
        "QueueUrl": url,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": 1,
        "AttributeNames": ["All"],
        "MessageSystemAttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }

    async def send_later() -> None:
        await anyio.sleep(0.3)
        await send(sqs, url, "late")

    async with anyio.create_task_group() as group:
        group.start_soon(send_later)
        started = time.monotonic()
        records = await source.receive(10, 10)
        waited = time.monotonic() - started
    assert [record.body for record in records] == ["late"]
    assert waited < 5  # answered when the message came, not at the end of the wait


async def test_received_records_carry_the_header(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    before = time.time()
    sent = await send(sqs, url, "one", '{"two": "\\u00e9 \\"quoted\\""}', "trois é\n")
    source = SqsSource(arn, sqs, REGION)

    records = await receive_all(source, 3)

    assert all(isinstance(record, SqsRecord) for record in records)
    by_id = {record.position: record for record in records}
    assert set(by_id) == {response["MessageId"] for response in sent}
    assert sorted(record.ordinal for record in records) == [1, 2, 3]
    assert [record.ordinal for record in records] == sorted(record.ordinal for record in records)
    for record in records:
        native = record.native
        assert record.partition == "" and record.group_id is None
        assert record.key == record.position == record.message_id == native["MessageId"]
        assert record.data == native["Body"].encode() and record.body == native["Body"]
        assert record.arrival == int(native["Attributes"]["SentTimestamp"]) / 1000
        assert before - 1 <= record.arrival <= time.time() + 1
        assert record.receipt_handle == native["ReceiptHandle"]
        assert record.receive_count == source.receive_count(record) == 1
        assert record.size == exact_size(source, record)

    # Ordinals keep growing across receives, redeliveries included.
    assert await source.change_visibility(records, 0) == []
    again = await receive_all(source, 3)
    assert min(record.ordinal for record in again) > 3


async def test_fifo_records_are_partitioned_by_group(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name, fifo=True)
    for index in range(3):
        await send(sqs, url, f"a{index}", MessageGroupId="a")
        await send(sqs, url, f"b{index}", MessageGroupId="b")
    faults = FaultyClient(sqs)
    source = SqsSource(arn, faults, REGION)
    await source.describe()

    records = await receive_all(source, 6)

    for group in ("a", "b"):
        mine = [record for record in records if record.partition == group]
        assert [record.body for record in mine] == [f"{group}{i}" for i in range(3)]
        assert all(record.key == group == record.group_id for record in mine)
        ordinals = [record.ordinal for record in mine]
        assert ordinals == sorted(ordinals)
    attempt_ids = [
        call.kwargs["ReceiveRequestAttemptId"] for call in faults.calls_to("receive_message")
    ]
    assert len(set(attempt_ids)) == len(attempt_ids)  # a fresh one per receive


async def test_receive_waits_out_throttling(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "hello")
    faults = FaultyClient(sqs)
    faults.fail("receive_message", code="RequestThrottled", times=2)
    faults.fail("receive_message", code="ThrottlingException", times=1)
    faults.fail("receive_message", code="OverLimit", times=1)
    source = SqsSource(arn, faults, REGION, FAST)

    with capture_logs() as logs:
        records = await source.receive(10, 1)

    assert [record.body for record in records] == ["hello"]
    assert [call.error for call in faults.calls_to("receive_message")] == [
        "RequestThrottled",
        "RequestThrottled",
        "ThrottlingException",
        "OverLimit",
        None,
    ]
    retries = [log for log in logs if log["event"] == "aws call throttled, backing off"]
    assert len(retries) == 4 and all(log["queue"] == arn for log in retries)


# --- rendering -----------------------------------------------------------------------------------


async def test_render_event_without_message_attributes(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    body = '{"order": 17, "note": "caf\u00e9"}'
    await send(sqs, url, body)
    source = SqsSource(arn, sqs, REGION)
    (record,) = await receive_all(source, 1)
    native = record.native
    attributes = native["Attributes"]

    event = source.codec.render_event([record])

    assert event == {
        "Records": [
            {
                "messageId": record.position,
                "receiptHandle": native["ReceiptHandle"],
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": attributes["SentTimestamp"],
                    "SenderId": attributes["SenderId"],
                    "ApproximateFirstReceiveTimestamp": attributes[
                        "ApproximateFirstReceiveTimestamp"
                    ],
                },
                "messageAttributes": {},
                "md5OfMessageAttributes": None,
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
        ]
    }
    assert list(event["Records"][0]) == [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]
    assert source.codec.item_identifier(record) == record.position
    json.dumps(event)  # JSON-able as is


async def test_render_event_with_message_attributes(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    (sent,) = await send(
        sqs,
        url,
        "with attributes",
        MessageAttributes={
            "color": {"DataType": "String", "StringValue": "blue"},
            "count": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffdata"},
            "kind": {"DataType": "String.custom", "StringValue": "x"},
        },
    )
    source = SqsSource(arn, sqs, REGION)
    (record,) = await receive_all(source, 1)

    rendered = source.codec.render_event([record])["Records"][0]

    assert rendered["messageAttributes"] == {
        "color": {
            "stringValue": "blue",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "count": {
            "stringValue": "42",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "blob": {
            "binaryValue": "AP9kYXRh",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
        "kind": {
            "stringValue": "x",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String.custom",
        },
    }
    assert rendered["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert rendered["md5OfBody"] == sent["MD5OfMessageBody"]
    assert record.size == exact_size(source, record)
    # Every render hands out fresh objects: a handler mutating its event changes nothing else.
    rendered["messageAttributes"]["color"]["stringListValues"].append("x")
    again = source.codec.render_event([record])["Records"][0]
    assert again["messageAttributes"]["color"]["stringListValues"] == []


def add_sequence_numbers(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """What AWS adds to FIFO messages and moto leaves out."""
    messages = [
        {**m, "Attributes": {**m["Attributes"], "SequenceNumber": f"1884949646046769{i:04d}"}}
        for i, m in enumerate(response.get("Messages", []))
    ]
    return {**response, "Messages": messages}


async def test_render_event_fifo_attributes(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name, fifo=True)
    await send(sqs, url, "first", MessageGroupId="g-1", MessageDeduplicationId="dedup-1")
    faults = FaultyClient(sqs)
    faults.rewrite("receive_message", add_sequence_numbers)
    source = SqsSource(arn, faults, REGION)
    await source.describe()
    (record,) = await receive_all(source, 1)
    attributes = record.native["Attributes"]

    rendered = source.codec.render_event([record])["Records"][0]

    assert rendered["attributes"] == {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": attributes["SentTimestamp"],
        "SenderId": attributes["SenderId"],
        "ApproximateFirstReceiveTimestamp": attributes["ApproximateFirstReceiveTimestamp"],
        "MessageGroupId": "g-1",
        "MessageDeduplicationId": "dedup-1",
        "SequenceNumber": "18849496460467690000",
    }
    assert rendered["eventSourceARN"] == arn and rendered["body"] == "first"
    assert record.size == exact_size(source, record)


async def test_batch_info_carries_the_messages(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "m1", "m2", "m3")
    source = SqsSource(arn, sqs, REGION)
    records = await receive_all(source, 3)

    key, info = source.codec.batch_info(records)

    assert key == "SQSBatchInfo"
    assert info["queueArn"] == arn and info["batchSize"] == 3
    assert info["firstMessageId"] == records[0].position
    assert info["lastMessageId"] == records[-1].position
    for field, record in (
        ("approximateFirstSent", records[0]),
        ("approximateLastSent", records[-1]),
    ):
        moment = datetime.strptime(info[field], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert moment.timestamp() == pytest.approx(record.arrival, abs=0.0005)
    assert info["messages"] == source.codec.render_event(records)["Records"]
    json.dumps(info)
    with pytest.raises(ValueError):
        source.codec.batch_info([])


# --- settling ------------------------------------------------------------------------------------


async def test_delete_removes_the_messages(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a", "b", "c")
    source = SqsSource(arn, sqs, REGION)
    records = await receive_all(source, 3)
    assert await counts(sqs, url) == (0, 3)

    assert await source.delete(records) == []

    assert await counts(sqs, url) == (0, 0)
    assert await source.delete([]) == []


async def test_delete_sends_ten_entries_per_request(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    for start in range(0, 23, 10):
        entries = [
            {"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, min(start + 10, 23))
        ]
        await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    faults = FaultyClient(sqs)
    source = SqsSource(arn, faults, REGION)
    records = await receive_all(source, 23)

    assert await source.delete(records) == []

    sizes = sorted(len(call.kwargs["Entries"]) for call in faults.calls_to("delete_message_batch"))
    assert sizes == [3, 10, 10]
    for call in faults.calls_to("delete_message_batch"):
        ids = [entry["Id"] for entry in call.kwargs["Entries"]]
        assert len(set(ids)) == len(ids)
    assert await counts(sqs, url) == (0, 0)


async def test_change_visibility_zero_makes_messages_receivable_at_once(
    sqs: Any, unique_name: str
) -> None:
    url, arn = await create_queue(sqs, unique_name, VisibilityTimeout="600")
    await send(sqs, url, "a", "b")
    source = SqsSource(arn, sqs, REGION)
    first = await receive_all(source, 2)
    assert all(source.receive_count(record) == 1 for record in first)

    assert await source.change_visibility(first, 0) == []
    second = await receive_all(source, 2, within=3)
    assert {record.position for record in second} == {record.position for record in first}
    assert all(source.receive_count(record) == 2 for record in second)

    assert await source.change_visibility(second, 0) == []
    third = await receive_all(source, 2, within=3)
    assert all(source.receive_count(record) == 3 for record in third)


async def test_change_visibility_clamps_and_rounds_up(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a")
    faults = FaultyClient(sqs)
    source = SqsSource(arn, faults, REGION)
    records = await receive_all(source, 1)

    for seconds in (0.2, -5, float("nan"), float("-inf"), 7):
        assert await source.change_visibility(records, seconds) == []
    # The API's ceiling; the call itself is refused here, since SQS also caps the total time a
    # message stays hidden at 12 hours (moto counts from the send).
    faults.fail("change_message_visibility_batch", code="InvalidParameterValue", times=1)
    await source.change_visibility(records, 100_000)
    await source.change_visibility(records, float("inf"))

    timeouts = [
        call.kwargs["Entries"][0]["VisibilityTimeout"]
        for call in faults.calls_to("change_message_visibility_batch")
    ]
    assert timeouts[:6] == [1, 0, 0, 0, 7, 43_200]
    assert timeouts[-1] == 43_200
    assert await counts(sqs, url) == (0, 1)  # still hidden for 7 s


async def test_failed_delete_entry_is_retried_then_returned(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a", "b", "c")
    faults = FaultyClient(sqs)
    faults.rewrite("delete_message_batch", entries_failed({"1"}, code="InternalError"), times=3)
    source = SqsSource(arn, faults, REGION, FAST)
    records = await receive_all(source, 3)

    with capture_logs() as logs:
        failed = await source.delete(records)

    assert failed == [records[1]]
    calls = faults.calls_to("delete_message_batch")
    assert [len(call.kwargs["Entries"]) for call in calls] == [3, 1, 1]  # 3 attempts in all
    assert all(
        call.kwargs["Entries"] == [{"Id": "1", "ReceiptHandle": records[1].receipt_handle}]
        for call in calls[1:]
    )
    (warning,) = [log for log in logs if log["log_level"] == "warning"]
    assert warning["operation"] == "DeleteMessageBatch"
    assert warning["failed"] == {records[1].position: "InternalError"}


async def test_failed_delete_entry_recovers_on_retry(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a", "b")
    faults = FaultyClient(sqs)
    faults.rewrite("delete_message_batch", entries_failed({"0"}, code="ServiceUnavailable"))
    source = SqsSource(arn, faults, REGION, FAST)
    records = await receive_all(source, 2)

    assert await source.delete(records) == []
    assert len(faults.calls_to("delete_message_batch")) == 2
    assert await counts(sqs, url) == (0, 0)


async def test_sender_fault_entries_are_returned_without_retry(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a", "b")
    faults = FaultyClient(sqs)
    source = SqsSource(arn, faults, REGION, FAST)
    records = await receive_all(source, 2)
    assert await source.delete(records[:1]) == []

    # The deleted message's receipt handle is no longer valid: SQS blames the caller.
    with capture_logs() as logs:
        failed = await source.change_visibility(records, 0)

    assert failed == records[:1]
    assert len(faults.calls_to("change_message_visibility_batch")) == 1
    (warning,) = [log for log in logs if log["log_level"] == "warning"]
    assert warning["failed"] == {records[0].position: "ReceiptHandleIsInvalid"}
    assert await counts(sqs, url) == (1, 0)  # the other one is visible again


async def test_whole_delete_call_failure_is_retried(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a", "b")
    faults = FaultyClient(sqs)
    faults.fail_with("delete_message_batch", EndpointConnectionError(endpoint_url=url))
    faults.fail("delete_message_batch", code="InternalError")
    source = SqsSource(arn, faults, REGION, FAST)
    records = await receive_all(source, 2)

    assert await source.delete(records) == []

    errors = [call.error for call in faults.calls_to("delete_message_batch")]
    assert errors == ["EndpointConnectionError", "InternalError", None]
    assert await counts(sqs, url) == (0, 0)


async def test_persistent_delete_failure_returns_the_chunk(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a", "b")
    faults = FaultyClient(sqs)
    faults.fail_with("delete_message_batch", EndpointConnectionError(endpoint_url=url), times=3)
    source = SqsSource(arn, faults, REGION, FAST)
    records = await receive_all(source, 2)

    with capture_logs() as logs:
        failed = await source.delete(records)

    assert failed == records
    assert len(faults.calls_to("delete_message_batch")) == 3
    (warning,) = [log for log in logs if log["log_level"] == "warning"]
    assert warning["failed"] == dict.fromkeys(
        (record.position for record in records), "EndpointConnectionError"
    )
    assert await counts(sqs, url) == (0, 2)  # still there, back after the visibility timeout


async def test_throttled_delete_is_waited_out(sqs: Any, unique_name: str) -> None:
    url, arn = await create_queue(sqs, unique_name)
    await send(sqs, url, "a")
    faults = FaultyClient(sqs)
    faults.fail("delete_message_batch", code="RequestThrottled", times=4)
    source = SqsSource(arn, faults, REGION, FAST)
    records = await receive_all(source, 1)

    assert await source.delete(records) == []  # throttles do not use up the settle attempts
    assert len(faults.calls_to("delete_message_batch")) == 5
    assert await counts(sqs, url) == (0, 0)
