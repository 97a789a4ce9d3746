"""Many workers, one stream: this worker's leases of one mapping, taken and kept as KCL does.

:class:`LeaseCoordinator` renews the leases it holds every third of the lease duration, and every
half duration looks at all leases to take its share:

* a lease is *expired* when it has no owner, or when its counter has not moved for the lease
  duration on this worker's own clock (no comparison of clocks between hosts);
* the share is ``ceil(open leases / workers)``, workers being the owners of unexpired leases plus
  this one (capped by ``max_leases``); expired leases are taken first;
* short of its share with nothing expired, a worker steals from the most loaded worker, at most
  ``max_steal`` at a time and only while that worker holds more than the share, so a new worker
  gets its share over a few passes without a storm of moves;
* a child partition's lease is taken only once its parents are finished (their leases marked
  finished, or gone), whoever owned them;
* finished leases are deleted once none of the listed partitions names them as a parent;
* on stop every held lease is released, so the others take them at once instead of waiting for
  them to expire.

:class:`LeasedSource` puts the coordinator between the engine and the real source: the engine
sees only the partitions this worker holds, a partition whose lease was lost reads as revoked (the
batch in flight finishes but is not checkpointed: :class:`FencedCheckpoints` refuses the write).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
import structlog

from poller.engine.failures import RepeatedFailures
from poller.engine.leases import Lease, LeaseLost, LeaseStore
from poller.engine.protocols import (
    PartitionInfo,
    PartitionReader,
    PartitionSource,
    ReadResult,
    StartAt,
)
from poller.engine.state import Checkpoint, Store
from poller.errors import during, failure_fields

__all__ = ["FencedCheckpoints", "LeaseCoordinator", "LeaseSettings", "LeasedSource"]


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """How one worker takes and keeps leases (``[worker]`` settings)."""

    worker_id: str
    #: A lease whose counter has not moved this long is expired (KCL's default: 10 s).
    duration: float = 10.0
    #: Most leases this worker holds of one mapping; None = no cap.
    max_leases: int | None = None
    #: Most leases taken from other workers in one pass (KCL's default: 1).
    max_steal: int = 1


class LeaseCoordinator:
    """The leases this worker holds for one mapping, and the algorithm that keeps them."""

    def __init__(
        self,
        store: LeaseStore,
        mapping_id: str,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._store = store
        self._mapping_id = mapping_id
        self.settings = settings
        self._clock = clock
        self.held: dict[str, Lease] = {}
        #: When this worker last saw each lease change (its own clock): judges expiry.
        self._seen: dict[str, tuple[tuple[str | None, int, int], float]] = {}
        self._changed = anyio.Event()
        #: The open leases as of the last pass (settled() judges them).
        self._open: list[Lease] = []
        #: Partitions whose lease this worker has seen change hands or heartbeat at least once.
        self._seen_moving: set[str] = set()
        self._log = structlog.get_logger("poller.leases").bind(
            mapping=mapping_id, worker=settings.worker_id
        )

    # --- what the engine asks --------------------------------------------------------------------

    def owns(self, partition: str) -> bool:
        """Whether this worker holds the partition's lease now."""
        return partition in self.held

    def epoch(self, partition: str) -> int | None:
        """The epoch at which this worker holds the lease (the fencing token), if it does."""
        lease = self.held.get(partition)
        return lease.epoch if lease is not None else None

    async def wait_for_change(self) -> None:
        """Return once this worker's set of leases changed."""
        await self._changed.wait()

    def lost(self, partition: str, reason: str) -> None:
        """The lease is no longer ours (a renewal or a fenced write failed)."""
        if self.held.pop(partition, None) is not None:
            self._log.warning("lease lost", shard=partition, reason=reason)
            self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- the algorithm ---------------------------------------------------------------------------

    async def offer(self, partitions: Sequence[PartitionInfo]) -> None:
        """Make sure every listed partition has a lease; clean up leases nobody needs.

        A finished partition's lease is deleted once every child of it has been taken at least
        once (children start only after their parents finished, so nobody needs the parent's
        lease again), or once the partition is no longer listed. Kinesis lists a closed shard
        for its whole retention period; without the first rule its lease would stay that long.
        """
        leases = {
            lease.partition: lease for lease in await self._store.list_leases(self._mapping_id)
        }
        children: dict[str, list[str]] = {}
        for partition in partitions:
            for parent in partition.parents:
                children.setdefault(parent, []).append(partition.id)

        def passed(partition: str) -> bool:
            kids = children.get(partition, [])
            return bool(kids) and all(
                kid in leases and (leases[kid].epoch > 0 or leases[kid].finished) for kid in kids
            )

        await self._store.create_leases(
            self._mapping_id, [(p.id, p.parents) for p in partitions if not passed(p.id)]
        )
        listed = {p.id for p in partitions}
        done = [
            lease.partition
            for lease in leases.values()
            if lease.finished and (passed(lease.partition) or lease.partition not in listed)
        ]
        if done:
            await self._store.delete_leases(self._mapping_id, done)

    async def renew(self) -> None:
        """Bump the counter of every held lease; a lease that cannot be renewed is lost."""
        for partition, lease in list(self.held.items()):
            renewed = await self._store.renew_lease(self._mapping_id, lease)
            if renewed is None:
                self.lost(partition, "another worker took it")
            elif partition in self.held:
                self.held[partition] = renewed

    async def take(self) -> None:
        """One pass: note what changed, then take expired leases and steal toward the share."""
        now = self._clock()
        leases = await self._store.list_leases(self._mapping_id)
        by_partition = {lease.partition: lease for lease in leases}
        for lease in leases:
            stamp = (lease.owner, lease.counter, lease.epoch)
            previous = self._seen.get(lease.partition)
            if previous is None or previous[0] != stamp:
                self._seen[lease.partition] = (stamp, now)
                if previous is not None:
                    self._seen_moving.add(lease.partition)
        me = self.settings.worker_id
        open_leases = [
            lease
            for lease in leases
            if not lease.finished and self._parents_done(lease, by_partition)
        ]
        self._open = open_leases
        # Takeable: others' leases that expired, and leases the table says are this worker's
        # but it does not hold (a restart under the same worker_id, or a renewal that lost a
        # race): nobody renews those, and others count them as this worker's share.
        expired = [
            lease
            for lease in open_leases
            if (lease.owner != me and self._expired(lease, now))
            or (lease.owner == me and lease.partition not in self.held)
        ]
        alive_owners: dict[str, list[Lease]] = {}
        for lease in open_leases:
            if lease.owner is not None and lease not in expired:
                alive_owners.setdefault(lease.owner, []).append(lease)
        workers = len(set(alive_owners) | {me})
        share = math.ceil(len(open_leases) / workers) if open_leases else 0
        if self.settings.max_leases is not None:
            share = min(share, self.settings.max_leases)
        need = share - len(self.held)
        if need <= 0:
            return
        random.shuffle(expired)
        for lease in expired[:need]:
            await self._take(lease, _take_reason(lease, me))
        need = share - len(self.held)
        if need <= 0 or expired:
            return
        others = {owner: held for owner, held in alive_owners.items() if owner != me}
        if not others:
            return
        richest, theirs = max(others.items(), key=lambda item: len(item[1]))
        surplus = len(theirs) - share
        for lease in random.sample(theirs, max(0, min(need, self.settings.max_steal, surplus))):
            await self._take(lease, f"stolen from {richest}")

    async def _take(self, lease: Lease, reason: str) -> None:
        taken = await self._store.take_lease(self._mapping_id, lease, self.settings.worker_id)
        if taken is None:
            return  # someone was quicker: fine
        self.held[taken.partition] = taken
        self._seen[taken.partition] = ((taken.owner, taken.counter, taken.epoch), self._clock())
        self._log.info("lease taken", shard=taken.partition, reason=reason, epoch=taken.epoch)
        self._signal()

    def settled(self) -> bool:
        """Whether every open lease is this worker's, or another's that was seen renewed
        within the lease duration. Until then, some partition may be waiting for this worker
        to take it over (a dead owner's), so the mapping must not count as idle."""
        now = self._clock()
        me = self.settings.worker_id
        for lease in self._open:
            if lease.partition in self.held or lease.owner == me:
                continue
            if lease.owner is None or lease.partition not in self._seen_moving:
                return False
            if self._expired(lease, now):
                return False
        return True

    def _expired(self, lease: Lease, now: float) -> bool:
        if lease.owner is None:
            return True
        _, since = self._seen[lease.partition]
        return now - since > self.settings.duration

    @staticmethod
    def _parents_done(lease: Lease, by_partition: dict[str, Lease]) -> bool:
        return all(
            parent not in by_partition or by_partition[parent].finished for parent in lease.parents
        )

    async def finished(self, partition: str) -> None:
        """The partition was read to its end: its lease is done (children may be taken)."""
        await self._store.finish_lease(self._mapping_id, partition)
        if self.held.pop(partition, None) is not None:
            self._signal()

    def log_release_failure(self, error: Exception) -> None:
        """Say that leases could not be released (they expire after the lease duration)."""
        self._log.warning(
            "leases not released; other workers take them once they expire",
            **failure_fields(error),
            leases=sorted(self.held),
        )

    async def release_all(self) -> None:
        """Give every held lease back (a graceful stop): others take them at once."""
        for partition, lease in list(self.held.items()):
            if await self._store.release_lease(self._mapping_id, lease):
                self._log.info("lease released", shard=partition)
            self.held.pop(partition, None)
        self._signal()

    async def run(self) -> None:
        """Renew every third of the duration; look for leases to take every half duration.

        Both run on a fixed-rate schedule of their own (as KCL's renewer does): a slow store
        call does not stretch the interval, and a look for leases does not add a renewal.
        """
        renew_every = self.settings.duration / 3
        # Not exactly half the duration: on a fixed-rate schedule, a look would fall exactly one
        # duration after the look that last saw a lease move, judge it "not yet expired" (by a
        # hair), and the takeover would wait another half duration. KCL adds 25 ms the same way.
        take_every = self.settings.duration / 2 + _EPSILON
        next_take = next_renew = self._clock()
        failures = RepeatedFailures(self._log)
        while True:
            now = self._clock()
            try:
                if now >= next_take:
                    with during("taking leases"):
                        await self.take()
                    next_take = _next_tick(next_take, take_every, now)
                if now >= next_renew:
                    with during("renewing leases"):
                        await self.renew()
                    next_renew = _next_tick(next_renew, renew_every, now)
                failures.recovered("lease store answers again")
            except Exception as error:
                # The store is unreachable: keep trying. Leases not renewed for the duration are
                # taken by others, and this worker's fenced checkpoint writes then fail, so its
                # partitions stop: nothing is settled twice.
                delay = min(renew_every, 0.1 * 2 ** min(failures.attempts + 1, 8))
                failures.failed(
                    "lease store unreachable; retrying",
                    error,
                    level="warning",
                    retry_in=round(delay, 2),
                )
                await anyio.sleep(delay)
                continue
            await anyio.sleep(max(0.0, min(next_take, next_renew) - self._clock()))


