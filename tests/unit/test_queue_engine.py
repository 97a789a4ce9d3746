"""The queue engine (SQS semantics) against the in-memory queue: settlement, FIFO, scaling."""

from __future__ import annotations

import time
from typing import Any

import anyio

from poller.config import ResolvedMapping, parse_config
from poller.engine.outcome import Failed, PartiallyFailed, Succeeded
from poller.engine.queues import QueueMappingRunner
from poller.engine.queues.processor import split_by_outcome
from poller.records import Batch, Record
from poller.testing import MemoryQueue
from tests.kit import RecordingSink, RecordingStore, queue_runner, run_until

QUEUE = "arn:aws:sqs:us-east-1:123456789012:work"


def sqs_mapping(*, fifo: bool = False, **fields: Any) -> ResolvedMapping:
    base: dict[str, Any] = {"EventSourceArn": QUEUE + (".fifo" if fifo else "")}
    base.update(fields)
    return parse_config({"mappings": [base]}).mappings[0].resolved()


def runner_for(
    mapping: ResolvedMapping,
    queue: MemoryQueue,
    handler: Any,
    *,
    sink: Any = None,
    store: Any = None,
) -> QueueMappingRunner:
    return queue_runner(mapping, queue, handler, sink=sink, store=store)


def rec(group: str, n: int) -> Record:
    return Record(group, f"{group}{n}", n, group, b"", 0.0, 1)


def test_fifo_failure_returns_the_rest_of_its_group_only() -> None:
    batch = [rec("a", 1), rec("b", 1), rec("a", 2), rec("b", 2), rec("a", 3)]
    succeeded, failed = split_by_outcome(batch, PartiallyFailed((2,)), fifo=True)
    assert [r.position for r in failed] == ["a2", "a3"]
    assert [r.position for r in succeeded] == ["a1", "b1", "b2"]
    succeeded, failed = split_by_outcome(batch, PartiallyFailed((2,)), fifo=False)
    assert [r.position for r in failed] == ["a2"]
    assert split_by_outcome(batch, Failed("x"), fifo=True) == ([], batch)
    assert split_by_outcome(batch, Succeeded(), fifo=True) == (batch, [])


async def test_partial_failure_deletes_the_others_and_retries_after_visibility_timeout() -> None:
    queue = MemoryQueue(visibility_timeout=0.3)
    ids = [queue.send(f"m{i}") for i in range(5)]
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batch = [r["messageId"] for r in event["Records"]]
        seen.append(batch)
        bad = [i for i in batch if i == ids[2] and len(seen) == 1]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in bad]}

    mapping = sqs_mapping(FunctionResponseTypes=["ReportBatchItemFailures"])
    runner = runner_for(mapping, queue, handler)
    started = time.monotonic()
    await run_until(runner, lambda: not queue.remaining)
    assert seen[0] == ids
    assert seen[1] == [ids[2]], "only the listed message came back"
    assert time.monotonic() - started >= 0.3, "the failed message waited for the visibility timeout"
    assert runner.counters.deleted_events == 5


async def test_redrive_policy_moves_a_poison_message_to_the_dlq() -> None:
    queue = MemoryQueue(visibility_timeout=0.1, max_receive_count=2)
    poison = queue.send("poison")
    queue.send("fine")
    calls: dict[str, int] = {}

    async def handler(batch: Batch) -> list[str]:
        for record in batch:
            calls[record.position] = calls.get(record.position, 0) + 1
        return [r.position for r in batch if r.data == b"poison"]

    runner = runner_for(sqs_mapping(), queue, handler)
    await run_until(runner, lambda: not queue.remaining)
    assert calls[poison] == 2, "maxReceiveCount=2: two invocations, then the DLQ"
    assert [m.message_id for m in queue.dead_letters] == [poison]


