"""SQS event source mappings behave as AWS was recorded to behave (SPEC.md items 15-20).

Each test runs a whole worker against a real moto server over HTTP and asserts what SPEC's
"Behaviour recorded against real AWS" item says, by number, plus the SQS event record shape a
Lambda-style handler gets. Queues are created with a plain aiobotocore client (not poller's own)
and filled before the worker starts; visibility timeouts are 1 s so retries come quickly. The
worker runs until the queue is empty and the handler saw what the test waits for (an SQS mapping
is idle only after a whole 20 s long poll came back empty, too long to wait for here).

Two moto gaps are bridged at the worker's client seam. moto's SQS backend is not safe against
concurrent requests, so the behaviour tests make the worker's SQS calls one at a time
(:class:`OneCallAtATime`); the shape tests use moto's own long polls. moto never returns the FIFO
``SequenceNumber`` attribute; the FIFO shape test adds it to ReceiveMessage responses
(``tests/faults.py``), as AWS sends it.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest

from poller.config import PollerConfig
from poller.errors import ConfigError
from poller.runtime.worker import Worker
from tests.faults import one_call_at_a_time
from tests.kit import (
    ACCOUNT,
    REGION,
    LambdaRecorder,
    Queue,
    Seen,
    Sqs,
    each_success_response,
    faulty,
    moto_clients,
    new_id,
    sqs_config,
    sqs_mapping,
)

pytestmark = pytest.mark.integration

BATCH_WINDOW_TEXT = (
    "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater "
    "than 10"
)
RECORD_KEYS = [
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
STANDARD_ATTRIBUTES = {
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
}


# --- running a worker ------------------------------------------------------------------------------


@pytest.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Sqs]:
    async with moto_clients(moto_endpoint, "sqs") as (client,):
        yield Sqs(moto_endpoint, client)


async def run_until_empty(
    sqs: Sqs,
    queue: Queue,
    config: PollerConfig,
    handlers: Mapping[str, Any],
    *,
    within: float = 15.0,
    wrap_client: Callable[[str, Any], Any] | None = one_call_at_a_time,
) -> dict[str, Any]:
    """Run a worker until ``queue`` is empty; return its status once it stopped.

    The worker's SQS calls go through ``wrap_client``, by default one at a time.
    """
    async with Worker(config, handlers=handlers, wrap_client=wrap_client) as worker:
        await sqs.wait_empty(queue, within=within)
    return worker.status()


def ids_of(responses: Sequence[dict[str, Any]]) -> list[str]:
    return [str(response["MessageId"]) for response in responses]


# --- 15, 16: retries after the visibility timeout, redrive ---------------------------------------


async def test_failed_messages_retry_after_the_visibility_timeout_then_are_deleted(
    sqs: Sqs, unique_name: str
) -> None:
    """SPEC 15: a failed batch comes back after the visibility timeout; success deletes it."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    ids = ids_of(await sqs.send(queue, "one", "two", "three"))

    def respond(seen: Seen) -> None:
        if 1 in seen.receive_counts:
            raise RuntimeError("the first delivery fails")

    mapping_id = new_id()
    handler = LambdaRecorder(respond)
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id))

    status = await run_until_empty(sqs, queue, config, {mapping_id: handler})

    for message_id in ids:
        (first, _), (second, _) = handler.deliveries(message_id)
        assert handler.receive_counts(message_id) == [1, 2]
        assert second.started - first.started >= 0.9, "retried before the visibility timeout"
    metrics = status[mapping_id]["metrics"]
    assert metrics["DeletedEventCount"] == 3
    assert metrics["Errors"] >= 1


