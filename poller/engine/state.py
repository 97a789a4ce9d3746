"""The engine's seam toward state stores: checkpoints that only move forward, idempotency records.

Implementations live in :mod:`poller.stores` (memory, SQLite); a source that keeps progress itself
wraps the store (Kafka: checkpoints as the consumer group's committed offsets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Checkpoint", "CheckpointRewrites", "CheckpointStore", "IdempotencyStore", "Store"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last position of a partition whose records are all done."""

    position: str
    ordinal: int
    #: The partition is closed and fully processed: its children may start.
    finished: bool = False
    #: Set on the marker written when a partition first opened at LATEST, before any record
    #: settled (position ""): a restart resumes from this moment instead of a new LATEST, so
    #: records written while the worker was down are not skipped.
    opened_at: float | None = None
    #: TumblingWindowInSeconds: the start (epoch seconds) of the window open at this position,
    #: None when none is. A checkpoint at the same position replaces the stored one when either
    #: carries a window (the window closed, or its state was reset after ending early).
    window_start: int | None = None
    #: The open window's state as the last successful invocation returned it (JSON text).
    window_state: str | None = None

    def replaces(self, current: Checkpoint) -> bool:
        """Whether a store holding ``current`` takes this checkpoint (never backwards)."""
        if current.finished or self.ordinal < current.ordinal:
            return False
        if self.ordinal > current.ordinal or self.finished:
            return True
        return self.window_start is not None or current.window_start is not None


class CheckpointStore(Protocol):
    """Durable checkpoints per (mapping, partition) that only move forward."""

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        """The stored checkpoint, or None when the partition was never checkpointed."""
        ...

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` unless the stored one is further (or finished): never backwards."""
        ...


class IdempotencyStore(Protocol):
    """Positions known to have succeeded, so retries and re-reads skip them."""

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        """Record that these positions succeeded; forget them after ``expires_at`` (epoch s)."""
        ...

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        """Which of ``positions`` are recorded as succeeded and not yet expired."""
        ...


class Store(CheckpointStore, IdempotencyStore, Protocol):
    """A whole state store (memory, SQLite; DynamoDB later)."""

    async def purge_expired(self, now: float) -> int:
        """Delete idempotency records that expired before ``now``; return how many."""
        ...

    async def aclose(self) -> None:
        """Flush and close."""
        ...


class CheckpointRewrites(Protocol):
    """What ``poller replay`` alone does to a store: move a checkpoint anywhere, backwards too, and
    forget a partition's idempotency records (a replayed record must reach the function again).

    Kept apart from :class:`CheckpointStore` so that no worker can call it: the worker's path only
    ever moves checkpoints forward. The write is fenced like a worker's: replay takes the lease
    under an owner id of its own first, so a worker that took the partition meanwhile wins.
    """

    async def rewrite_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """Replace the stored checkpoint whatever it holds (finished too) if ``owner`` holds the
        lease at ``epoch``, in one atomic step; False (nothing written) when it does not."""
        ...

    async def forget_succeeded(self, mapping_id: str, partition: str) -> int:
        """Delete every idempotency record of the partition; how many there were."""
        ...
