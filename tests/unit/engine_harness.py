"""A harness that runs the real engine against the in-memory source and records what it did.

The target wrapper sees exactly the outcome the engine acted on; the store wrapper sees every
checkpoint write; the sink records every discard. Tests then check the engine's invariants on
these logs instead of re-implementing its rules.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from poller.config import ResolvedMapping, parse_config
from poller.engine.mapping import StreamMappingRunner
from poller.engine.outcome import Failed, Outcome, PartiallyFailed, Succeeded
from poller.engine.protocols import Checkpoint, Discard, Invocation, Target
from poller.records import Batch, Record
from poller.sources.memory import MemoryPartition, MemorySource
from poller.stores.memory import MemoryStore

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/harness"
_clock = itertools.count()


def tick() -> int:
    """A strictly increasing logical time shared by every log of the harness."""
    return next(_clock)


def mapping(**fields: Any) -> ResolvedMapping:
    """A resolved Kinesis mapping with test-friendly defaults (no backoff)."""
    base: dict[str, Any] = {
        "EventSourceArn": ARN,
        "StartingPosition": "TRIM_HORIZON",
        "RetryBackoffSeconds": 0,
        "RetryBackoffMaxSeconds": 0,
    }
    base.update(fields)
    return parse_config({"mappings": [base]}).mappings[0].resolved()


@dataclass
class Call:
    """One invocation as the engine saw it."""

    records: tuple[Record, ...]
    attempt: int
    start: int
    end: int = -1
    outcome: Outcome | None = None  # None: cancelled (timeout or crash)

    def succeeded(self, *, idempotency: bool) -> list[Record]:
        """Records this invocation's outcome settles as succeeded.

        After a partial response AWS settles only the records before the lowest failed one (the
        rest are retried with it); with idempotency every record not named as failed succeeded.
        """
        if isinstance(self.outcome, Succeeded):
            return list(self.records)
        if isinstance(self.outcome, PartiallyFailed):
            if not idempotency:
                return list(self.records[: self.outcome.failed[0]])
            failed = set(self.outcome.failed)
            return [r for i, r in enumerate(self.records) if i not in failed]
        return []


class RecordingTarget:
    """Wraps a target and logs each invocation with its outcome and logical start/end times."""

    def __init__(self, inner: Target, on_call: Callable[[Call], Awaitable[None]] | None = None):
        self.inner = inner
        self.calls: list[Call] = []
        self._on_call = on_call

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        call = Call(batch.records, batch.attempt, tick())
        self.calls.append(call)
        if self._on_call is not None:
            await self._on_call(call)
        try:
            outcome: Outcome = await self.inner.invoke(batch, invocation)
        except Exception as error:  # the engine turns this into a failure; log it the same way
            outcome = Failed(str(error))
            call.outcome = outcome
            raise
        finally:
            call.end = tick()
        call.outcome = outcome
        return outcome


class RecordingSink:
    """Records discards with the logical time they were delivered."""

    def __init__(self) -> None:
        self.discards: list[tuple[int, Discard]] = []

    async def deliver(self, discard: Discard) -> None:
        self.discards.append((tick(), discard))


class RecordingStore(MemoryStore):
    """A memory store that also logs every checkpoint write."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, Checkpoint]] = []

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        self.puts.append((partition, checkpoint))
        await super().put_checkpoint(mapping_id, partition, checkpoint)

    def succeeded_snapshot(self, mapping_id: str) -> set[tuple[str, str]]:
        """(partition, position) pairs remembered as succeeded and not expired."""
        now = self._clock()
        return {
            (partition, position)
            for (mid, partition), entries in self._succeeded.items()
            if mid == mapping_id
            for position, expires in entries.items()
            if expires > now
        }


@dataclass
class Run:
    """Everything one run of a mapping produced."""

    target: RecordingTarget
    sink: RecordingSink = field(default_factory=RecordingSink)


async def run_until_idle(
    resolved: ResolvedMapping,
    source: MemorySource,
    store: RecordingStore,
    target: Target,
    *,
    time_limit: float = 20.0,
    crash: anyio.Event | None = None,
    on_call: Callable[[Call], Awaitable[None]] | None = None,
) -> Run:
    """Run the mapping until every partition is idle (or until ``crash`` is set: then cancel)."""
    run = Run(RecordingTarget(target, on_call))
    runner = StreamMappingRunner(
        mapping=resolved,
        source=source,
        store=store,
        target=run.target,
        sink=run.sink,
        discovery_interval=0.05,
        idle_poll=0.001,
    )
    crashed = False
    with anyio.fail_after(time_limit):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while True:
                if crash is not None and crash.is_set():
                    crashed = True
                    group.cancel_scope.cancel()  # like kill -9: no graceful stop
                    break
                if runner.idle and runner.partitions:
                    await anyio.sleep(0.01)
                    if runner.idle:
                        break
                await anyio.sleep(0.002)
            if not crashed:
                runner.stop()
    return run


def fill(partitions: Sequence[int], keys: int = 3) -> MemorySource:
    """A source with one partition per entry, holding that many records spread over ``keys``."""
    parts = []
    for index, count in enumerate(partitions):
        partition = MemoryPartition(f"shardId-{index:012d}")
        for n in range(count):
            partition.put(f"p{index}-r{n}".encode(), key=f"key-{n % keys}")
        parts.append(partition)
    return MemorySource(parts, arn=ARN)