async def test_fifo_group_is_blocked_by_its_failure_while_other_groups_go_on() -> None:
    queue = MemoryQueue(fifo=True, visibility_timeout=5)
    for n in range(3):
        queue.send(f"a{n}", group="a")
        queue.send(f"b{n}", group="b")
    order: list[str] = []
    failures_left = 2

    handed: list[str] = []

    async def handler(batch: Batch) -> list[Record]:
        # As AWS asks of FIFO handlers: after a failure, stop processing that group and report
        # its remaining messages too.
        nonlocal failures_left
        failed: list[Record] = []
        stopped: set[str] = set()
        for record in batch:
            handed.append(record.data.decode())
            if record.partition in stopped or (record.data == b"a1" and failures_left):
                if record.data == b"a1":
                    failures_left -= 1
                stopped.add(record.partition)
                failed.append(record)
                continue
            order.append(record.data.decode())
        return failed

    runner = runner_for(sqs_mapping(fifo=True, BatchSize=10), queue, handler)
    await run_until(runner, lambda: not queue.remaining)
    assert [m for m in order if m.startswith("b")] == ["b0", "b1", "b2"]
    assert [m for m in order if m.startswith("a")] == ["a0", "a1", "a2"]
    assert handed.count("a2") == 3, "a2 went back with a1 twice, then succeeded after it"


async def test_fifo_one_group_batch_size_one_never_runs_in_parallel() -> None:
    queue = MemoryQueue(fifo=True)
    for n in range(5):
        queue.send(f"m{n}", group="g")
    running = 0
    most = 0
    order: list[str] = []

    async def handler(batch: Batch) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.02)
        order.extend(r.data.decode() for r in batch)
        running -= 1

    mapping = sqs_mapping(fifo=True, BatchSize=1, ScalingConfig={"MaximumConcurrency": 10})
    await run_until(runner_for(mapping, queue, handler), lambda: not queue.remaining)
    assert most == 1 and order == [f"m{n}" for n in range(5)]


async def test_slow_handlers_overlap_up_to_maximum_concurrency() -> None:
    queue = MemoryQueue()
    for n in range(60):
        queue.send(f"m{n}")
    running = 0
    most = 0

    async def handler(batch: Batch) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.1)
        running -= 1

    mapping = sqs_mapping(BatchSize=2, ScalingConfig={"MaximumConcurrency": 4})
    runner = runner_for(mapping, queue, handler)
    await run_until(runner, lambda: not queue.remaining)
    assert most == 4, f"expected 4 batches at once (MaximumConcurrency), saw {most}"


async def test_pollers_scale_up_while_receives_come_back_full() -> None:
    queue = MemoryQueue()
    for n in range(400):
        queue.send(f"m{n}")

    async def handler(batch: Batch) -> None:
        await anyio.sleep(0.05)

    mapping = sqs_mapping(BatchSize=10)
    runner = runner_for(mapping, queue, handler)
    most = 0

    def done() -> bool:
        nonlocal most
        most = max(most, runner.pollers)
        return not queue.remaining

    await run_until(runner, done)
    assert most > 5, f"pollers never grew past the initial five (max seen {most})"


async def test_provisioned_pollers_bound_the_pollers() -> None:
    """ProvisionedPollerConfig: MinimumPollers start at once, MaximumPollers is never passed."""
    queue = MemoryQueue()
    for n in range(400):
        queue.send(f"m{n}")

    async def handler(batch: Batch) -> None:
        await anyio.sleep(0.05)

    mapping = sqs_mapping(
        BatchSize=10, ProvisionedPollerConfig={"MinimumPollers": 8, "MaximumPollers": 9}
    )
    runner = runner_for(mapping, queue, handler)
    seen: list[int] = []

    def done() -> bool:
        seen.append(runner.pollers)
        return not queue.remaining

    await run_until(runner, done)
    assert max(seen) == 9, f"pollers grew to {max(seen)}, MaximumPollers is 9"
    assert 8 in seen, "the eight minimum pollers never all ran"


async def test_destination_takes_messages_received_more_than_retries_plus_one() -> None:
    queue = MemoryQueue(visibility_timeout=0.05)
    bad = queue.send("bad")
    sink = RecordingSink()
    calls = 0

    async def handler(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("always")

    mapping = sqs_mapping(
        MaximumRetryAttempts=2,
        DestinationConfig={
            "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:failures"}
        },
    )
    runner = runner_for(mapping, queue, handler, sink=sink)
    await run_until(runner, lambda: not queue.remaining)
    assert calls == 3
    [(_, discard)] = sink.discards
    assert discard.condition == "RetryAttemptsExhausted" and discard.invoke_count == 3
    assert [r.position for r in discard.records] == [bad]


