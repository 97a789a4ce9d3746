"""Replay's hold on a stream mapping's leases: refused while workers hold them, or (``--force``)
waited for, then taken under an owner id of replay's own so each checkpoint rewrite is fenced
exactly like a worker's write (a worker that took the partition meanwhile makes it fail).

A lease with an owner may belong to a live worker or to one that died and whose lease has not
expired yet; replay cannot tell them apart without watching, so without ``--force`` any owned
lease refuses the replay. ``--force`` watches: a lease is free once released, or once its
counter has not moved for the lease duration (the worker is gone; KCL's rule, on this clock).
While it waits, replay renews the leases it already took, so no worker takes them for expired.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from poller.engine.leases import Lease, LeaseStore
from poller.engine.protocols import PartitionInfo
from poller.engine.state import CheckpointRewrites, CheckpointStore
from poller.errors import PollerError

__all__ = ["LeasesHeld", "ReplayLeases", "ReplayStore", "holders", "replay_owner"]


class LeasesHeld(PollerError):
    """Workers hold leases of the mapping (replay refused, or ``--force`` waited in vain)."""


class ReplayStore(LeaseStore, CheckpointStore, CheckpointRewrites, Protocol):
    """What replay needs of a store: leases, checkpoints, and the rewrite operations."""


def replay_owner() -> str:
    """The lease owner id replay writes under (host and process, like a worker's)."""
    return f"replay@{socket.gethostname()}:{os.getpid()}"


def holders(leases: Sequence[Lease]) -> str:
    """``worker: partition, partition; worker: ...`` for the owned leases."""
    by_owner: dict[str, list[str]] = {}
    for lease in leases:
        if lease.owner is not None:
            by_owner.setdefault(lease.owner, []).append(lease.partition)
    return "; ".join(f"{owner}: {', '.join(sorted(parts))}" for owner, parts in by_owner.items())


@dataclass(slots=True)
class _Watch:
    """When this lease's counter was last seen moving (monotonic seconds)."""

    counter: int
    since: float


@dataclass(slots=True)
class ReplayLeases:
    """Takes the chosen partitions' leases for a replay, and gives them back."""

    store: ReplayStore
    mapping_id: str
    owner: str
    lease_duration: float
    progress: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    held: dict[str, Lease] = field(default_factory=dict)

    async def refuse_if_held(self) -> None:
        """LeasesHeld naming the owners when any lease of the mapping has an owner."""
        owned = [lease for lease in await self.store.list_leases(self.mapping_id) if lease.owner]
        if owned:
            raise LeasesHeld(
                f"mapping {self.mapping_id!r}: workers hold its leases ({holders(owned)}); stop "
                "them first, or give --force to wait until the leases are released or expire"
            )

    async def take(self, partitions: Sequence[PartitionInfo], *, wait: float) -> None:
        """Hold every chosen partition's lease, waiting up to ``wait`` seconds for the owners of
        any lease of the mapping to release it or stop renewing it; LeasesHeld when they do not."""
        await self.store.create_leases(self.mapping_id, [(p.id, p.parents) for p in partitions])
        wanted = {p.id for p in partitions}
        watches: dict[str, _Watch] = {}
        deadline = self.clock() + wait
        reported = ""
        while True:
            busy: list[Lease] = []
            for lease in await self.store.list_leases(self.mapping_id):
                if lease.owner == self.owner or lease.finished:
                    continue
                if lease.owner is not None and not self._expired(lease, watches):
                    busy.append(lease)
                elif lease.partition in wanted:
                    taken = await self.store.take_lease(self.mapping_id, lease, self.owner)
                    if taken is not None:
                        self.held[lease.partition] = taken
            await self._renew()
            if not busy and wanted <= set(self.held):
                return
            now = self.clock()
            if now >= deadline:
                raise LeasesHeld(
                    f"mapping {self.mapping_id!r}: leases still held after waiting {wait:g} s "
                    f"({holders(busy) or 'taken back by a worker'}); nothing was replayed"
                )
            waiting = holders(busy)
            if waiting and waiting != reported:
                self.progress(
                    f"waiting up to {deadline - now:.0f} s for leases to be released or to "
                    f"expire: {waiting}"
                )
                reported = waiting
            await anyio.sleep(min(1.0, self.lease_duration / 4))

    def _expired(self, lease: Lease, watches: dict[str, _Watch]) -> bool:
        """Whether the owner stopped renewing ``lease`` for the lease duration (seen here)."""
        now = self.clock()
        watch = watches.get(lease.partition)
        if watch is None or watch.counter != lease.counter:
            watches[lease.partition] = _Watch(lease.counter, now)
            return False
        return now - watch.since >= self.lease_duration

    async def _renew(self) -> None:
        for partition, lease in list(self.held.items()):
            renewed = await self.store.renew_lease(self.mapping_id, lease)
            if renewed is None:  # a worker took it: take it again when it is free
                del self.held[partition]
            else:
                self.held[partition] = renewed

    async def release(self) -> None:
        """Give back every lease taken (the next worker takes them as free)."""
        for lease in self.held.values():
            await self.store.release_lease(self.mapping_id, lease)
        self.held.clear()
