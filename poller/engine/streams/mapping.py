"""One stream mapping: which partitions run, in what order, and when new ones appear.

Partitions start only when every parent listed by the source has finished (the KCL convention, so a
key's records are handed over in order across a split or merge); a parent the source no longer lists
has aged out and does not block. Partitions are listed again every ``discovery_interval`` and as soon
as one finishes, so children start without waiting. Shards known at the first listing start at the
mapping's StartingPosition; shards that appear later start at TRIM_HORIZON so nothing written to them
is skipped. A partition with a checkpoint always resumes after it.

A partition whose runner fails (its store cannot be written, say) starts again from its checkpoint
at a later listing, no sooner than a backoff that grows with its failures in a row. Its failure is
logged once per distinct cause, naming the error and the operation that failed
(:mod:`poller.engine.failures`), and status shows it until the partition moves again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from poller.config.fields import StartingPosition
from poller.engine.backoff import Backoff
from poller.engine.failures import RepeatedFailures
from poller.engine.invocation import InvocationContext
from poller.engine.leases import LeaseLost
from poller.engine.protocols import (
    AssignedPartitions,
    PartitionInfo,
    PartitionSource,
    ReportsMetrics,
    ReportsTrimming,
    RunsInBackground,
)
from poller.engine.state import Store
from poller.engine.streams.leasing import LeasedSource
from poller.engine.streams.partition import PartitionRunner

__all__ = ["StreamMappingRunner"]

_LIST_ERROR_BACKOFF = Backoff(1.0, 60.0)
#: How long a partition that failed waits, at least, before it starts again.
_RESTART_BACKOFF = Backoff(1.0, 60.0)


class StreamMappingRunner:
    """Runs every partition of one log-source mapping until the worker stops."""

    def __init__(
        self,
        context: InvocationContext,
        source: PartitionSource,
        store: Store,
        *,
        discovery_interval: float = 30.0,
        idle_poll: float | None = None,
    ) -> None:
        if context.sink is None:
            raise ValueError("a stream mapping needs a discard sink (DroppingSink without one)")
        self.mapping = context.mapping
        self.counters = context.counters
        self._context = context
        self._source = source
        self._store = store
        self._discovery_interval = discovery_interval
        self._idle_poll = idle_poll if idle_poll is not None else source.idle_poll_interval
        self._running: dict[str, PartitionRunner] = {}
        self._finished: set[str] = set()
        #: Partitions whose runner failed and has not been started again yet.
        self._crashed: set[str] = set()
        #: Per partition: its failures in a row (logged once per cause), until it moves again.
        self._failures: dict[str, RepeatedFailures] = {}
        #: Per crashed partition: the earliest time (anyio clock) it may start again.
        self._restart_at: dict[str, float] = {}
        self._listed_once = False
        self._initial: set[str] | None = None
        self._stopping = anyio.Event()
        self._wake = anyio.Event()
        self._watch_scope = anyio.CancelScope()
        #: Set when :meth:`run` has returned (every partition stopped).
        self.done = anyio.Event()
        self._log = structlog.get_logger("poller.engine").bind(mapping=self.mapping.mapping_id)
        self._listing_failures = RepeatedFailures(self._log)

    # --- status ----------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Every running partition is caught up with nothing unsettled (and, with leases, every
        other partition is held by a worker seen alive: nothing waits to be taken over)."""
        source = self._source
        if isinstance(source, LeasedSource) and not source.coordinator.settled():
            return False
        if self._crashed:  # a partition that failed (its store, say) has records unsettled
            return False
        return self._listed_once and all(r.idle for r in self._running.values())

    @property
    def ready(self) -> bool:
        """The source answered: its partitions were listed at least once."""
        return self._listed_once

    @property
    def partitions(self) -> dict[str, PartitionRunner]:
        """The partitions running now, by id."""
        return dict(self._running)

    @property
    def finished_partitions(self) -> frozenset[str]:
        """Partitions known to be closed and fully processed."""
        return frozenset(self._finished)

    def status(self) -> dict[str, Any]:
        """Per partition: checkpoint, idle and blocked flags, lag, whether a batch is in the
        handler, since when a failing batch blocks it and its attempt; the last failure of each
        partition that failed and has not moved since (``failing_partitions``: error, type,
        operation, attempts, since, and whether it is waiting to start again); the counters."""
        source = self._source
        trimming = source if isinstance(source, ReportsTrimming) else None
        leases = source.coordinator if isinstance(source, LeasedSource) else None
        return {
            "idle": self.idle,
            **(
                {
                    "leases": {
                        "worker": leases.settings.worker_id,
                        "owned": sorted(leases.held),
                    }
                }
                if leases is not None
                else {}
            ),
            "partitions": {
                pid: {
                    "checkpoint": (p.checkpoint.position or None) if p.checkpoint else None,
                    "idle": p.idle,
                    "blocked": p.blocked,
                    "behind_ms": p.behind_ms,
                    "in_flight": p.in_flight,
                    "blocked_since": p.blocked_since,
                    "attempts": p.attempts,
                }
                for pid, p in self._running.items()
            },
            "finished_partitions": sorted(self._finished),
            "failing_partitions": self._failing_partitions(),
            "metrics": {
                **self.counters.snapshot(),
                # Times the service had trimmed unread records (DynamoDB Streams keeps 24 h):
                # the lost ranges are listed below; how many records they held is unknowable.
                "TrimmedRangeCount": trimming.trimmed_events if trimming else 0,
                # Source-specific metrics (Kafka: OffsetLag, CommittedEventCount, ...).
                **(source.extra_metrics() if isinstance(source, ReportsMetrics) else {}),
            },
            "trimmed_ranges": [
                {"shard": t.shard, "after": t.after, "resumed_at": t.resumed_at}
                for t in (trimming.trimmed_ranges if trimming else ())
            ],
        }

    def _failing_partitions(self) -> dict[str, dict[str, Any]]:
        failing: dict[str, dict[str, Any]] = {}
        for partition, failures in self._failures.items():
            runner = self._running.get(partition)
            report = failures.last
            if report is None or (runner is not None and runner.moved):
                continue
            failing[partition] = {**report.as_dict(), "restarting": partition in self._crashed}
        return failing

    def stop(self) -> None:
        """Stop fetching; in-flight batches finish, then :meth:`run` returns."""
        self._stopping.set()
        self._wake.set()
        self._watch_scope.cancel()

    # --- run ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`; partitions start and finish as lineage allows."""
        self._log.info("mapping starting", source=self._source.kind)
        try:
            await self._run()
        finally:
            self.done.set()
        self._log.info("mapping stopped")

    async def _watch_source(self) -> None:
        """Wake the listing loop whenever the source says its partitions changed (Kafka: a
        rebalance assigned or revoked some), instead of waiting for the next discovery."""
        source = self._source
        if not isinstance(source, AssignedPartitions):
            return
        with self._watch_scope:
            while not self._stopping.is_set():
                await source.wait_for_partition_change()
                self._wake.set()

    async def _run(self) -> None:
        # A source may run a task of its own for as long as its partitions do (Kafka: the
        # committer); it is cancelled only after every partition runner has returned.
        source = self._source
        async with anyio.create_task_group() as outer:
            if isinstance(source, RunsInBackground):
                outer.start_soon(source.run_background)
            await self._run_partitions()
            outer.cancel_scope.cancel()

    async def _run_partitions(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_source)
            while not self._stopping.is_set():
                self._wake = anyio.Event()
                try:
                    partitions = await self._source.list_partitions()
                except Exception as error:
                    self.counters.polling_errors += 1
                    delay = _LIST_ERROR_BACKOFF.delay(self._listing_failures.attempts + 1)
                    self._listing_failures.failed(
                        "cannot list partitions",
                        error,
                        operation="listing partitions",
                        retry_in=round(delay, 2),
                    )
                    with anyio.move_on_after(delay):
                        await self._stopping.wait()
                    continue
                self._listing_failures.recovered("partitions listed again")
                await self._start_ready(partitions, group)
                self._listed_once = True
                self.counters.iterator_age_ms = max(
                    (r.behind_ms for r in self._running.values()), default=0
                )
                with anyio.move_on_after(self._discovery_interval):
                    await self._wake.wait()

    async def _start_ready(self, listed: Sequence[PartitionInfo], group: TaskGroup) -> None:
        known = {p.id for p in listed}
        if self._initial is None:
            self._initial = set(known)
        for gone in (self._failures.keys() | self._restart_at.keys()) - known:
            self._failures.pop(gone, None)  # no longer ours (or gone): not ours to report
            self._restart_at.pop(gone, None)
        mapping_id = self.mapping.mapping_id
        for info in listed:
            if info.id in self._finished or info.id in self._running:
                continue
            checkpoint = await self._store.get_checkpoint(mapping_id, info.id)
            if checkpoint is not None and checkpoint.finished:
                self._finished.add(info.id)
        for info in listed:
            if info.id in self._finished or info.id in self._running:
                continue
            waiting_for = [p for p in info.parents if p in known and p not in self._finished]
            if waiting_for or self._restart_at.get(info.id, 0.0) > anyio.current_time():
                continue
            position = (
                self.mapping.starting_position
                if info.id in self._initial
                else StartingPosition.TRIM_HORIZON
            )
            runner = PartitionRunner(
                self._context,
                self._source,
                info,
                self._store,
                stopping=self._stopping,
                starting_position=position,
                idle_poll=self._idle_poll,
            )
            self._running[info.id] = runner
            self._crashed.discard(info.id)
            self._restart_at.pop(info.id, None)
            group.start_soon(self._run_partition, runner)

    async def _run_partition(self, runner: PartitionRunner) -> None:
        partition = runner.partition.id
        crashed = False
        try:
            finished = await runner.run()
        except Exception as error:
            finished = False
            if _only_lease_lost(error):
                # Another worker holds the partition now: stop at once, checkpoint nothing more.
                self._log.info(
                    "partition stopped: its lease moved to another worker", shard=partition
                )
                runner.revoked = True
            else:
                crashed = True
                self._crashed.add(partition)
                # A store or source failure outside the read loop: the partition is started
                # again from its checkpoint at a later listing; nothing was settled past it.
                failures = self._failures.setdefault(partition, RepeatedFailures(self._log))
                if runner.moved:  # it worked since its last failure: this one starts afresh
                    failures.recovered()
                delay = _RESTART_BACKOFF.delay(failures.attempts + 1)
                self._restart_at[partition] = anyio.current_time() + delay
                failures.failed(
                    "partition failed; restarting from its checkpoint",
                    error,
                    operation="processing the partition",  # unless the error names its own
                    shard=partition,
                    earliest_restart_in=round(delay, 2),
                )
        finally:
            self._running.pop(partition, None)
        if not crashed:
            self._failures.pop(partition, None)
            self._restart_at.pop(partition, None)
        if finished:
            self._finished.add(partition)
        if finished or (runner.revoked and not crashed):
            # Children may start now; a revoked partition may already be ours again.
            self._wake.set()


def _only_lease_lost(error: BaseException) -> bool:
    """Whether ``error`` is the lease moving away (alone, or all a task group raised)."""
    if isinstance(error, LeaseLost):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_only_lease_lost(inner) for inner in error.exceptions)
    return False
