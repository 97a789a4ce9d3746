"""A resharding while three workers share a stream by leases: children wait for their parents
across workers.

The whole engine runs three times in one process (three stream runners, each with its own lease
coordinator, on one store), over in-memory partitions that a split and a merge close and replace,
as Kinesis does. The moto server cannot show this: after a split it keeps writing to the closed
parent and leaves the children empty (SERVERS.md), so records written after a reshard never reach
a child there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import anyio

from poller.engine.streams import StreamMappingRunner
from poller.engine.streams.leasing import LeaseCoordinator, LeaseSettings
from poller.records import Batch
from poller.stores.memory import MemoryStore
from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN, mapping, stream_runner

KEYS = [f"key-{n}" for n in range(6)]
RESOLVED = mapping(BatchSize=4, MaximumBatchingWindowInSeconds=0)


@dataclass
class Seen:
    """Every record handed over, in the order handlers saw them, with the worker that did."""

    log: list[tuple[str, str, str, str]] = field(default_factory=list)  # worker, shard, key, data
    #: The lease epoch each delivery happened under, per record.
    epochs: dict[str, list[int | None]] = field(default_factory=lambda: defaultdict(list))

    def handler(self, worker: str, leases: LeaseCoordinator):  # type: ignore[no-untyped-def]
        async def handle(batch: Batch) -> None:
            epoch = leases.epoch(batch.partition)
            for record in batch:
                data = record.data.decode()
                self.log.append((worker, batch.partition, record.key, data))
                self.epochs[data].append(epoch)
            await anyio.sleep(0.005)  # a batch takes a little while, so leases matter mid-batch

        return handle


def leased_runner(
    worker: str, partitions: dict[str, MemoryPartition], store: MemoryStore, seen: Seen
) -> StreamMappingRunner:
    """One worker's runner: its own lease coordinator, the shared store and stream."""
    source = MemorySource(arn=KINESIS_ARN)
    source.partitions = partitions  # every worker sees the same stream
    leases = LeaseCoordinator(store, RESOLVED.mapping_id, LeaseSettings(worker, duration=0.6))
    return stream_runner(
        RESOLVED,
        source,
        seen.handler(worker, leases),
        store=store,
        discovery_interval=0.05,
        leases=leases,
    )


def write(partition: MemoryPartition, label: str, per_key: int) -> list[tuple[str, str]]:
    written = []
    for _ in range(per_key):
        for key in KEYS:
            data = f"{label}-{key}-{len(partition.records)}"
            partition.put(data.encode(), key=key)
            written.append((key, data))
    return written


async def test_a_split_and_a_merge_under_three_workers_keep_parents_before_children() -> None:
    partitions = {f"p{n}": MemoryPartition(f"p{n}") for n in range(4)}
    written = [w for name, p in partitions.items() for w in write(p, name, 5)]
    store, seen = MemoryStore(), Seen()
    workers = [leased_runner(name, partitions, store, seen) for name in ("a", "b", "c")]

    def handled() -> set[str]:
        return {data for *_, data in seen.log}

    async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
        with anyio.fail_after(15):
            while not condition():
                await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        for runner in workers:
            group.start_soon(runner.run)
        await until(lambda: len(handled()) >= 30, "records of the first parents handled")
        # Split p0 into two children and merge p1 with p2, while the parents still have records to
        # hand over; then write more, to the parents' successors only.
        written += write(partitions["p0"], "p0", 5) + write(partitions["p1"], "p1", 5)
        for parent in ("p0", "p1", "p2"):
            partitions[parent].close()
        partitions["c1"] = MemoryPartition("c1", parents=("p0",))
        partitions["c2"] = MemoryPartition("c2", parents=("p0",))
        partitions["m"] = MemoryPartition("m", parents=("p1", "p2"))
        for child in ("c1", "c2", "m"):
            written += write(partitions[child], child, 5)
        written += write(partitions["p3"], "p3", 5)
        await until(lambda: handled() >= {data for _, data in written}, "every record handled")
        for runner in workers:
            runner.stop()

    # Every record handed over; twice only when its shard's lease moved (a steal toward the
    # even share) while its batch was in flight: the new owner re-reads from the checkpoint. A
    # lease's epoch grows with every move, so one epoch never sees a record twice.
    datas = [data for *_, data in seen.log]
    assert set(datas) == {data for _, data in written}
    for data, epochs in seen.epochs.items():
        assert len(set(epochs)) == len(epochs), f"{data} handed twice under one lease: {epochs}"
    # A child's first record comes after every record of each of its parents, whoever held them.
    position = {data: index for index, (*_, data) in enumerate(seen.log)}
    for child, parents in {"c1": ["p0"], "c2": ["p0"], "m": ["p1", "p2"]}.items():
        first = min(position[d] for d in datas if d.startswith(f"{child}-"))
        for parent in parents:
            last = max(position[d] for d in datas if d.startswith(f"{parent}-"))
            assert last < first, f"{child} began before its parent {parent} was finished"
    # Order per key within each shard, across owners: first deliveries follow the written order.
    by_key: dict[str, list[str]] = defaultdict(list)
    for _, shard, key, data in seen.log:
        if data not in by_key[f"{key}@{shard}"]:
            by_key[f"{key}@{shard}"].append(data)
    for lineage_key, datas_of_key in by_key.items():
        assert datas_of_key == [d for _, d in written if d in set(datas_of_key)], lineage_key
    # The shards were shared.
    assert len({worker for worker, *_ in seen.log}) > 1
    # Finished parents' leases are cleaned up once their children passed them.
    leases = {lease.partition for lease in await store.list_leases(RESOLVED.mapping_id)}
    assert not leases & {"p0", "p1", "p2"}, leases
