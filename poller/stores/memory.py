"""A state store that lives in process memory, for tests, benchmarks and throwaway runs.

It follows exactly the rules of the durable stores (checkpoints only move forward, a finished
partition stays finished, idempotency records expire) so that a test written against it proves
behaviour the SQLite store must show too. Nothing survives the process. Every call is plain dict
work without an ``await`` inside, so it costs next to nothing on the engine's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.base import ClosingStore

__all__ = ["MemoryStore"]


class MemoryStore(ClosingStore):
    """Checkpoints, idempotency records and leases in dicts; a :class:`~poller.engine.state.Store`,
    a :class:`~poller.engine.leases.LeaseStore` and an
    :class:`~poller.stores.inspection.InspectableStore`."""

    __slots__ = ("_checkpoints", "_clock", "_closed", "_leases", "_succeeded")

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        """``clock`` returns epoch seconds; it decides whether an idempotency record expired."""
        self._clock = clock
        self._closed = False
        self._checkpoints: dict[tuple[str, str], Checkpoint] = {}
        # (mapping, partition) -> position -> expires_at (epoch seconds)
        self._succeeded: dict[tuple[str, str], dict[str, float]] = {}
        self._leases: dict[tuple[str, str], Lease] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(partitions={len(self._checkpoints)})"

    # --- checkpoints -----------------------------------------------------------------------------

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        """The stored checkpoint, or None when the partition was never checkpointed."""
        self._check_open()
        return self._checkpoints.get((mapping_id, partition))

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` unless the stored one is further or finished."""
        self._check_open()
        self._put_checkpoint(mapping_id, partition, checkpoint)

    def _put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        if checkpoint.ordinal < 0:
            raise ValueError(f"checkpoint ordinal must not be negative, got {checkpoint.ordinal}")
        key = (mapping_id, partition)
        current = self._checkpoints.get(key)
        if current is not None and not checkpoint.replaces(current):
            return
        self._checkpoints[key] = checkpoint

    # --- leases ----------------------------------------------------------------------------------

    async def list_leases(self, mapping_id: str) -> list[Lease]:
        """Every lease of the mapping."""
        self._check_open()
        return [lease for (m, _), lease in self._leases.items() if m == mapping_id]

    async def create_leases(
        self, mapping_id: str, partitions: Sequence[tuple[str, tuple[str, ...]]]
    ) -> None:
        """Create a free lease for each (partition, parents) that has none yet."""
        self._check_open()
        for partition, parents in partitions:
            self._leases.setdefault((mapping_id, partition), Lease(partition, None, 0, 0, parents))

    async def take_lease(self, mapping_id: str, seen: Lease, owner: str) -> Lease | None:
        """Become the owner if the lease is exactly as ``seen``."""
        self._check_open()
        key = (mapping_id, seen.partition)
        current = self._leases.get(key)
        if current is None or current.finished or _stamp(current) != _stamp(seen):
            return None
        taken = replace(current, owner=owner, counter=current.counter + 1, epoch=current.epoch + 1)
        self._leases[key] = taken
        return taken

    async def renew_lease(self, mapping_id: str, held: Lease) -> Lease | None:
        """Bump the counter if still held as ``held``."""
        self._check_open()
        key = (mapping_id, held.partition)
        current = self._leases.get(key)
        if current is None or (current.owner, current.epoch) != (held.owner, held.epoch):
            return None
        renewed = replace(current, counter=current.counter + 1)
        self._leases[key] = renewed
        return renewed

    async def release_lease(self, mapping_id: str, held: Lease) -> bool:
        """Give the lease up if still held as ``held``."""
        self._check_open()
        key = (mapping_id, held.partition)
        current = self._leases.get(key)
        if current is None or (current.owner, current.epoch) != (held.owner, held.epoch):
            return False
        self._leases[key] = replace(current, owner=None, epoch=current.epoch + 1)
        return True

    async def finish_lease(self, mapping_id: str, partition: str) -> None:
        """Mark the partition finished."""
        self._check_open()
        key = (mapping_id, partition)
        current = self._leases.get(key)
        if current is not None:
            self._leases[key] = replace(current, owner=None, finished=True)

    async def delete_leases(self, mapping_id: str, partitions: Sequence[str]) -> None:
        """Forget these leases."""
        self._check_open()
        for partition in partitions:
            self._leases.pop((mapping_id, partition), None)

    async def put_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """Store the checkpoint only while ``owner`` holds the lease at ``epoch``."""
        self._check_open()
        current = self._leases.get((mapping_id, partition))
        if current is None or (current.owner, current.epoch) != (owner, epoch):
            return False
        self._put_checkpoint(mapping_id, partition, checkpoint)
        return True

    async def rewrite_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """Replace the checkpoint whatever it holds, only while ``owner`` holds the lease at
        ``epoch`` (``poller replay``)."""
        self._check_open()
        if checkpoint.ordinal < 0:
            raise ValueError(f"checkpoint ordinal must not be negative, got {checkpoint.ordinal}")
        current = self._leases.get((mapping_id, partition))
        if current is None or (current.owner, current.epoch) != (owner, epoch):
            return False
        self._checkpoints[(mapping_id, partition)] = checkpoint
        return True

    # --- idempotency -----------------------------------------------------------------------------

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        """Record that these positions succeeded; a later expiry wins over an earlier one."""
        self._check_open()
        if not positions:
            return
        known = self._succeeded.setdefault((mapping_id, partition), {})
        for position in positions:
            previous = known.get(position)
            if previous is None or expires_at > previous:
                known[position] = expires_at

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        """Which of ``positions`` are recorded as succeeded and not yet expired."""
        self._check_open()
        known = self._succeeded.get((mapping_id, partition))
        if not known or not positions:
            return frozenset()
        now = self._clock()
        return frozenset(
            position
            for position in positions
            if (expires_at := known.get(position)) is not None and expires_at > now
        )

    async def forget_succeeded(self, mapping_id: str, partition: str) -> int:
        """Delete every idempotency record of the partition; how many there were."""
        self._check_open()
        return len(self._succeeded.pop((mapping_id, partition), {}))

    async def purge_expired(self, now: float) -> int:
        """Delete idempotency records whose expiry is at or before ``now``; return how many."""
        self._check_open()
        purged = 0
        for key in list(self._succeeded):
            known = self._succeeded[key]
            expired = [position for position, expires_at in known.items() if expires_at <= now]
            for position in expired:
                del known[position]
            purged += len(expired)
            if not known:
                del self._succeeded[key]
        return purged

    # --- inspection ------------------------------------------------------------------------------

    async def list_checkpoints(self, mapping_id: str) -> dict[str, Checkpoint]:
        """Every checkpoint of the mapping, by partition."""
        self._check_open()
        return {p: c for (m, p), c in self._checkpoints.items() if m == mapping_id}

    async def count_idempotency_records(self, mapping_id: str, now: float) -> dict[str, int]:
        """How many idempotency records of the mapping expire after ``now``, by partition."""
        self._check_open()
        counts = {
            p: sum(expires_at > now for expires_at in known.values())
            for (m, p), known in self._succeeded.items()
            if m == mapping_id
        }
        return {p: n for p, n in counts.items() if n}

    async def aclose(self) -> None:
        """Forget everything; later calls raise :class:`~poller.errors.StoreError`."""
        self._closed = True
        self._checkpoints.clear()
        self._succeeded.clear()
        self._leases.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store: used after close")


def _stamp(lease: Lease) -> tuple[str | None, int, int]:
    """What a compare-and-set compares: who holds it, its heartbeat, its hand."""
    return (lease.owner, lease.counter, lease.epoch)