async def test_redrive_policy_max_receive_count_two_invokes_twice(
    sqs: Sqs, unique_name: str
) -> None:
    """SPEC 16: maxReceiveCount=2 and a failing function: two invocations, then the DLQ."""
    dlq = await sqs.create_queue(unique_name + "-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 2})
    queue = await sqs.create_queue(unique_name, visibility_timeout=1, RedrivePolicy=policy)
    [message_id] = ids_of(await sqs.send(queue, "poison"))

    def respond(seen: Seen) -> None:
        raise RuntimeError("the function always fails")

    mapping_id = new_id()
    handler = LambdaRecorder(respond)
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id))

    status = await run_until_empty(sqs, queue, config, {mapping_id: handler})

    assert handler.receive_counts(message_id) == [1, 2]
    [moved] = await sqs.drain(dlq)
    assert moved["MessageId"] == message_id and moved["Body"] == "poison"
    assert status[mapping_id]["metrics"]["DeletedEventCount"] == 0


# --- 17, 18: ReportBatchItemFailures ------------------------------------------------------------


async def test_partial_response_returns_only_the_listed_messages(
    sqs: Sqs, unique_name: str
) -> None:
    """SPEC 17: only the listed message comes back, with ApproximateReceiveCount 2."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    ids = ids_of(await sqs.send(queue, "a", "b", "c", "d"))
    failing = ids[1]

    def respond(seen: Seen) -> Any:
        listed = [
            {"itemIdentifier": message_id}
            for message_id, count in zip(seen.message_ids, seen.receive_counts, strict=True)
            if message_id == failing and count == 1
        ]
        return {"batchItemFailures": listed}

    mapping_id = new_id()
    handler = LambdaRecorder(respond)
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(queue, uuid=mapping_id, FunctionResponseTypes=["ReportBatchItemFailures"]),
    )

    status = await run_until_empty(sqs, queue, config, {mapping_id: handler})

    assert handler.receive_counts(failing) == [1, 2]
    for message_id in ids:
        if message_id != failing:
            assert handler.receive_counts(message_id) == [1]
    assert status[mapping_id]["metrics"]["DeletedEventCount"] == 4


#: First answers that fail the whole batch; each gets the batch's message ids.
WHOLE_BATCH_FAILURES: dict[str, Callable[[list[str]], Any]] = {
    "integer itemIdentifier": lambda ids: {"batchItemFailures": [{"itemIdentifier": 123}]},
    "empty itemIdentifier": lambda ids: {"batchItemFailures": [{"itemIdentifier": ""}]},
    "null itemIdentifier": lambda ids: {"batchItemFailures": [{"itemIdentifier": None}]},
    "entry without itemIdentifier": lambda ids: {"batchItemFailures": [{"messageId": ids[0]}]},
    "unknown messageId": lambda ids: {"batchItemFailures": [{"itemIdentifier": new_id()}]},
    "valid entry next to an invalid one": lambda ids: {
        "batchItemFailures": [{"itemIdentifier": ids[-1]}, {"itemIdentifier": None}]
    },
    "response that is not JSON": lambda ids: {"batchItemFailures": {ids[0]}},
}


@pytest.mark.parametrize("answer", list(WHOLE_BATCH_FAILURES))
async def test_invalid_batch_item_failures_fail_the_whole_batch(
    sqs: Sqs, unique_name: str, answer: str
) -> None:
    """SPEC 18: one invalid batchItemFailures entry (or a bad response) returns every message."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    ids = ids_of(await sqs.send(queue, "a", "b", "c"))

    def respond(seen: Seen) -> Any:
        if 1 in seen.receive_counts:
            return WHOLE_BATCH_FAILURES[answer](seen.message_ids)
        return None  # the retry succeeds

    mapping_id = new_id()
    handler = LambdaRecorder(respond)
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(queue, uuid=mapping_id, FunctionResponseTypes=["ReportBatchItemFailures"]),
    )

    status = await run_until_empty(sqs, queue, config, {mapping_id: handler})

    for message_id in ids:
        assert handler.receive_counts(message_id) == [1, 2]
    metrics = status[mapping_id]["metrics"]
    assert metrics["Errors"] >= 1
    assert metrics["DeletedEventCount"] == 3