def _take_reason(lease: Lease, me: str) -> str:
    if lease.owner is None:
        return "free"
    return "reclaimed (this worker's in the table, not held)" if lease.owner == me else "expired"


#: Added to the interval between looks for leases (see :meth:`LeaseCoordinator.run`).
_EPSILON = 0.025


def _next_tick(previous: float, every: float, now: float) -> float:
    """The next time on a fixed-rate schedule; ticks missed while the store was slow are
    skipped, not made up in a burst."""
    following = previous + every
    return following if following > now else now + every


class LeasedSource:
    """The real source, as seen by one worker: only the partitions whose leases it holds."""

    def __init__(self, source: PartitionSource, coordinator: LeaseCoordinator) -> None:
        self._source = source
        self.coordinator = coordinator
        self.kind = source.kind
        self.min_read_interval = source.min_read_interval
        self.idle_poll_interval = source.idle_poll_interval
        self.supports_at_timestamp = source.supports_at_timestamp
        self._taken_once = False

    async def list_partitions(self) -> Sequence[PartitionInfo]:
        """The listed partitions this worker holds (every listed one gets a lease)."""
        listed = await self._source.list_partitions()
        await self.coordinator.offer(listed)
        if not self._taken_once:
            # Take this worker's share before the first answer, so the mapping starts its
            # partitions at once (and does not look idle while it owns nothing yet).
            await self.coordinator.take()
            self._taken_once = True
        return [p for p in listed if self.coordinator.owns(p.id)]

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> PartitionReader:
        """The real reader, which reads as revoked once the lease is gone."""
        reader = await self._source.open_reader(partition, start)
        return _LeasedReader(reader, partition.id, self.coordinator)

    async def wait_for_partition_change(self) -> None:
        """Return once this worker took or lost a lease."""
        await self.coordinator.wait_for_change()

    async def run_background(self) -> None:
        """Run the lease algorithm while the mapping runs; on stop, release every lease (the
        partitions have stopped and checkpointed by then) so other workers take them at once."""
        try:
            await self.coordinator.run()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.coordinator.release_all()
                except Exception as error:  # the store may be gone; the leases then expire
                    self.coordinator.log_release_failure(error)

    async def aclose(self) -> None:
        """Close the real source."""
        await self._source.aclose()


