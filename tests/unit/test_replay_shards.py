"""``replay_shards`` on a memory store and a stand-in shard listing (``--at-sequence`` and
``--latest`` read no records): which partitions move, which are left alone, what is refused, and
a lease a worker takes back between replay's take and its write."""

from __future__ import annotations

from typing import Any

import pytest

from poller.engine.protocols import PartitionInfo
from poller.engine.state import Checkpoint
from poller.recovery.replay import ReplayRefused, replay_shards
from poller.recovery.replay_positions import ReplayTarget
from poller.stores.memory import MemoryStore

M = "orders"


class Listing:
    """What replay asks of a shard stream source when it reads no records: its shards."""

    kind = "kinesis"
    stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"

    def __init__(self, *shards: PartitionInfo) -> None:
        self.shards = list(shards)

    async def list_partitions(self) -> list[PartitionInfo]:
        return list(self.shards)


async def replay(store: MemoryStore, source: Listing, target: ReplayTarget, **given: Any) -> Any:
    arguments: dict[str, Any] = {
        "partition": None,
        "force": False,
        "wait": 1.0,
        "dry_run": False,
        "lease_duration": 4.0,
        "progress": lambda _line: None,
        "clock": lambda: 1_700_000_000.0,
        **given,
    }
    return await replay_shards(store, source, M, target, **arguments)  # type: ignore[arg-type]


async def test_open_shards_move_and_finished_ones_are_left_alone() -> None:
    store = MemoryStore()
    await store.put_checkpoint(M, "s-0", Checkpoint("90", 90, finished=True))
    await store.put_checkpoint(M, "s-1", Checkpoint("50", 50))
    await store.remember_succeeded(M, "s-1", ["41", "42"], 4e9)
    source = Listing(PartitionInfo("s-0", closed=True), PartitionInfo("s-1", ("s-0",)))
    report = await replay(store, source, ReplayTarget("latest"))
    finished, moved = report.moves
    assert (finished.partition, finished.after, finished.note) == (
        "s-0",
        None,
        "finished: left alone",
    )
    assert moved.before == {"position": "50", "finished": False, "opened_at": None}
    assert moved.after == {"position": "", "finished": False, "opened_at": 1_700_000_000.0}
    assert moved.forgotten == 2
    assert await store.get_checkpoint(M, "s-0") == Checkpoint("90", 90, finished=True)
    assert await store.get_checkpoint(M, "s-1") == Checkpoint("", 0, opened_at=1_700_000_000.0)
    # The leases replay took are free again for the next worker.
    assert {lease.owner for lease in await store.list_leases(M)} == {None}


async def test_a_finished_or_unknown_partition_named_is_refused() -> None:
    store = MemoryStore()
    await store.put_checkpoint(M, "s-0", Checkpoint("90", 90, finished=True))
    source = Listing(PartitionInfo("s-0", closed=True), PartitionInfo("s-1"))
    with pytest.raises(ReplayRefused, match="'s-0' is finished"):
        await replay(store, source, ReplayTarget("latest"), partition="s-0")
    with pytest.raises(ReplayRefused, match=r"no such shard \(its shards: s-0, s-1\)"):
        await replay(store, source, ReplayTarget("latest"), partition="s-9")


async def test_a_dry_run_takes_no_lease_and_writes_nothing() -> None:
    store = MemoryStore()
    await store.put_checkpoint(M, "s-0", Checkpoint("50", 50))
    target = ReplayTarget("at-sequence", position="7")
    report = await replay(store, Listing(PartitionInfo("s-0")), target, dry_run=True)
    assert report.dry_run and report.moves[0].after == {
        "position": "6",
        "finished": False,
        "opened_at": None,
    }
    assert await store.get_checkpoint(M, "s-0") == Checkpoint("50", 50)
    assert await store.list_leases(M) == []


class TakenBack(MemoryStore):
    """A worker takes the lease back just before replay writes (its fenced write must fail)."""

    async def rewrite_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        (lease,) = [x for x in await self.list_leases(mapping_id) if x.partition == partition]
        assert await self.take_lease(mapping_id, lease, "worker-b") is not None
        return await super().rewrite_checkpoint_fenced(
            mapping_id, partition, checkpoint, owner, epoch
        )


async def test_a_lease_taken_back_before_the_write_fails_that_partition() -> None:
    store = TakenBack()
    await store.put_checkpoint(M, "s-0", Checkpoint("50", 50))
    target = ReplayTarget("at-sequence", position="7")
    report = await replay(store, Listing(PartitionInfo("s-0")), target, partition="s-0")
    (move,) = report.moves
    assert report.failed and move.failed and move.after is None
    assert "a worker took the lease" in move.note
    assert await store.get_checkpoint(M, "s-0") == Checkpoint("50", 50)
    assert {lease.owner for lease in await store.list_leases(M)} == {"worker-b"}