@each_success_response
async def test_success_responses_delete_the_batch(
    sqs: Sqs, unique_name: str, response: Any
) -> None:
    """SPEC 18 (and 5): {} and the other empty answers mean success: nothing comes back."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    ids = ids_of(await sqs.send(queue, "a", "b", "c"))
    mapping_id = new_id()
    handler = LambdaRecorder(lambda _seen: response)
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(queue, uuid=mapping_id, FunctionResponseTypes=["ReportBatchItemFailures"]),
    )

    status = await run_until_empty(sqs, queue, config, {mapping_id: handler})

    assert sorted(i for seen in handler.invocations for i in seen.message_ids) == sorted(ids)
    metrics = status[mapping_id]["metrics"]
    assert metrics["Errors"] == 0
    assert metrics["DeletedEventCount"] == 3


# --- 19: FIFO ----------------------------------------------------------------------------------------


async def test_fifo_one_group_batch_size_one_runs_one_at_a_time_in_order(
    sqs: Sqs, unique_name: str
) -> None:
    """SPEC 19: one message group, BatchSize 1, 5 messages: never two at once, in order."""
    queue = await sqs.create_queue(unique_name, fifo=True, visibility_timeout=30)
    bodies = [f"m{index}" for index in range(5)]
    await sqs.send(queue, *bodies, MessageGroupId="only-group")
    mapping_id = new_id()
    handler = LambdaRecorder(work_seconds=0.2)
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id, BatchSize=1))

    await run_until_empty(sqs, queue, config, {mapping_id: handler})

    invocations = handler.invocations
    assert [seen.bodies for seen in invocations] == [[body] for body in bodies]
    for earlier, later in itertools.pairwise(invocations):
        assert earlier.ended is not None and later.started >= earlier.ended


# --- 20: BatchSize > 10 needs a batching window ------------------------------------------------------


def test_batch_size_over_ten_without_a_window_is_rejected() -> None:
    """SPEC 20: AWS's own words, for a missing and for a zero window."""
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders"
    for window in ({}, {"MaximumBatchingWindowInSeconds": 0}):
        with pytest.raises(ConfigError) as refused:
            sqs_config(
                "http://127.0.0.1:1", sqs_mapping(arn, uuid=new_id(), BatchSize=11, **window)
            )
        [problem] = refused.value.problems
        assert problem.startswith("mappings[0]: MaximumBatchingWindowInSeconds:")
        assert BATCH_WINDOW_TEXT in problem

    accepted = sqs_config(
        "http://127.0.0.1:1",
        sqs_mapping(arn, uuid=new_id(), BatchSize=10),
        sqs_mapping(arn, uuid=new_id(), BatchSize=10000, MaximumBatchingWindowInSeconds=1),
    )
    assert [m.resolved().batch_size for m in accepted.mappings] == [10, 10000]
    with pytest.raises(ConfigError, match="out of range for a FIFO queue"):
        sqs_config("http://127.0.0.1:1", sqs_mapping(arn + ".fifo", uuid=new_id(), BatchSize=11))


