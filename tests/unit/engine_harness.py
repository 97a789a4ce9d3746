"""A harness that runs the real engine against the in-memory source and records what it did.

The target wrapper sees exactly the outcome the engine acted on; the store wrapper sees every
checkpoint write; the sink records every discard. Tests then check the engine's invariants on
these logs instead of re-implementing its rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from poller.config import ResolvedMapping
from poller.engine.invocation import Invocation, Target
from poller.engine.outcome import Failed, Outcome, PartiallyFailed, Succeeded
from poller.records import Batch, Record
from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN as ARN
from tests.kit import RecordingSink, RecordingStore, stream_runner, tick


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
    runner = stream_runner(
        resolved,
        source,
        run.target,
        store=store,
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
