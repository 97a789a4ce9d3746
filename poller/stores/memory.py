"""A state store that lives in process memory, for tests, benchmarks and throwaway runs.

It follows exactly the rules of the durable stores (checkpoints only move forward, a finished
partition stays finished, idempotency records expire) so that a test written against it proves
behaviour the SQLite store must show too. Nothing survives the process. Every call is plain dict
work without an ``await`` inside, so it costs next to nothing on the engine's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.base import ClosingStore

__all__ = ["MemoryStore"]


class MemoryStore(ClosingStore):
    """Checkpoints and idempotency records in dicts; a :class:`~poller.engine.state.Store`."""

    __slots__ = ("_checkpoints", "_clock", "_closed", "_succeeded")

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        """``clock`` returns epoch seconds; it decides whether an idempotency record expired."""
        self._clock = clock
        self._closed = False
        self._checkpoints: dict[tuple[str, str], Checkpoint] = {}
        # (mapping, partition) -> position -> expires_at (epoch seconds)
        self._succeeded: dict[tuple[str, str], dict[str, float]] = {}

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
        if checkpoint.ordinal < 0:
            raise ValueError(f"checkpoint ordinal must not be negative, got {checkpoint.ordinal}")
        key = (mapping_id, partition)
        current = self._checkpoints.get(key)
        if current is not None and (
            current.finished
            or checkpoint.ordinal < current.ordinal
            or (checkpoint.ordinal == current.ordinal and not checkpoint.finished)
        ):
            return
        self._checkpoints[key] = checkpoint

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

    async def aclose(self) -> None:
        """Forget everything; later calls raise :class:`~poller.errors.StoreError`."""
        self._closed = True
        self._checkpoints.clear()
        self._succeeded.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store: used after close")
