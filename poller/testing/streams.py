"""An in-memory log source: partitions are lists you append to. For tests and benchmarks.

It implements the same :class:`~poller.engine.protocols.PartitionSource` seam as Kinesis, so the
whole engine (batching, retries, lineage, checkpoints) runs against it without a server. Records are
:class:`~poller.sources.kinesis.records.KinesisRecord`, and events are rendered by the Kinesis codec,
exactly as a Kinesis mapping renders them. It can also revoke and give back partitions, as a Kafka
consumer group does in a rebalance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from poller.config.fields import StartingPosition
from poller.engine.protocols import PartitionInfo, ReadResult, StartAt
from poller.records import Record
from poller.sources.kinesis.codec import KinesisCodec
from poller.sources.kinesis.records import KinesisRecord
from poller.testing.rendering import RendersWithCodec

__all__ = ["MemoryPartition", "MemorySource"]

_ENVELOPE_BYTES = 300


class MemoryPartition:
    """One partition's records, in order. Append with :meth:`put`; :meth:`close` ends it."""

    def __init__(self, partition_id: str, parents: tuple[str, ...] = ()) -> None:
        self.id = partition_id
        self.parents = parents
        self.records: list[Record] = []
        self.closed = False
        self._next = 1

    def put(self, data: bytes, key: str = "k", *, arrival: float | None = None) -> Record:
        """Append a record; positions are increasing integers per partition."""
        if self.closed:
            raise ValueError(f"partition {self.id} is closed")
        position = self._next
        self._next += 1
        record = KinesisRecord(
            partition=self.id,
            position=str(position),
            ordinal=position,
            key=key,
            data=data,
            arrival=time.time() if arrival is None else arrival,
            size=len(data) * 4 // 3 + len(key) + _ENVELOPE_BYTES,
        )
        self.records.append(record)
        return record

    def close(self) -> None:
        """End the partition: readers report ``ended`` once they have read everything."""
        self.closed = True

    @property
    def info(self) -> PartitionInfo:
        """The partition as the source lists it."""
        last = self.records[-1].position if self.closed and self.records else None
        return PartitionInfo(self.id, self.parents, self.closed, last)


class _MemoryReader:
    def __init__(self, partition: MemoryPartition, start: StartAt, limit: int) -> None:
        self._partition = partition
        self._limit = limit
        #: Set by :meth:`MemorySource.revoke`: the next read says the partition is gone.
        self.revoked = False
        records = partition.records
        if start.after is not None:
            after = int(start.after)
            self._index = next(
                (i for i, r in enumerate(records) if r.ordinal > after), len(records)
            )
        elif start.starting_position is StartingPosition.LATEST:
            self._index = len(records)
        elif start.starting_position is StartingPosition.AT_TIMESTAMP and start.timestamp:
            moment = start.timestamp.timestamp()
            self._index = next(
                (i for i, r in enumerate(records) if r.arrival >= moment), len(records)
            )
        else:
            self._index = 0
        self.reads = 0

    @property
    def partition_id(self) -> str:
        return self._partition.id

    async def read(self) -> ReadResult:
        self.reads += 1
        if self.revoked:
            return ReadResult((), revoked=True)
        records = self._partition.records
        chunk = records[self._index : self._index + self._limit]
        self._index += len(chunk)
        left = len(records) - self._index
        ended = self._partition.closed and left == 0
        return ReadResult(chunk, behind_ms=1000 if left else 0, ended=ended)

    async def aclose(self) -> None:
        return None


class MemorySource(RendersWithCodec):
    """A :class:`~poller.engine.protocols.PartitionSource` over in-memory partitions.

    It renders its own events (it is its own ``EventCodec``), so ``Worker(sources={uuid: source})``
    runs a mapping on it as it is.
    """

    kind = "memory"

    def __init__(
        self,
        partitions: Sequence[MemoryPartition] = (),
        *,
        arn: str = "arn:aws:kinesis:us-east-1:000000000000:stream/memory",
        region: str = "us-east-1",
        read_limit: int = 10000,
        min_read_interval: float = 0.0,
    ) -> None:
        self.partitions: dict[str, MemoryPartition] = {p.id: p for p in partitions}
        self.arn = arn
        self.region = region
        #: Renders events as a Kinesis mapping of stream ``arn`` does.
        self.codec = KinesisCodec(arn, region)
        self.read_limit = read_limit
        self.min_read_interval = min_read_interval
        self.idle_poll_interval = 1.0
        self.supports_at_timestamp = True
        self.readers: list[_MemoryReader] = []
        self._revoked: set[str] = set()
        self._changed = anyio.Event()

    def add(self, partition: MemoryPartition) -> MemoryPartition:
        """Add a partition (a new shard after a reshard)."""
        self.partitions[partition.id] = partition
        return partition

    def revoke(self, partition_id: str) -> None:
        """Take a partition away, as a Kafka group does in a rebalance: it is no longer listed
        and its readers answer ``revoked`` from their next read."""
        self._revoked.add(partition_id)
        for reader in self.readers:
            if reader.partition_id == partition_id:
                reader.revoked = True
        self._changed.set()

    def assign(self, partition_id: str) -> None:
        """Give a revoked partition back."""
        self._revoked.discard(partition_id)
        self._changed.set()

    async def wait_for_partition_change(self) -> None:
        """Return once partitions were revoked or assigned since the last call."""
        await self._changed.wait()
        self._changed = anyio.Event()

    async def list_partitions(self) -> Sequence[PartitionInfo]:
        return [p.info for p in self.partitions.values() if p.id not in self._revoked]

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> _MemoryReader:
        reader = _MemoryReader(self.partitions[partition.id], start, self.read_limit)
        reader.revoked = partition.id in self._revoked
        self.readers.append(reader)
        return reader

    async def aclose(self) -> None:
        return None
