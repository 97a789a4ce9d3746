"""The lease algorithm (KCL's) with several coordinators on one store and a clock the test moves.

Balance within one lease, takeover of expired leases judged on the taker's own clock, stealing a
bounded number at a time for a joining worker, release on stop, parents before children across
workers, and fencing of checkpoint writes by a worker that lost its lease.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from poller.engine.leases import LeaseLost
from poller.engine.protocols import PartitionInfo
from poller.engine.state import Checkpoint
from poller.engine.streams.leasing import FencedCheckpoints, LeaseCoordinator, LeaseSettings
from poller.stores.memory import MemoryStore

M = "m"
PARTITIONS = [PartitionInfo(f"shard-{n}") for n in range(8)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def coordinators(
    store: MemoryStore, clock: Clock, *names: str, **settings: int
) -> list[LeaseCoordinator]:
    return [
        LeaseCoordinator(store, M, LeaseSettings(name, duration=10.0, **settings), clock=clock)
        for name in names
    ]


async def passes(
    workers: list[LeaseCoordinator], clock: Clock, rounds: int, step: float = 5.0
) -> None:
    """Rounds of: every worker renews and takes, then the clock moves on; a last renewal lets
    each worker learn of leases stolen from it in the last round."""
    for _ in range(rounds):
        for worker in workers:
            await worker.renew()
            await worker.take()
        clock.now += step
    for worker in workers:
        await worker.renew()


def owners(workers: list[LeaseCoordinator]) -> Counter[str]:
    return Counter({w.settings.worker_id: len(w.held) for w in workers})


def assert_disjoint_and_complete(workers: list[LeaseCoordinator], partitions: int = 8) -> None:
    held = [p for w in workers for p in w.held]
    assert len(held) == len(set(held)) == partitions, owners(workers)


async def test_three_workers_split_eight_shards_within_one() -> None:
    store, clock = MemoryStore(), Clock()
    workers = coordinators(store, clock, "a", "b", "c")
    await workers[0].offer(PARTITIONS)
    await passes(workers, clock, rounds=6)
    assert_disjoint_and_complete(workers)
    counts = sorted(owners(workers).values())
    assert counts[-1] - counts[0] <= 1, counts


async def test_a_dead_workers_leases_are_taken_only_after_they_expire() -> None:
    store, clock = MemoryStore(), Clock()
    a, b, c = coordinators(store, clock, "a", "b", "c")
    await a.offer(PARTITIONS)
    await passes([a, b, c], clock, rounds=6)
    dead = set(a.held)
    assert dead
    # a stops renewing; b and c keep looking. Before the lease duration nothing moves...
    await passes([b, c], clock, rounds=1, step=4.0)
    assert not (dead & (set(b.held) | set(c.held)))
    # ...after it, a's leases are split between b and c.
    await passes([b, c], clock, rounds=4, step=4.0)
    assert dead <= set(b.held) | set(c.held)
    assert_disjoint_and_complete([b, c])
    await a.renew()
    assert not a.held, "a's renewals fail once its leases were taken"


async def test_a_joining_worker_steals_its_share_a_lease_at_a_time() -> None:
    store, clock = MemoryStore(), Clock()
    a, b = coordinators(store, clock, "a", "b")
    await a.offer(PARTITIONS)
    await passes([a, b], clock, rounds=4)
    assert owners([a, b]) == Counter({"a": 4, "b": 4})
    (d,) = coordinators(store, clock, "d")
    await d.take()
    assert len(d.held) == 1, "at most max_steal (1) leases move in one pass"
    await passes([a, b, d], clock, rounds=6)
    assert_disjoint_and_complete([a, b, d])
    assert sorted(owners([a, b, d]).values()) == [2, 3, 3]


async def test_released_leases_are_taken_at_once() -> None:
    store, clock = MemoryStore(), Clock()
    a, b = coordinators(store, clock, "a", "b")
    await a.offer(PARTITIONS)
    await passes([a, b], clock, rounds=4)
    await a.release_all()
    assert not a.held
    await b.take()  # same instant: no waiting for expiry
    assert len(b.held) == 8


async def test_a_child_is_taken_only_after_its_parent_finished() -> None:
    store, clock = MemoryStore(), Clock()
    a, b = coordinators(store, clock, "a", "b")
    family = [PartitionInfo("parent"), PartitionInfo("child", parents=("parent",))]
    await a.offer(family)
    await passes([a, b], clock, rounds=3)
    holders = [w for w in (a, b) if "parent" in w.held]
    assert len(holders) == 1 and not any("child" in w.held for w in (a, b))
    await holders[0].finished("parent")
    await passes([a, b], clock, rounds=2)
    assert any("child" in w.held for w in (a, b))
    # Once the child was taken, the finished parent's lease is deleted, though the stream still
    # lists the parent (Kinesis does for its retention period), and it is not made again.
    for _ in range(2):
        await a.offer(family)
        assert [x.partition for x in await store.list_leases(M)] == ["child"]


async def test_a_finished_lease_stays_until_its_children_were_taken() -> None:
    store, clock = MemoryStore(), Clock()
    (a,) = coordinators(store, clock, "a", max_leases=1)
    split = [
        PartitionInfo("parent"),
        PartitionInfo("left", parents=("parent",)),
        PartitionInfo("right", parents=("parent",)),
    ]
    await a.offer(split)
    await a.take()
    await a.finished("parent")
    await a.take()  # takes one child only (max_leases = 1)
    await a.offer(split)
    assert "parent" in {x.partition for x in await store.list_leases(M)}
    # Unlisted (past the stream's retention), a finished lease goes whatever its children did.
    await a.offer(split[1:])
    assert "parent" not in {x.partition for x in await store.list_leases(M)}


async def test_a_worker_that_lost_its_lease_cannot_move_the_checkpoint() -> None:
    store, clock = MemoryStore(), Clock()
    a, b = coordinators(store, clock, "a", "b", max_leases=1)
    await a.offer([PartitionInfo("shard-0")])
    await a.take()
    assert a.owns("shard-0")
    fenced = FencedCheckpoints(store, store, a)
    await fenced.put_checkpoint(M, "shard-0", Checkpoint("3", 3))
    # a is paused past its lease; b takes it over.
    clock.now += 1
    await b.take()
    clock.now += 11
    await b.take()
    assert b.owns("shard-0")
    with pytest.raises(LeaseLost):  # a wakes up and writes: refused, its partition stops
        await fenced.put_checkpoint(M, "shard-0", Checkpoint("9", 9))
    assert await store.get_checkpoint(M, "shard-0") == Checkpoint("3", 3)
    assert not a.owns("shard-0"), "the refused write told a it lost the lease"


async def test_an_unreachable_store_does_not_end_the_coordinator() -> None:
    class Flaky(MemoryStore):
        failing = True

        async def list_leases(self, mapping_id: str) -> list[Any]:
            if Flaky.failing:
                raise OSError("connection refused")
            return await super().list_leases(mapping_id)

    store = Flaky()
    (worker,) = coordinators(store, Clock(), "a")
    await store.create_leases(M, [("shard-0", ())])
    with anyio.move_on_after(0.2):
        await worker.run()  # keeps going through the failures
    assert not worker.held
    Flaky.failing = False
    await worker.take()
    assert worker.held.keys() == {"shard-0"}


async def test_a_held_lease_is_renewed_three_times_per_duration_not_more() -> None:
    """Renewals keep their own fixed-rate schedule: looking for leases (every half duration) adds
    none. Each renewal is a store write, which is what the DynamoDB store is billed for."""

    class Counting(MemoryStore):
        renewals = 0

        async def renew_lease(self, mapping_id: str, held: Any) -> Any:
            self.renewals += 1
            return await super().renew_lease(mapping_id, held)

    store = Counting()
    worker = LeaseCoordinator(store, M, LeaseSettings("a", duration=0.3))
    await worker.offer([PartitionInfo("shard-0")])
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await anyio.sleep(1.5)  # five durations: at most 15 renewals (+1 at the start)
        group.cancel_scope.cancel()
    assert worker.owns("shard-0")
    assert 5 <= store.renewals <= 16, store.renewals


async def test_a_worker_restarted_under_its_id_takes_back_the_leases_it_left() -> None:
    """After kill -9, a worker started again with the same worker_id finds leases the table says
    are its own; it holds none of them, so it takes them back at once (a new epoch fences any
    write of the old process) instead of leaving them to nobody."""
    store, clock = MemoryStore(), Clock()
    (before,) = coordinators(store, clock, "a")
    await before.offer(PARTITIONS[:2])
    await before.take()
    assert len(before.held) == 2
    (after,) = coordinators(store, clock, "a")  # the same id, nothing held
    await after.offer(PARTITIONS[:2])
    await after.take()
    assert sorted(after.held) == ["shard-0", "shard-1"]
    assert all(lease.epoch == 2 for lease in after.held.values())
