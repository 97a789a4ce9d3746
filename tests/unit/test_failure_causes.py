"""Every failure names its cause: exception groups are opened, the failed operation is named, and
a partition that keeps failing for one reason logs it once, not once per restart."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import capture_logs

import poller.engine.streams.mapping as stream_mapping_module
from poller.engine.backoff import Backoff
from poller.engine.failures import RepeatedFailures
from poller.engine.state import Checkpoint
from poller.errors import StoreError, causes, during, failure_fields
from poller.stores.memory import MemoryStore
from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN, mapping, stream_runner, wait_until

SHARD = "shardId-000000000000"

# --- the fields of a failure ---------------------------------------------------------------------


def test_a_nested_group_is_reported_by_the_error_it_holds_and_the_operation_marked_on_it() -> None:
    error = StoreError("disk I/O error")
    with pytest.raises(ExceptionGroup) as raised:
        try:
            with during("writing a checkpoint"):
                raise error
        except StoreError as inner:
            raise ExceptionGroup("outer", [ExceptionGroup("inner", [inner])]) from None

    assert causes(raised.value) == [error]
    assert failure_fields(raised.value) == {
        "error": "disk I/O error",
        "error_type": "StoreError",
        "operation": "writing a checkpoint",
    }


def test_the_innermost_operation_wins_and_a_group_lends_its_own_to_unmarked_causes() -> None:
    def fail() -> None:
        with during("invoking the function"), during("reading idempotency records"):
            raise OSError("gone")

    with pytest.raises(OSError) as marked:
        fail()
    assert failure_fields(marked.value)["operation"] == "reading idempotency records"

    group = ExceptionGroup("several", [ValueError("bad"), KeyError("k")])
    with pytest.raises(ExceptionGroup) as outer, during("reading records"):
        raise group
    fields = failure_fields(outer.value)
    assert fields == {
        "error": "ValueError: bad; KeyError: 'k'",
        "error_type": "ValueError, KeyError",
        "operation": "reading records",
    }


def test_a_marked_error_keeps_its_type_so_callers_still_catch_it() -> None:
    with pytest.raises(StoreError, match="locked"), during("writing a checkpoint"):
        raise StoreError("locked")


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    assert failure_fields(TimeoutError()) == {"error": "TimeoutError", "error_type": "TimeoutError"}


# --- repeated failures ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_cause_is_logged_once_then_reminded_at_a_bounded_rate() -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        failures = RepeatedFailures(
            structlog.get_logger("test"), remind_every=60, clock=clock, wall_clock=clock
        )
        for _ in range(50):
            failures.failed("read failed", StoreError("down"), operation="reading records")
            clock.now += 1  # 50 attempts over 50 s: no reminder yet
        clock.now += 20
        failures.failed("read failed", StoreError("down"), operation="reading records")

    loud = [e for e in logs if e["log_level"] != "debug"]
    assert [e["event"] for e in loud] == ["read failed", "read failed: still failing"]
    assert loud[0]["error"] == "down" and loud[0]["operation"] == "reading records"
    assert loud[1]["attempts"] == 51 and loud[1]["failing_for"] == 70.0
    assert failures.attempts == 51
    report = failures.last
    assert report is not None and report.cause["error_type"] == "StoreError"


def test_a_new_cause_is_logged_at_once_and_a_flapping_one_once_a_minute() -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        failures = RepeatedFailures(
            structlog.get_logger("test"), remind_every=60, clock=clock, wall_clock=clock
        )
        failures.failed("receive failed", OSError("connection refused"))
        failures.failed("receive failed", OSError("connection refused"))
        failures.failed("receive failed", PermissionError("access denied"))
        failures.recovered("receiving again")
        clock.now += 10  # fails again soon after it worked: not logged again yet
        failures.failed("receive failed", PermissionError("access denied"))
        failures.recovered("receiving again")
        clock.now += 60
        failures.failed("receive failed", PermissionError("access denied"))

    loud = [(e["event"], e.get("error")) for e in logs if e["log_level"] != "debug"]
    assert loud == [
        ("receive failed", "connection refused"),
        ("receive failed", "access denied"),
        ("receiving again", None),
        ("receive failed", "access denied"),
    ]
    recovered = next(e for e in logs if e["event"] == "receiving again")
    assert recovered["failed_attempts"] == 3
    assert failures.attempts == 1


def test_causes_that_take_turns_are_each_logged_once() -> None:
    with capture_logs() as logs:
        failures = RepeatedFailures(structlog.get_logger("test"))
        for _ in range(10):
            with pytest.raises(StoreError) as renewing, during("renewing leases"):
                raise StoreError("cannot renew lease: disk I/O error")
            failures.failed("lease store unreachable", renewing.value)
            with pytest.raises(StoreError) as taking, during("taking leases"):
                raise StoreError("cannot read leases: disk I/O error")
            failures.failed("lease store unreachable", taking.value)

    loud = [e["operation"] for e in logs if e["log_level"] != "debug"]
    assert loud == ["renewing leases", "taking leases"]
    assert failures.attempts == 20


# --- a partition whose store cannot be written ---------------------------------------------------


class UnwritableStore(MemoryStore):
    """Reads work; every checkpoint write fails inside a task group of the store's own (as a
    store that writes several things at once would), with the current ``reason`` (None: the
    write works)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = "database or disk is full"
        self.writes = 0

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        self.writes += 1
        reason = self.reason
        if reason is None:
            await super().put_checkpoint(mapping_id, partition, checkpoint)
            return

        async def write() -> None:
            raise StoreError(f"cannot write checkpoint: {reason}")

        async with anyio.create_task_group() as group:
            group.start_soon(write)


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_mapping_module, "_RESTART_BACKOFF", Backoff(0.001, 0.001))


