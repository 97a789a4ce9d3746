"""Replay's hold on leases (memory store, a hand-driven clock): refused while owned, ``--force``
waits for a release or an expiry judged by a counter that stopped moving, the leases replay took
are renewed while it waits, and its rewrite is fenced like a worker's."""

from __future__ import annotations

import anyio
import pytest

from poller.engine.protocols import PartitionInfo
from poller.engine.state import Checkpoint
from poller.recovery.replay_leases import LeasesHeld, ReplayLeases
from poller.stores.memory import MemoryStore

M = "mapping-1"
SHARDS = [PartitionInfo("s-0"), PartitionInfo("s-1")]


async def owned_by(store: MemoryStore, owner: str, partition: str) -> None:
    await store.create_leases(M, [(partition, ())])
    (lease,) = [x for x in await store.list_leases(M) if x.partition == partition]
    assert await store.take_lease(M, lease, owner) is not None


def hold(store: MemoryStore, said: list[str], clock: list[float]) -> ReplayLeases:
    return ReplayLeases(store, M, "replay-1", 4.0, said.append, clock=lambda: clock[0])


async def test_a_lease_with_an_owner_refuses_the_replay_naming_the_worker() -> None:
    store = MemoryStore()
    await owned_by(store, "host-a:12", "s-1")
    with pytest.raises(LeasesHeld, match=r"host-a:12: s-1.*--force"):
        await hold(store, [], [0.0]).refuse_if_held()


async def test_free_leases_are_taken_at_once_and_released_after() -> None:
    store = MemoryStore()
    replay = hold(store, [], [0.0])
    await replay.refuse_if_held()
    await replay.take(SHARDS, wait=0.0)
    assert {lease.owner for lease in await store.list_leases(M)} == {"replay-1"}
    held = replay.held["s-0"]
    assert await store.rewrite_checkpoint_fenced(
        M, "s-0", Checkpoint("3", 3), "replay-1", held.epoch
    )
    await replay.release()
    assert {lease.owner for lease in await store.list_leases(M)} == {None}
    # Released: the fence is gone, the rewrite is refused.
    assert not await store.rewrite_checkpoint_fenced(
        M, "s-0", Checkpoint("1", 1), "replay-1", held.epoch
    )


async def test_force_waits_for_an_unrenewed_lease_to_expire_and_renews_its_own() -> None:
    store = MemoryStore()
    await owned_by(store, "dead-worker", "s-1")
    clock = [0.0]
    said: list[str] = []
    replay = hold(store, said, clock)

    async def time_passes() -> None:
        # The dead worker never renews; replay's clock moves past the lease duration.
        while clock[0] < 10:
            await anyio.sleep(0.01)
            clock[0] += 0.5

    async with anyio.create_task_group() as group:
        group.start_soon(time_passes)
        with anyio.fail_after(10):
            await replay.take(SHARDS, wait=30.0)
    assert set(replay.held) == {"s-0", "s-1"}
    assert any("dead-worker: s-1" in line for line in said)
    # s-0 was taken first and renewed while replay waited for s-1.
    assert replay.held["s-0"].counter > 1


async def test_force_gives_up_after_its_wait_when_the_owner_keeps_renewing() -> None:
    store = MemoryStore()
    await owned_by(store, "live-worker", "s-1")
    clock = [0.0]
    replay = hold(store, [], clock)

    async def alive() -> None:
        while True:
            (lease,) = [x for x in await store.list_leases(M) if x.partition == "s-1"]
            await store.renew_lease(M, lease)
            clock[0] += 0.5
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(alive)
        with pytest.raises(LeasesHeld, match=r"after waiting 3 s \(live-worker: s-1\)"):
            await replay.take(SHARDS, wait=3.0)
        group.cancel_scope.cancel()
    await replay.release()
    assert {x.partition: x.owner for x in await store.list_leases(M)}["s-0"] is None
