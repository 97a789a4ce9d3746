"""SQS mappings run by a whole Worker against a real moto server over HTTP.

Every test creates its own queues (unique names), fills them with a handful of messages and runs a
:class:`~poller.runtime.worker.Worker` with a Lambda-style handler that records what it was handed.
The worker runs until the queue is empty and the handler has seen what the test waits for; it is
not run until idle, because an SQS mapping only counts as idle after a whole 20 s long poll came
back empty.

What moto cannot do is injected through the worker's client seam (``tests/faults.py``): a delete
that fails. moto's SQS calls cost O(queue size) (SERVERS.md), so queues stay small. moto's SQS
backend is also not safe against concurrent requests (see :class:`OneCallAtATime`): tests that
count deliveries exactly or check FIFO order make the worker's SQS calls one at a time; the
single-message tests (heartbeat, idempotency, destination, missing queue) use moto's real long
polls. FIFO retries go through the engine's ChangeMessageVisibility 0 path, which moto redelivers
in order.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.config import PollerConfig
from poller.runtime.worker import Worker
from tests.faults import FaultyClient, one_call_at_a_time
from tests.kit import (
    ACCOUNT,
    REGION,
    LambdaRecorder,
    Queue,
    Respond,
    Seen,
    Sqs,
    logged,
    moto_clients,
    new_id,
    sqs_config,
    sqs_mapping,
    wait_until,
)

pytestmark = pytest.mark.integration


# --- running a worker ------------------------------------------------------------------------------


@pytest.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Sqs]:
    async with moto_clients(moto_endpoint, "sqs") as (client,):
        yield Sqs(moto_endpoint, client)


def serial_worker(config: PollerConfig, handlers: dict[str, Any]) -> Worker:
    """A worker whose SQS calls reach moto one at a time (see :class:`OneCallAtATime`)."""
    return Worker(config, handlers=handlers, wrap_client=one_call_at_a_time)


def fail_bodies(bodies: Iterable[str], *, first_time_only: bool = True) -> Respond:
    """Report the messages with these bodies in ``batchItemFailures`` (by default only once)."""
    failing = set(bodies)
    reported: set[str] = set()

    def respond(seen: Seen) -> Any:
        failures = []
        for message_id, body in zip(seen.message_ids, seen.bodies, strict=True):
            if body in failing and not (first_time_only and body in reported):
                reported.add(body)
                failures.append({"itemIdentifier": message_id})
        return {"batchItemFailures": failures}

    return respond


def unique_bodies(prefix: str, count: int) -> list[str]:
    token = uuid.uuid4().hex[:8]
    return [f"{prefix}-{index}-{token}" for index in range(count)]


# --- standard queues: partial failures, visibility, redrive ------------------------------------


async def test_partial_failure_returns_only_the_listed_messages(sqs: Sqs, unique_name: str) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    bodies = unique_bodies("m", 6)
    failing = [bodies[1], bodies[4]]
    await sqs.send_batches(queue, bodies)
    mapping_id = new_id()
    handler = LambdaRecorder(fail_bodies(failing))
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(queue, uuid=mapping_id, FunctionResponseTypes=["ReportBatchItemFailures"]),
    )

    async with serial_worker(config, {mapping_id: handler}) as worker:
        await wait_until(
            lambda: all(len(handler.deliveries(b, by_body=True)) == 2 for b in failing),
            within=10,
            what="the two listed messages to come back",
        )
        await sqs.wait_empty(queue)
    metrics = worker.status()[mapping_id]["metrics"]  # read once the worker has stopped

    for body in bodies:
        deliveries = handler.deliveries(body, by_body=True)
        if body in failing:
            (first, first_count), (second, second_count) = deliveries
            assert (first_count, second_count) == (1, 2)
            # Back after the queue's 1 s visibility timeout, not at once (AWS's default).
            assert second.started - first.started >= 0.9
        else:
            assert [count for _, count in deliveries] == [1], f"{body} was handed over again"
    assert metrics["DeletedEventCount"] == 6
    assert metrics["PolledEventCount"] == 8


async def test_poison_message_is_redriven_to_the_dlq_after_max_receive_count(
    sqs: Sqs, unique_name: str
) -> None:
    dlq = await sqs.create_queue(unique_name + "-dlq")
    queue = await sqs.create_queue(
        unique_name, visibility_timeout=1, dead_letter=dlq, max_receive_count=3
    )
    bodies = unique_bodies("m", 4)
    poison = bodies[2]
    attributes = {"origin": {"DataType": "String", "StringValue": "checkout"}}
    ids = await sqs.send_batches(queue, bodies, MessageAttributes=attributes)
    mapping_id = new_id()
    handler = LambdaRecorder(fail_bodies([poison], first_time_only=False))
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(queue, uuid=mapping_id, FunctionResponseTypes=["ReportBatchItemFailures"]),
    )

    async with serial_worker(config, {mapping_id: handler}) as worker:
        await sqs.wait_empty(queue, what="the poison message should move to the DLQ")
    metrics = worker.status()[mapping_id]["metrics"]  # read once the worker has stopped

    deliveries = handler.deliveries(poison, by_body=True)
    assert [count for _, count in deliveries] == [1, 2, 3], "maxReceiveCount 3: three receives"
    for (earlier, _), (later, _) in itertools.pairwise(deliveries):
        assert later.started - earlier.started >= 0.9, "retried before the visibility timeout"
    for body in bodies:
        if body != poison:
            assert len(handler.deliveries(body, by_body=True)) == 1
    [moved] = await sqs.drain(dlq)
    assert moved["Body"] == poison
    assert moved["MessageId"] == ids[2]
    assert moved["MessageAttributes"]["origin"]["StringValue"] == "checkout"
    assert metrics["DeletedEventCount"] == 3
    assert metrics["OnFailureDestinationDeliveredEventCount"] == 0


# --- FIFO ------------------------------------------------------------------------------------------


async def test_fifo_failure_blocks_its_group_while_other_groups_go_on(
    sqs: Sqs, unique_name: str
) -> None:
    """a1 fails until groups b and c are finished; a2 and a3 are never settled past a1.

    The handler names only a1 in ``batchItemFailures``; the engine gives a1, a2 and a3 back
    together (visibility 0, so the retry comes long before the queue's 30 s timeout).
    """
    queue = await sqs.create_queue(unique_name, fifo=True, visibility_timeout=30)
    for index in range(4):
        for group in "abc":
            await sqs.send_batches(queue, [f"{group}{index}"], group=group)
    others_done = threading.Event()
    handled: set[str] = set()
    a1_failures = 0

    def respond(seen: Seen) -> Any:
        nonlocal a1_failures
        failures = []
        for message_id, body in zip(seen.message_ids, seen.bodies, strict=True):
            if body == "a1" and not others_done.is_set():
                a1_failures += 1
                failures.append({"itemIdentifier": message_id})
                continue
            handled.add(body)
            if {"b3", "c3"} <= handled:
                others_done.set()
        return {"batchItemFailures": failures}

    mapping_id = new_id()
    handler = LambdaRecorder(respond)
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(
            queue, uuid=mapping_id, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"]
        ),
    )

    async with serial_worker(config, {mapping_id: handler}):
        await sqs.wait_empty(queue, within=10, what="every group should finish")

    def handed(group: str) -> list[str]:
        return [body for body in handler.bodies() if body.startswith(group)]

    assert a1_failures >= 1
    assert handed("b") == ["b0", "b1", "b2", "b3"]
    assert handed("c") == ["c0", "c1", "c2", "c3"]
    assert handed("a") == ["a0"] + ["a1", "a2", "a3"] * (a1_failures + 1), (
        "after each failure of a1, a2 and a3 must come back with it, in order"
    )
    last_a1 = max(seen.started for seen, _ in handler.deliveries("a1", by_body=True))
    first_b3 = min(seen.started for seen, _ in handler.deliveries("b3", by_body=True))
    first_c3 = min(seen.started for seen, _ in handler.deliveries("c3", by_body=True))
    assert max(first_b3, first_c3) <= last_a1, "groups b and c finished while a was blocked"


# --- concurrency -----------------------------------------------------------------------------------


async def test_slow_batches_run_concurrently(sqs: Sqs, unique_name: str) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=10)
    await sqs.send_batches(queue, unique_bodies("m", 30))
    mapping_id = new_id()
    handler = LambdaRecorder(work_seconds=0.5)
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id, BatchSize=10))

    async with serial_worker(config, {mapping_id: handler}):
        await wait_until(
            lambda: sum(len(s.bodies) for s in handler.finished()) >= 30,
            within=10,
            what="all 30 messages handled",
        )
        await sqs.wait_empty(queue)

    invocations = handler.invocations
    assert len(invocations) >= 3
    first = min(seen.started for seen in invocations)
    last = max(seen.ended for seen in invocations if seen.ended is not None)
    # One at a time, at least three 0.5 s batches would take 1.5 s.
    assert last - first < 1.2, f"the batches took {last - first:.2f} s: they did not overlap"
    assert handler.most_at_once() >= 2


async def test_concurrency_is_bounded_by_maximum_concurrency(sqs: Sqs, unique_name: str) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=10)
    await sqs.send_batches(queue, unique_bodies("m", 12))
    mapping_id = new_id()
    handler = LambdaRecorder(work_seconds=0.25)
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(queue, uuid=mapping_id, BatchSize=2, ScalingConfig={"MaximumConcurrency": 2}),
    )
    pollers: list[int] = []

    async with serial_worker(config, {mapping_id: handler}) as worker:

        def all_handled() -> bool:
            pollers.append(worker.status()[mapping_id]["queue"]["pollers"])
            return sum(len(s.bodies) for s in handler.finished()) >= 12

        await wait_until(all_handled, within=10, what="all 12 messages handled")
    status = worker.status()[mapping_id]  # read once the worker has stopped

    assert handler.most_at_once() == 2, "two batches at once: no fewer, and never more"
    assert max(pollers) <= 2
    assert status["queue"]["maximum_concurrency"] == 2
    assert status["metrics"]["DeletedEventCount"] == 12


# --- restarts --------------------------------------------------------------------------------------


async def test_restart_loses_nothing(sqs: Sqs, unique_name: str) -> None:
    """Stopped mid-stream, the worker finishes its batches; a new one gets every other message."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=2)
    bodies = unique_bodies("m", 40)
    await sqs.send_batches(queue, bodies)
    mapping_id = new_id()
    mapping = sqs_mapping(
        queue, uuid=mapping_id, BatchSize=5, ScalingConfig={"MaximumConcurrency": 2}
    )
    first = LambdaRecorder(work_seconds=0.3)

    async with serial_worker(sqs_config(sqs.endpoint, mapping), {mapping_id: first}) as worker:
        await wait_until(
            lambda: len(first.finished()) >= 2 and len(first.invocations) > len(first.finished()),
            within=10,
            what="two batches done and another in flight",
        )
    deleted = worker.status()[mapping_id]["metrics"]["DeletedEventCount"]

    handed_first = first.bodies()
    assert all(seen.ended is not None for seen in first.invocations), "in-flight batches finish"
    assert deleted == len(handed_first) < len(bodies)
    visible, in_flight = await sqs.counts(queue)
    assert visible + in_flight == len(bodies) - deleted

    second = LambdaRecorder()
    async with serial_worker(sqs_config(sqs.endpoint, mapping), {mapping_id: second}):
        await sqs.wait_empty(queue, what="the second worker should take the rest")

    handed_second = second.bodies()
    assert sorted(handed_first + handed_second) == sorted(bodies), "each message exactly once"


async def test_hard_stop_loses_nothing(sqs: Sqs, unique_name: str) -> None:
    """With no grace period the batch in flight is abandoned; its messages come back later."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=2)
    bodies = unique_bodies("m", 12)
    await sqs.send_batches(queue, bodies)
    mapping_id = new_id()
    mapping = sqs_mapping(
        queue, uuid=mapping_id, BatchSize=3, ScalingConfig={"MaximumConcurrency": 2}
    )
    first = LambdaRecorder(work_seconds=1.0)

    async with serial_worker(
        sqs_config(sqs.endpoint, mapping, grace=0), {mapping_id: first}
    ) as worker:
        await wait_until(lambda: bool(first.invocations), within=10, what="a batch in flight")
    deleted = worker.status()[mapping_id]["metrics"]["DeletedEventCount"]
    abandoned = first.bodies()
    assert deleted == 0 and abandoned

    second = LambdaRecorder()
    async with serial_worker(sqs_config(sqs.endpoint, mapping), {mapping_id: second}):
        await sqs.wait_empty(queue, what="the second worker should take everything")

    assert sorted(second.bodies()) == sorted(bodies), "every message, the abandoned ones again"
    for body in abandoned:
        [(_, count)] = second.deliveries(body, by_body=True)
        assert count == 2


# --- on-failure destination and idempotency -----------------------------------------------------


async def test_exhausted_message_goes_to_the_on_failure_queue_with_its_body(
    sqs: Sqs, unique_name: str
) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    destination = await sqs.create_queue(unique_name + "-failures")
    poison = "poison " + "x" * 2000 + " " + uuid.uuid4().hex
    attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    [poison_id] = await sqs.send_batches(queue, [poison], MessageAttributes=attributes)
    await sqs.send_batches(queue, ["fine"])
    mapping_id = new_id()
    handler = LambdaRecorder(fail_bodies([poison], first_time_only=False))
    config = sqs_config(
        sqs.endpoint,
        sqs_mapping(
            queue,
            uuid=mapping_id,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": destination.arn}},
            FunctionResponseTypes=["ReportBatchItemFailures"],
        ),
    )

    async with Worker(config, handlers={mapping_id: handler}) as worker:
        await sqs.wait_empty(queue, what="the poison message should be moved to the destination")
    metrics = worker.status()[mapping_id]["metrics"]  # read once the worker has stopped

    assert [count for _, count in handler.deliveries(poison, by_body=True)] == [1, 2], (
        "N + 1 = 2 invocations"
    )
    assert len(handler.deliveries("fine", by_body=True)) == 1
    [sent] = await sqs.drain(destination)
    record = json.loads(sent["Body"])
    assert record["version"] == "1.0"
    context = record["requestContext"]
    assert context["condition"] == "RetryAttemptsExhausted"
    assert context["approximateInvokeCount"] == 2
    assert context["functionArn"].startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:")
    info = record["SQSBatchInfo"]
    assert info["queueArn"] == queue.arn
    assert info["batchSize"] == 1
    assert info["firstMessageId"] == info["lastMessageId"] == poison_id
    [message] = info["messages"]
    assert message["messageId"] == poison_id
    assert message["body"] == poison
    assert message["messageAttributes"]["tenant"]["stringValue"] == "acme"
    assert message["attributes"]["ApproximateReceiveCount"] == "3"
    assert message["eventSourceARN"] == queue.arn
    assert metrics["OnFailureDestinationDeliveredEventCount"] == 1
    assert metrics["DeletedEventCount"] == 2


async def test_idempotency_deletes_a_redelivered_message_without_handing_it_over(
    sqs: Sqs, unique_name: str
) -> None:
    """Every attempt to delete the handled message fails, so SQS hands it out again."""
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    [body] = unique_bodies("once", 1)
    await sqs.send_batches(queue, [body])
    clients: list[FaultyClient] = []

    def wrap(service: str, client: Any) -> Any:
        if service != "sqs":
            return client
        faulty = FaultyClient(client)
        # The source tries a delete three times before it gives up on it.
        faulty.fail("delete_message_batch", code="InternalError", times=3)
        clients.append(faulty)
        return faulty

    mapping_id = new_id()
    handler = LambdaRecorder()
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id, Idempotency=True))

    async with Worker(config, handlers={mapping_id: handler}, wrap_client=wrap) as worker:
        await sqs.wait_empty(queue, what="the redelivered message should be deleted")
    metrics = worker.status()[mapping_id]["metrics"]  # read once the worker has stopped

    assert handler.bodies() == [body], "handed over once, although delivered twice"
    [faulty] = clients
    deletes = faulty.calls_to("delete_message_batch")
    assert [call.error for call in deletes] == ["InternalError"] * 3 + [None]
    assert metrics["PolledEventCount"] == 2
    assert metrics["DeleteErrorCount"] == 1
    assert metrics["IdempotentSkippedEventCount"] == 1
    assert metrics["DeletedEventCount"] == 1


# --- errors ----------------------------------------------------------------------------------------


async def test_missing_queue_is_logged_and_retried_until_it_exists(
    sqs: Sqs, unique_name: str
) -> None:
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique_name}"
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = sqs_config(
        sqs.endpoint, {"UUID": mapping_id, "EventSourceArn": arn, "FunctionTimeout": 10}
    )

    with capture_logs() as logs:
        async with Worker(config, handlers={mapping_id: handler}) as worker:
            await wait_until(
                lambda: worker.status()[mapping_id]["metrics"]["PollingErrorCount"] >= 2,
                within=10,
                what="two failed lookups of the missing queue",
            )
            errors = worker.status()[mapping_id]["metrics"]["PollingErrorCount"]
            queue = await sqs.create_queue(unique_name)
            [body] = unique_bodies("late", 1)
            await sqs.send_batches(queue, [body])
            await wait_until(
                lambda: handler.bodies() == [body],
                within=10,
                what="the message sent once the queue exists",
            )

    found = logged(logs, error=f"Queue not found: {arn}")
    assert all(e["mapping"] == mapping_id for e in found)
    # One error line for the cause; the retries after it go to debug (one line per cause, with
    # a reminder at most once a minute), so the log is not flooded while the cause lasts.
    shown = [e for e in found if e["log_level"] != "debug"]
    assert [e["log_level"] for e in shown] == ["error"], shown
    assert errors >= 2


# --- visibility heartbeat --------------------------------------------------------------------------


async def run_slow_handler(
    sqs: Sqs, queue: Queue, handler: LambdaRecorder, *, wait_for: Callable[[], bool], **fields: Any
) -> None:
    """One slow message through a worker, until ``wait_for`` holds and the queue is empty."""
    await sqs.send_batches(queue, unique_bodies("slow", 1))
    mapping_id = new_id()
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id, **fields))
    async with Worker(config, handlers={mapping_id: handler}):
        await wait_until(wait_for, within=15, what="the slow handler's invocations")
        await sqs.wait_empty(queue)


async def test_heartbeat_keeps_a_slow_message_from_being_handed_over_twice(
    sqs: Sqs, unique_name: str
) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=2)
    handler = LambdaRecorder(work_seconds=3.5)  # well past the visibility timeout

    await run_slow_handler(sqs, queue, handler, wait_for=lambda: bool(handler.finished()))

    assert len(handler.invocations) == 1


async def test_heartbeat_also_covers_a_one_second_visibility_timeout(
    sqs: Sqs, unique_name: str
) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=1)
    handler = LambdaRecorder(work_seconds=3.0)

    await run_slow_handler(sqs, queue, handler, wait_for=lambda: bool(handler.finished()))

    assert len(handler.invocations) == 1, "the message reappeared while its handler still ran"


class SlowDeleteAnswers:
    """The worker's SQS client, but DeleteMessageBatch answers ``delay`` seconds late.

    The delete itself reaches moto at once; only its answer is slow, as on a congested network.
    """

    def __init__(self, client: Any, delay: float) -> None:
        self._client = client
        self._delay = delay

    async def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = await self._client.delete_message_batch(**kwargs)
        await anyio.sleep(self._delay)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_heartbeat_leaves_messages_alone_once_they_are_being_settled(
    sqs: Sqs, unique_name: str
) -> None:
    """A heartbeat tick while a batch's delete is under way must not touch its messages.

    With a 2 s visibility timeout the heartbeat ticks every second, so it ticks while the delete
    answer is 1.5 s late. Extending a deleted message fails, and the worker warns that a message
    it has just deleted "may be handed over again".
    """
    queue = await sqs.create_queue(unique_name, visibility_timeout=2)
    [body] = unique_bodies("settled", 1)
    await sqs.send_batches(queue, [body])
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = sqs_config(sqs.endpoint, sqs_mapping(queue, uuid=mapping_id))

    def wrap(service: str, client: Any) -> Any:
        return SlowDeleteAnswers(client, 1.5) if service == "sqs" else client

    with capture_logs() as logs:
        async with Worker(config, handlers={mapping_id: handler}, wrap_client=wrap) as worker:
            runner = worker.runners[0]
            await wait_until(
                lambda: runner.counters.deleted_events == 1,
                within=10,
                what="the message to be deleted",
            )

    assert handler.bodies() == [body]
    heartbeat_warnings = [e for e in logs if e["event"].startswith("visibility heartbeat failed")]
    assert heartbeat_warnings == [], "the heartbeat extended a message that was being deleted"


async def test_without_heartbeat_a_slow_message_is_handed_over_again_as_in_aws(
    sqs: Sqs, unique_name: str
) -> None:
    queue = await sqs.create_queue(unique_name, visibility_timeout=2)

    def respond(seen: Seen) -> None:
        if seen.receive_counts == [1]:
            time.sleep(3.5)  # the first run outlasts the visibility timeout; the second is quick

    handler = LambdaRecorder(respond)

    await run_slow_handler(
        sqs,
        queue,
        handler,
        wait_for=lambda: len(handler.finished()) >= 2,
        VisibilityHeartbeat=False,
    )

    first, second = handler.invocations[:2]
    assert first.receive_counts == [1] and second.receive_counts == [2]
    assert first.ended is not None and second.started < first.ended, "while the first still ran"
    assert second.started - first.started >= 1.9, "after the 2 s visibility timeout"
