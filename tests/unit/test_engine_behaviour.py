"""Engine behaviours beyond the property tests: age, payload cap, destinations, blocking, lineage."""

from __future__ import annotations

import time
from typing import Any

import anyio

from poller.engine.discard import PAYLOAD_SIZE_EXCEEDED, RECORD_AGE_EXCEEDED, Discard
from poller.functions import target_for
from poller.records import Batch
from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN as ARN
from tests.kit import RecordingSink, RecordingStore, mapping, stream_runner
from tests.unit.engine_harness import (
    fill,
    run_until_idle,
)


async def test_records_too_old_are_discarded_before_invoking_without_response_context() -> None:
    partition = MemoryPartition("shardId-000000000000")
    now = time.time()
    old = [partition.put(b"old", arrival=now - 120) for _ in range(2)]
    fresh = [partition.put(b"fresh", arrival=now) for _ in range(3)]
    source = MemorySource([partition], arn=ARN)
    seen: list[str] = []

    async def handler(batch: Batch) -> None:
        seen.extend(r.position for r in batch)

    resolved = mapping(MaximumRecordAgeInSeconds=60)
    run = await run_until_idle(
        resolved,
        source,
        RecordingStore(),
        target_for(handler, source, report_batch_item_failures=False),
    )
    assert seen == [r.position for r in fresh]
    [(_, discard)] = run.sink.discards
    assert discard.condition == RECORD_AGE_EXCEEDED
    assert [r.position for r in discard.records] == [r.position for r in old]
    assert discard.invoke_count == 1 and discard.response is None