async def test_heartbeat_keeps_a_slow_message_invisible() -> None:
    queue = MemoryQueue(visibility_timeout=2)
    queue.send("slow")
    calls = 0

    async def handler(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(2.5)  # longer than the visibility timeout

    mapping = sqs_mapping(FunctionTimeout=10, ScalingConfig={"MaximumConcurrency": 2})
    await run_until(runner_for(mapping, queue, handler), lambda: not queue.remaining)
    assert calls == 1, "the message reappeared while its handler was still running"


async def test_without_heartbeat_a_slow_message_is_handed_over_again_as_in_aws() -> None:
    queue = MemoryQueue(visibility_timeout=1)
    queue.send("slow")
    calls = 0

    async def handler(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(1.6)  # longer than the visibility timeout, once

    mapping = sqs_mapping(
        FunctionTimeout=10, VisibilityHeartbeat=False, ScalingConfig={"MaximumConcurrency": 2}
    )
    runner = runner_for(mapping, queue, handler)
    await run_until(runner, lambda: not queue.remaining and calls >= 2 and runner.in_flight == 0)
    assert calls == 2, "the message came back while the first handler still ran"
    assert runner.counters.delete_errors == 1, "the first handler's delete used a stale receipt"


async def test_idempotency_deletes_a_message_delivered_twice_without_handing_it_over() -> None:
    queue = MemoryQueue(visibility_timeout=0.2)
    queue.send("once")
    seen = 0

    async def handler(batch: Batch) -> None:
        nonlocal seen
        seen += 1
        # Simulate a lost delete: the message comes back although it succeeded.
        await queue.change_visibility(list(batch), 0)
        queue.messages[0].receipt = "stale"

    store = RecordingStore()
    mapping = sqs_mapping(Idempotency=True)
    runner = runner_for(mapping, queue, handler, store=store)
    await run_until(runner, lambda: not queue.remaining)
    assert seen == 1
    assert runner.counters.idempotent_skipped_events == 1


async def test_retry_backoff_makes_failed_messages_visible_sooner() -> None:
    queue = MemoryQueue(visibility_timeout=30)
    queue.send("flaky")
    calls = 0

    async def handler(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("not yet")

    mapping = sqs_mapping(RetryBackoffSeconds=0.05, RetryBackoffMaxSeconds=0.1)
    await run_until(runner_for(mapping, queue, handler), lambda: not queue.remaining, within=10)
    assert calls == 3


async def test_stop_releases_messages_gathered_but_not_handed_over() -> None:
    queue = MemoryQueue(visibility_timeout=60)
    queue.send("one")
    stop_now = anyio.Event()

    async def handler(batch: Batch) -> None:
        return None

    mapping = sqs_mapping(BatchSize=50, MaximumBatchingWindowInSeconds=30)
    runner = runner_for(mapping, queue, handler)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while queue.messages[0].receive_count == 0:
                await anyio.sleep(0.01)
            runner.stop()
            stop_now.set()
    message = queue.messages[0]
    assert not message.deleted and message.visible_at <= anyio.current_time()


async def test_fifo_group_failing_in_the_first_part_of_a_split_batch_holds_back_the_rest() -> None:
    queue = MemoryQueue(fifo=True, visibility_timeout=30)
    big = "x" * (2 * 1024 * 1024)
    for n in range(4):  # 4 x 2 MB: more than the 6 MB cap, so the batch is cut in two parts
        queue.send(f"{n}:{big}", group="g")
    handed: list[str] = []
    failed_once = False

    async def handler(batch: Batch) -> list[Record]:
        nonlocal failed_once
        handed.extend(r.body.split(":")[0] for r in batch)
        if not failed_once:
            failed_once = True
            return [batch[0]]
        return []

    mapping = sqs_mapping(fifo=True, BatchSize=10)
    await run_until(runner_for(mapping, queue, handler), lambda: not queue.remaining)
    first_part = handed[: handed.index("0", 1)]
    assert "3" not in first_part, f"a later part of the failed group was handed over: {handed}"
    assert handed[-4:] == ["0", "1", "2", "3"][-len(handed[-4:]) :]