async def test_a_partition_failing_for_one_cause_logs_it_once_over_many_restarts(
    quick_restarts: None,
) -> None:
    partition = MemoryPartition(SHARD)
    partition.put(b"one", key="k")
    source = MemorySource([partition], arn=KINESIS_ARN)
    store = UnwritableStore()
    resolved = mapping(StartingPosition="TRIM_HORIZON")
    runner = stream_runner(
        resolved, source, lambda event, context: None, store=store, discovery_interval=0.005
    )
    restarts = 6
    failing: dict[str, Any] = {}

    with capture_logs() as logs:
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            await wait_until(lambda: store.writes >= restarts, what=f"{restarts} failed writes")
            failing = runner.status()["failing_partitions"]
            store.reason = "disk I/O error"
            await wait_until(lambda: store.writes >= 2 * restarts, what="more failed writes")
            runner.stop()

    crashes = [
        e
        for e in logs
        if e["event"] == "partition failed; restarting from its checkpoint"
        and e["log_level"] == "error"
    ]
    assert [e["error"] for e in crashes] == [
        "cannot write checkpoint: database or disk is full",
        "cannot write checkpoint: disk I/O error",
    ]
    for entry in crashes:
        assert entry["error_type"] == "StoreError"
        assert entry["operation"] == "writing a checkpoint"
        assert entry["mapping"] == resolved.mapping_id
        assert entry["shard"] == SHARD
    # Only the debug-level traceback shows the task groups the error crossed.
    assert "TaskGroup" not in repr([e for e in logs if e["log_level"] != "debug"])
    # Status says why the partition does not move, and for how many attempts.
    assert failing[SHARD]["error"] == "cannot write checkpoint: database or disk is full"
    assert failing[SHARD]["operation"] == "writing a checkpoint"
    assert failing[SHARD]["attempts"] >= restarts - 1


async def test_a_partition_that_moves_again_leaves_the_failing_list(quick_restarts: None) -> None:
    partition = MemoryPartition(SHARD)
    partition.put(b"one", key="k")
    source = MemorySource([partition], arn=KINESIS_ARN)
    store = UnwritableStore()
    runner = stream_runner(
        mapping(), source, lambda event, context: None, store=store, discovery_interval=0.005
    )

    async with anyio.create_task_group() as group:
        group.start_soon(runner.run)
        await wait_until(lambda: store.writes >= 3, what="three failed writes")
        assert SHARD in runner.status()["failing_partitions"]
        store.reason = None
        await wait_until(lambda: runner.idle, what="the partition caught up")
        assert runner.status()["failing_partitions"] == {}
        runner.stop()
