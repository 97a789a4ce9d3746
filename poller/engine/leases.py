"""The engine's seam toward leases: which worker owns which partition of a stream mapping.

The algorithm is the Kinesis Client Library's, not a new one. A lease per partition holds its
owner, a ``counter`` the owner bumps to say it is alive, and an ``epoch`` that changes only when the
lease changes hands. Nobody compares clocks between hosts: a worker judges a lease expired when its
counter has not moved for the lease duration *on its own clock*. Every change is a compare-and-set
on what the caller last saw, so two workers can never both win a lease, and a checkpoint write is
conditional on the writer still holding the lease at the epoch it took it (fencing): a worker
whose lease was taken cannot move a checkpoint it no longer owns.

Stores implement :class:`LeaseStore` (memory, SQLite; DynamoDB with many hosts).
:mod:`poller.engine.streams.leasing` runs the algorithm on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from poller.engine.state import Checkpoint

__all__ = ["Lease", "LeaseLost", "LeaseStore"]


class LeaseLost(Exception):
    """A checkpoint write was refused because the lease moved to another worker: the partition
    stops at once (the batch that was being settled is read again by the new owner)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """One partition's lease, as last read from the store."""

    partition: str
    #: The worker holding it; None when free (never taken, or released).
    owner: str | None
    #: Bumped by every renewal and take: the heartbeat that others watch.
    counter: int
    #: Bumped whenever the lease changes hands: the fencing token of checkpoint writes.
    epoch: int
    #: The partitions this one continues (a split has one parent, a merge two).
    parents: tuple[str, ...] = ()
    #: The partition was read to its end and checkpointed as finished: nobody needs to own it.
    finished: bool = False


@runtime_checkable
class LeaseStore(Protocol):
    """Leases per (mapping, partition), changed only by compare-and-set."""

    async def list_leases(self, mapping_id: str) -> list[Lease]:
        """Every lease of the mapping."""
        ...

    async def create_leases(
        self, mapping_id: str, partitions: Sequence[tuple[str, tuple[str, ...]]]
    ) -> None:
        """Create a free lease for each (partition, parents) that has none yet."""
        ...

    async def take_lease(self, mapping_id: str, seen: Lease, owner: str) -> Lease | None:
        """Become the owner if the lease is still exactly as ``seen``; the new lease, else None."""
        ...

    async def renew_lease(self, mapping_id: str, held: Lease) -> Lease | None:
        """Bump the counter if ``held.owner`` still holds it at ``held.epoch``; else None."""
        ...

    async def release_lease(self, mapping_id: str, held: Lease) -> bool:
        """Give the lease up (owner None, a new epoch) if still held as ``held``."""
        ...

    async def finish_lease(self, mapping_id: str, partition: str) -> None:
        """Mark the partition finished: its lease is no longer taken by anyone."""
        ...

    async def delete_leases(self, mapping_id: str, partitions: Sequence[str]) -> None:
        """Forget these leases (finished partitions whose children have passed them)."""
        ...

    async def put_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """Store the checkpoint (as ``put_checkpoint`` does) only if ``owner`` still holds the
        lease at ``epoch``, in one atomic step; False (nothing written) when it does not."""
        ...