class _LeasedReader:
    def __init__(
        self, reader: PartitionReader, partition: str, coordinator: LeaseCoordinator
    ) -> None:
        self._reader = reader
        self._partition = partition
        self._coordinator = coordinator

    async def read(self) -> ReadResult:
        if not self._coordinator.owns(self._partition):
            return ReadResult((), revoked=True)
        return await self._reader.read()

    async def aclose(self) -> None:
        await self._reader.aclose()


class FencedCheckpoints:
    """The state store, with checkpoint writes that land only while this worker holds the
    partition's lease; idempotency records pass through."""

    def __init__(self, store: Store, leases: LeaseStore, coordinator: LeaseCoordinator) -> None:
        self._store = store
        self._leases = leases
        self._coordinator = coordinator

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        """The stored checkpoint (reading needs no lease)."""
        return await self._store.get_checkpoint(mapping_id, partition)

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        """Write only as the lease's holder; a refused write means the lease was lost."""
        epoch = self._coordinator.epoch(partition)
        owner = self._coordinator.settings.worker_id
        if epoch is None or not await self._leases.put_checkpoint_fenced(
            mapping_id, partition, checkpoint, owner, epoch
        ):
            self._coordinator.lost(partition, "checkpoint refused: the lease moved (fenced)")
            raise LeaseLost(partition)
        if checkpoint.finished:
            await self._coordinator.finished(partition)

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        """As the store does."""
        await self._store.remember_succeeded(mapping_id, partition, positions, expires_at)

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        """As the store does."""
        return await self._store.succeeded_among(mapping_id, partition, positions)

    async def purge_expired(self, now: float) -> int:
        """As the store does."""
        return await self._store.purge_expired(now)

    async def aclose(self) -> None:
        """The store belongs to the worker: nothing to close here."""
