"""Checkpoints that live in a Kafka consumer group: committed offsets instead of store rows.

A Kafka mapping's progress belongs to its consumer group, where other members (another poller
process, or any Kafka tool) can see it and take over from it. :class:`CommittedOffsetStore` gives
the engine the usual :class:`~poller.engine.state.Store` while checkpoints go to the group:

* a checkpoint at offset N commits N + 1 (Kafka commits the *next* offset to read);
* the committed offset N reads back as a checkpoint at N - 1;
* the LATEST start marker commits the reader's first offset, so a restart resumes there and does
  not skip records written while no worker ran;
* idempotency records and their purge stay in the wrapped store (SQLite or memory), keyed by
  ``topic-N`` and offset.

Partitions of a topic never finish, so ``finished`` checkpoints are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from poller.engine.state import Checkpoint, Store

__all__ = ["CommittedOffsetStore", "OffsetCommitter"]


class OffsetCommitter(Protocol):
    """The consumer-group side a :class:`CommittedOffsetStore` needs (the Kafka source)."""

    async def committed_offset(self, partition: str) -> int | None:
        """The group's committed offset (next offset to read), or None if never committed."""
        ...

    async def current_offset(self, partition: str) -> int:
        """The next offset the partition's reader reads."""
        ...

    async def commit_offset(self, partition: str, next_offset: int) -> bool:
        """Commit; False when the partition is no longer this consumer's."""
        ...


class CommittedOffsetStore:
    """Checkpoints in the consumer group, everything else in ``inner``."""

    def __init__(self, inner: Store, committer: OffsetCommitter) -> None:
        self._inner = inner
        self._committer = committer

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        offset = await self._committer.committed_offset(partition)
        if offset is None:
            return None
        return Checkpoint(position=str(offset - 1), ordinal=offset - 1)

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        if checkpoint.finished:
            return
        if checkpoint.position:
            next_offset = int(checkpoint.position) + 1
        else:  # the LATEST start marker: pin where this partition's reading began
            next_offset = await self._committer.current_offset(partition)
        await self._committer.commit_offset(partition, next_offset)

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        await self._inner.remember_succeeded(mapping_id, partition, positions, expires_at)

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        return await self._inner.succeeded_among(mapping_id, partition, positions)

    async def purge_expired(self, now: float) -> int:
        return await self._inner.purge_expired(now)

    async def aclose(self) -> None:
        """Nothing of its own to close: the wrapped store belongs to the worker."""
