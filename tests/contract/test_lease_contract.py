"""The lease contract, run against every store that implements it (memory, SQLite).

Compare-and-set on what the caller saw, never on clocks: two workers cannot both win a lease, a
renewal or release by a worker that lost it fails, and a checkpoint write fenced by an old epoch
writes nothing. A property test drives random interleavings of several workers and checks that a
lease never has two holders and only the holder's fenced writes land. DynamoDB runs on the moto
server, as against AWS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.stores.dynamodb import DynamoDBStore
from poller.stores.memory import MemoryStore
from poller.stores.sqlite import SqliteStore
from tests.kit.aws import poller_client

M = "mapping-1"


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    if request.param == "dynamodb":  # a table of its own on the moto server
        endpoint = request.getfixturevalue("moto_endpoint")
        async with poller_client(endpoint, "dynamodb") as client:

            async def shared() -> Any:
                return client

            table = DynamoDBStore(f"leases-{uuid.uuid4().hex[:12]}", shared)
            await table.open()
            yield table  # type: ignore[misc]
        return
    made = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "state.db")
    yield made  # type: ignore[misc]
    await made.aclose()


async def lease(store: MemoryStore, partition: str) -> Lease:
    (found,) = [x for x in await store.list_leases(M) if x.partition == partition]
    return found


async def test_leases_are_created_once_free_and_with_their_parents(store: MemoryStore) -> None:
    await store.create_leases(M, [("s-0", ()), ("s-1", ("s-0",))])
    await store.create_leases(M, [("s-0", ())])
    leases = {x.partition: x for x in await store.list_leases(M)}
    assert set(leases) == {"s-0", "s-1"}
    assert leases["s-1"].parents == ("s-0",) and leases["s-0"].owner is None
    assert await store.list_leases("other-mapping") == []


async def test_only_one_of_two_takers_of_the_same_view_wins(store: MemoryStore) -> None:
    await store.create_leases(M, [("s-0", ())])
    seen = await lease(store, "s-0")
    first = await store.take_lease(M, seen, "worker-a")
    second = await store.take_lease(M, seen, "worker-b")
    assert first is not None and second is None
    assert (await lease(store, "s-0")).owner == "worker-a"
    assert first.epoch == seen.epoch + 1 and first.counter == seen.counter + 1


async def test_renewal_bumps_the_counter_and_fails_once_the_lease_moved(store: MemoryStore) -> None:
    await store.create_leases(M, [("s-0", ())])
    held = await store.take_lease(M, await lease(store, "s-0"), "worker-a")
    assert held is not None
    renewed = await store.renew_lease(M, held)
    assert renewed is not None and renewed.counter == held.counter + 1
    assert renewed.epoch == held.epoch  # a renewal does not change hands
    stolen = await store.take_lease(M, await lease(store, "s-0"), "worker-b")
    assert stolen is not None
    assert await store.renew_lease(M, renewed) is None
    assert not await store.release_lease(M, renewed)
    assert (await lease(store, "s-0")).owner == "worker-b"


async def test_release_frees_the_lease_under_a_new_epoch(store: MemoryStore) -> None:
    await store.create_leases(M, [("s-0", ())])
    held = await store.take_lease(M, await lease(store, "s-0"), "worker-a")
    assert held is not None and await store.release_lease(M, held)
    freed = await lease(store, "s-0")
    assert freed.owner is None and freed.epoch == held.epoch + 1
    assert await store.take_lease(M, freed, "worker-b") is not None


async def test_fenced_checkpoints_land_only_for_the_holder_at_its_epoch(store: MemoryStore) -> None:
    await store.create_leases(M, [("s-0", ())])
    held = await store.take_lease(M, await lease(store, "s-0"), "worker-a")
    assert held is not None
    assert await store.put_checkpoint_fenced(M, "s-0", Checkpoint("5", 5), "worker-a", held.epoch)
    taken = await store.take_lease(M, await lease(store, "s-0"), "worker-b")
    assert taken is not None
    stale = Checkpoint("9", 9)
    assert not await store.put_checkpoint_fenced(M, "s-0", stale, "worker-a", held.epoch)
    assert (await store.get_checkpoint(M, "s-0")) == Checkpoint("5", 5)
    assert await store.put_checkpoint_fenced(M, "s-0", Checkpoint("7", 7), "worker-b", taken.epoch)
    assert (await store.get_checkpoint(M, "s-0")) == Checkpoint("7", 7)


async def test_a_finished_lease_cannot_be_taken_and_can_be_deleted(store: MemoryStore) -> None:
    await store.create_leases(M, [("s-0", ()), ("s-1", ())])
    await store.finish_lease(M, "s-0")
    done = await lease(store, "s-0")
    assert done.finished and done.owner is None
    assert await store.take_lease(M, done, "worker-a") is None
    await store.delete_leases(M, ["s-0"])
    assert [x.partition for x in await store.list_leases(M)] == ["s-1"]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["take", "renew", "release", "write"]),
        st.integers(0, 2),  # worker
        st.integers(0, 1),  # partition
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
async def test_a_lease_never_has_two_holders_and_only_the_holder_writes(
    tmp_path: Path, ops: list[tuple[str, int, int]]
) -> None:
    for store in (MemoryStore(), SqliteStore(tmp_path / f"p-{len(ops)}-{id(ops)}.db")):
        await store.create_leases(M, [("s-0", ()), ("s-1", ())])
        # What each worker believes it holds: partition -> the lease it took or renewed.
        beliefs: list[dict[str, Lease]] = [{}, {}, {}]
        ordinal = 0
        for op, worker, index in ops:
            name, partition = f"w{worker}", f"s-{index}"
            believed = beliefs[worker].get(partition)
            if op == "take":
                taken = await store.take_lease(M, await lease(store, partition), name)
                if taken is not None:
                    beliefs[worker][partition] = taken
            elif op == "renew" and believed is not None:
                renewed = await store.renew_lease(M, believed)
                if renewed is None:
                    del beliefs[worker][partition]
                else:
                    beliefs[worker][partition] = renewed
            elif op == "release" and believed is not None:
                await store.release_lease(M, believed)
                del beliefs[worker][partition]
            elif op == "write" and believed is not None:
                ordinal += 1
                wrote = await store.put_checkpoint_fenced(
                    M, partition, Checkpoint(str(ordinal), ordinal), name, believed.epoch
                )
                actual = await lease(store, partition)
                assert wrote == (actual.owner == name and actual.epoch == believed.epoch)
            for p in ("s-0", "s-1"):
                actual = await lease(store, p)
                current = [
                    w for w in range(3) if p in beliefs[w] and beliefs[w][p].epoch == actual.epoch
                ]
                assert len(current) <= 1, f"{p} held by workers {current}"
                if current:
                    assert actual.owner == f"w{current[0]}"
        await store.aclose()


async def test_replay_rewrites_a_checkpoint_backwards_only_under_its_own_lease(
    store: MemoryStore,
) -> None:
    await store.create_leases(M, [("s-0", ())])
    held = await store.take_lease(M, await lease(store, "s-0"), "worker-a")
    assert held is not None
    windowed = Checkpoint("90", 90, window_start=60, window_state='{"n": 1}')
    assert await store.put_checkpoint_fenced(M, "s-0", windowed, "worker-a", held.epoch)
    assert await store.release_lease(M, held)
    replay = await store.take_lease(M, await lease(store, "s-0"), "replay-1")
    assert replay is not None
    back = Checkpoint("4", 4)
    # The worker's own write would refuse to go back; the rewrite replaces it, window and all.
    await store.put_checkpoint(M, "s-0", back)
    assert await store.get_checkpoint(M, "s-0") == windowed
    assert await store.rewrite_checkpoint_fenced(M, "s-0", back, "replay-1", replay.epoch)
    assert await store.get_checkpoint(M, "s-0") == back
    # An old epoch, or an owner who does not hold it, writes nothing.
    assert not await store.rewrite_checkpoint_fenced(M, "s-0", Checkpoint("1", 1), "worker-a", 1)
    assert not await store.rewrite_checkpoint_fenced(
        M, "s-0", Checkpoint("1", 1), "replay-1", replay.epoch - 1
    )
    assert await store.get_checkpoint(M, "s-0") == back


async def test_replay_rewrites_a_finished_checkpoint_and_a_moment_marker(
    store: MemoryStore,
) -> None:
    await store.create_leases(M, [("s-0", ())])
    replay = await store.take_lease(M, await lease(store, "s-0"), "replay-1")
    assert replay is not None
    await store.put_checkpoint(M, "s-0", Checkpoint("50", 50, finished=True))
    marker = Checkpoint("", 0, opened_at=1_700_000_000.5)
    assert await store.rewrite_checkpoint_fenced(M, "s-0", marker, "replay-1", replay.epoch)
    assert await store.get_checkpoint(M, "s-0") == marker
    # The rewritten checkpoint is an ordinary one again: the worker moves it forward as usual.
    await store.put_checkpoint(M, "s-0", Checkpoint("7", 7))
    assert await store.get_checkpoint(M, "s-0") == Checkpoint("7", 7)


async def test_replay_forgets_one_partitions_idempotency_records_only(store: MemoryStore) -> None:
    far = 4_000_000_000.0
    positions = [f"{n:05d}" for n in range(30)]  # more than one DynamoDB batch
    await store.remember_succeeded(M, "s-0", positions, far)
    await store.remember_succeeded(M, "s-1", ["00001"], far)
    await store.remember_succeeded("other-mapping", "s-0", ["00001"], far)
    assert await store.forget_succeeded(M, "s-0") == 30
    assert await store.succeeded_among(M, "s-0", positions) == frozenset()
    assert await store.succeeded_among(M, "s-1", ["00001"]) == {"00001"}
    assert await store.succeeded_among("other-mapping", "s-0", ["00001"]) == {"00001"}
    assert await store.forget_succeeded(M, "s-0") == 0