async def test_records_expiring_while_retrying_carry_the_invocation_count() -> None:
    partition = MemoryPartition("shardId-000000000000")
    partition.put(b"x", arrival=time.time() - 59.7)
    source = MemorySource([partition], arn=ARN)
    calls = 0

    async def handler(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("always")

    resolved = mapping(
        MaximumRecordAgeInSeconds=60,
        MaximumRetryAttempts=-1,
        RetryBackoffSeconds=0.05,
        RetryBackoffMaxSeconds=0.05,
    )
    run = await run_until_idle(
        resolved,
        source,
        RecordingStore(),
        target_for(handler, source, report_batch_item_failures=False),
    )
    [(_, discard)] = run.sink.discards
    assert discard.condition == RECORD_AGE_EXCEEDED
    assert discard.invoke_count == calls > 1
    assert discard.response is not None and discard.response.function_error == "Unhandled"


async def test_a_record_above_the_payload_cap_is_discarded_not_retried() -> None:
    partition = MemoryPartition("shardId-000000000000")
    big = partition.put(b"x" * (5 * 1024 * 1024))  # base64 in the event makes it > 6 MB
    small = partition.put(b"ok")
    source = MemorySource([partition], arn=ARN)
    seen: list[str] = []

    async def handler(batch: Batch) -> None:
        seen.extend(r.position for r in batch)

    run = await run_until_idle(
        mapping(),
        source,
        RecordingStore(),
        target_for(handler, source, report_batch_item_failures=False),
    )
    assert seen == [small.position]
    [(_, discard)] = run.sink.discards
    assert discard.condition == PAYLOAD_SIZE_EXCEEDED and discard.records == (big,)


async def test_unreachable_destination_blocks_the_shard_until_delivery_works() -> None:
    source = fill([3])
    attempts = 0
    delivered: list[Discard] = []

    class FlakySink:
        async def deliver(self, discard: Discard) -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 4:
                raise ConnectionError("destination down")
            delivered.append(discard)

    seen: list[str] = []

    async def handler(batch: Batch) -> None:
        seen.extend(r.position for r in batch)
        if batch[0].position == "1":
            raise RuntimeError("poison")

    resolved = mapping(BatchSize=1, MaximumRetryAttempts=0)
    store = RecordingStore()
    runner = stream_runner(
        resolved,
        source,
        handler,
        store=store,
        sink=FlakySink(),
        idle_poll=0.001,
    )
    # Delivery backoff is real (0.5 s, 1 s, ...): allow for three failed attempts.
    with anyio.fail_after(15):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while not (runner.idle and delivered):
                assert "2" not in seen or delivered, "record 2 was handed over before the discard"
                await anyio.sleep(0.01)
            runner.stop()
    assert attempts == 4 and [r.position for r in delivered[0].records] == ["1"]
    assert seen == ["1", "2", "3"]
    assert store.puts[-1][1].position == "3"


async def test_a_failing_shard_blocks_while_other_shards_go_on() -> None:
    source = fill([5, 5])
    blocked = "shardId-000000000000"
    release = anyio.Event()
    seen: dict[str, list[str]] = {}

    async def handler(batch: Batch) -> None:
        seen.setdefault(batch.partition, []).extend(r.position for r in batch)
        if batch.partition == blocked and not release.is_set():
            raise RuntimeError("down")

    resolved = mapping(BatchSize=5, RetryBackoffSeconds=0.01, RetryBackoffMaxSeconds=0.01)
    runner = stream_runner(
        resolved,
        source,
        handler,
        store=RecordingStore(),
        sink=RecordingSink(),
        idle_poll=0.001,
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while len(seen.get("shardId-000000000001", [])) < 5:
                await anyio.sleep(0.005)
            while len(seen.get(blocked, [])) < 15:  # three failed attempts of the batch
                await anyio.sleep(0.005)
            assert runner.partitions[blocked].checkpoint is None
            release.set()
            while not runner.idle:
                await anyio.sleep(0.005)
            runner.stop()
    assert seen["shardId-000000000001"] == ["1", "2", "3", "4", "5"]
    assert seen[blocked][-5:] == ["1", "2", "3", "4", "5"]


async def test_latest_skips_old_records_and_still_finishes_closed_parents() -> None:
    parent = MemoryPartition("shardId-parent")
    for i in range(3):
        parent.put(f"p{i}".encode())
    parent.close()
    child = MemoryPartition("shardId-child", parents=("shardId-parent",))
    for i in range(3):
        child.put(f"c{i}".encode())
    source = MemorySource([child, parent], arn=ARN)
    order: list[str] = []

    async def handler(batch: Batch) -> None:
        order.extend(r.data.decode() for r in batch)

    store = RecordingStore()
    resolved = mapping(BatchSize=1, StartingPosition="LATEST")
    await run_until_idle(
        resolved, source, store, target_for(handler, source, report_batch_item_failures=False)
    )
    # LATEST applies to every shard listed at start: nothing old is handed over, and the
    # closed parent is read to its end and marked finished so the child could start.
    assert order == []
    checkpoint = await store.get_checkpoint(resolved.mapping_id, "shardId-parent")
    assert checkpoint is not None and checkpoint.finished


async def test_parent_records_are_all_handed_over_before_any_child_record() -> None:
    parent = MemoryPartition("shardId-parent")
    for i in range(4):
        parent.put(f"p{i}".encode())
    parent.close()
    child = MemoryPartition("shardId-child", parents=("shardId-parent",))
    for i in range(4):
        child.put(f"c{i}".encode())
    source = MemorySource([child, parent], arn=ARN)
    order: list[str] = []

    async def handler(batch: Batch) -> None:
        await anyio.sleep(0.01)
        order.extend(r.data.decode() for r in batch)

    await run_until_idle(
        mapping(BatchSize=2),
        source,
        RecordingStore(),
        target_for(handler, source, report_batch_item_failures=False),
    )
    assert order == ["p0", "p1", "p2", "p3", "c0", "c1", "c2", "c3"]


async def test_shards_found_later_start_at_trim_horizon() -> None:
    source = fill([1])
    seen: list[str] = []

    async def handler(batch: Batch) -> None:
        seen.extend(r.data.decode() for r in batch)

    resolved = mapping(StartingPosition="LATEST")
    store = RecordingStore()
    runner = stream_runner(
        resolved,
        source,
        handler,
        store=store,
        sink=RecordingSink(),
        discovery_interval=0.02,
        idle_poll=0.001,
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while not runner.idle:
                await anyio.sleep(0.005)
            late = source.add(MemoryPartition("shardId-late"))
            late.put(b"written-before-discovery")
            while "written-before-discovery" not in seen:
                await anyio.sleep(0.005)
            runner.stop()
    assert "p0-r0" not in seen  # LATEST skipped what the first shard held at start


async def test_a_timed_out_invocation_is_a_function_error_and_retried() -> None:
    source = fill([1])
    calls = 0

    async def handler(event: dict[str, Any], context: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(10)

    resolved = mapping(FunctionTimeout=0.05)
    run = await run_until_idle(
        resolved,
        source,
        RecordingStore(),
        target_for(handler, source, report_batch_item_failures=False),
    )
    assert calls == 2 and not run.sink.discards
    assert run.target.calls[0].outcome is None  # cancelled by the timeout


async def test_stopping_while_retrying_leaves_the_batch_unsettled() -> None:
    source = fill([2])

    async def handler(batch: Batch) -> None:
        raise RuntimeError("down")

    resolved = mapping(RetryBackoffSeconds=30, RetryBackoffMaxSeconds=30)
    store = RecordingStore()
    runner = stream_runner(
        resolved,
        source,
        handler,
        store=store,
        sink=RecordingSink(),
        idle_poll=0.001,
    )
    with anyio.fail_after(5):  # the 30 s backoff must not delay the stop
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while not any(p.blocked for p in runner.partitions.values()):
                await anyio.sleep(0.005)
            runner.stop()
    assert store.puts == []


async def test_latest_restart_without_at_timestamp_skips_only_what_came_before_the_start() -> None:
    partition = MemoryPartition("shardId-000000000000")
    partition.put(b"before-start", arrival=time.time() - 60)
    source = MemorySource([partition], arn=ARN)
    source.supports_at_timestamp = False  # like DynamoDB Streams
    seen: list[str] = []

    async def handler(batch: Batch) -> None:
        seen.extend(r.data.decode() for r in batch)

    resolved = mapping(StartingPosition="LATEST")
    store = RecordingStore()
    target = target_for(handler, source, report_batch_item_failures=False)
    await run_until_idle(resolved, source, store, target)
    marker = await store.get_checkpoint(resolved.mapping_id, partition.id)
    assert marker is not None and marker.position == "" and marker.opened_at is not None
    partition.put(b"while-down")  # written while the worker was stopped
    await run_until_idle(resolved, source, store, target)
    assert seen == ["while-down"]