async def test_batch_size_over_ten_gathers_several_receives(sqs: Sqs, unique_name: str) -> None:
    """SPEC 20 (the allowed side): BatchSize 25 with a 1 s window hands over more than 10."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=10)
    for first in range(0, 25, 10):
        entries = [
            {"Id": str(n), "MessageBody": f"m{n}"} for n in range(first, min(first + 10, 25))
        ]
        await sqs.client.send_message_batch(QueueUrl=queue.url, Entries=entries)
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(
            queue,
            uuid=mapping_id,
            BatchSize=25,
            MaximumBatchingWindowInSeconds=1,
            ScalingConfig={"MaximumConcurrency": 2},
        ),
    )

    await run_until_empty(sqs, queue, config, {mapping_id: handler})

    sizes = [len(seen.bodies) for seen in handler.invocations]
    assert sum(sizes) == 25
    assert max(sizes) > 10, f"no batch gathered more than one receive: {sizes}"
    assert max(sizes) <= 25


# --- event and context shapes ------------------------------------------------------------------------


def assert_lambda_record(record: dict[str, Any], *, arn: str, body: str, message_id: str) -> None:
    assert list(record) == RECORD_KEYS
    assert record["messageId"] == message_id
    assert isinstance(record["receiptHandle"], str) and record["receiptHandle"]
    assert record["body"] == body
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION
    attributes = record["attributes"]
    assert all(isinstance(value, str) for value in attributes.values())
    assert attributes["ApproximateReceiveCount"] == "1"
    assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])


async def test_event_and_context_have_lambdas_shape(sqs: Sqs, unique_name: str) -> None:
    """SPEC "SQS record": the event and context a Python Lambda handler gets."""
    # Long enough that a busy machine never sees a message come back (ApproximateReceiveCount 1).
    queue = await sqs.create_queue(unique_name, visibility_timeout=60)
    before_ms = int(time.time() * 1000)
    [plain] = await sqs.send(queue, '{"order": 1}')
    [with_attributes] = await sqs.send(
        queue,
        "with attributes",
        MessageAttributes={
            "color": {"DataType": "String", "StringValue": "blue"},
            "count": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffdata"},
        },
    )
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = sqs_config(
        sqs.endpoint, sqs_mapping(queue, uuid=mapping_id, FunctionTimeout=30, BatchSize=10)
    )

    await run_until_empty(sqs, queue, config, {mapping_id: handler}, wrap_client=None)

    records = {
        record["messageId"]: record
        for seen in handler.invocations
        for record in seen.event["Records"]
    }
    assert set(records) == {plain["MessageId"], with_attributes["MessageId"]}
    first = records[plain["MessageId"]]
    assert_lambda_record(first, arn=queue.arn, body='{"order": 1}', message_id=plain["MessageId"])
    assert set(first["attributes"]) == STANDARD_ATTRIBUTES
    assert before_ms - 1000 <= int(first["attributes"]["SentTimestamp"]) <= time.time() * 1000
    assert first["messageAttributes"] == {}
    assert first["md5OfMessageAttributes"] is None

    second = records[with_attributes["MessageId"]]
    assert_lambda_record(
        second, arn=queue.arn, body="with attributes", message_id=with_attributes["MessageId"]
    )
    assert second["md5OfMessageAttributes"] == with_attributes["MD5OfMessageAttributes"]
    assert second["messageAttributes"] == {
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
            "binaryValue": base64.b64encode(b"\x00\xffdata").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }

    seen = handler.invocations[0]
    assert set(seen.event) == {"Records"}
    assert seen.function_name
    assert seen.invoked_function_arn == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{seen.function_name}"
    )
    assert uuid.UUID(seen.aws_request_id)
    assert 0 < seen.remaining_ms <= 30_000


def with_sequence_numbers(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """What AWS adds to every FIFO message and moto leaves out."""
    messages = [
        {**m, "Attributes": {**m["Attributes"], "SequenceNumber": f"1886{i:016d}"}}
        for i, m in enumerate(response.get("Messages", []))
    ]
    return {**response, "Messages": messages}


async def test_fifo_event_carries_group_deduplication_and_sequence(
    sqs: Sqs, unique_name: str
) -> None:
    """SPEC "SQS record": FIFO messages add MessageGroupId, MessageDeduplicationId, SequenceNumber."""
    queue = await sqs.create_queue(unique_name, fifo=True, visibility_timeout=10)
    [sent] = await sqs.send(
        queue, "first", MessageGroupId="customer-7", MessageDeduplicationId="order-1"
    )

    wrap = faulty("sqs", lambda f: f.rewrite("receive_message", with_sequence_numbers, times=None))
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id))

    await run_until_empty(sqs, queue, config, {mapping_id: handler}, wrap_client=wrap)

    [seen] = handler.invocations
    [record] = seen.event["Records"]
    assert_lambda_record(record, arn=queue.arn, body="first", message_id=sent["MessageId"])
    attributes = record["attributes"]
    assert set(attributes) == STANDARD_ATTRIBUTES | {
        "MessageGroupId",
        "MessageDeduplicationId",
        "SequenceNumber",
    }
    assert attributes["MessageGroupId"] == "customer-7"
    assert attributes["MessageDeduplicationId"] == "order-1"
    assert attributes["SequenceNumber"] == "18860000000000000000"
    assert record["messageAttributes"] == {}
    assert record["md5OfMessageAttributes"] is None
