"""Handing fetched records to the function again, by the mapping's own rules.

The records go through the engine a worker runs, not through a second copy of its rules: one
:class:`~poller.engine.streams.partition.PartitionRunner` per partition reads them from
:class:`FetchedSource` (an in-memory log that ends after the fetched records) and cuts batches
by BatchSize, retries, bisects, honours batchItemFailures and lanes exactly as the mapping's
worker would, with a memory store for its checkpoints (the mapping's stored checkpoints are not
touched). Per-partition order holds as it does in a worker: a partition's records are handed
over in source order, one batch at a time.

What is discarded again reaches the mapping's own on-failure destination through
:class:`RecordingSink`, which also remembers which records it recorded, so the caller can tell
for each old on-failure record whether all of its records have now succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio

from poller.config.fields import StartingPosition
from poller.engine.discard import Discard, DiscardSink
from poller.engine.invocation import InvocationContext
from poller.engine.protocols import PartitionInfo, ReadResult, StartAt
from poller.engine.streams.partition import PartitionRunner
from poller.records import Record
from poller.stores.memory import MemoryStore

__all__ = ["FetchedSource", "RecordingSink", "run_partitions"]

#: Records handed to the engine per read (the batcher cuts batches from these chunks).
_CHUNK = 500


class RecordingSink:
    """The mapping's sink, remembering ``(partition, ordinal)`` of every record it recorded
    (only once the destination took it)."""

    def __init__(self, inner: DiscardSink) -> None:
        self._inner = inner
        #: Records discarded again and recorded in the destination.
        self.recorded: set[tuple[str, int]] = set()

    async def deliver(self, discard: Discard) -> None:
        await self._inner.deliver(discard)
        self.recorded.update((r.partition, r.ordinal) for r in discard.records)


class _FetchedReader:
    def __init__(self, records: Sequence[Record]) -> None:
        self._records = records
        self._next = 0

    async def read(self) -> ReadResult:
        chunk = self._records[self._next : self._next + _CHUNK]
        self._next += len(chunk)
        return ReadResult(chunk, ended=self._next >= len(self._records))

    async def aclose(self) -> None:
        self._next = len(self._records)


class FetchedSource:
    """A log of the fetched records only (a ``PartitionSource``): each partition ends after them."""

    min_read_interval = 0.0
    idle_poll_interval = 0.0
    supports_at_timestamp = False

    def __init__(self, kind: str, partitions: Mapping[str, Sequence[Record]]) -> None:
        self.kind = kind
        self._partitions = dict(partitions)

    async def list_partitions(self) -> list[PartitionInfo]:
        return [PartitionInfo(pid) for pid in self._partitions]

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> _FetchedReader:
        return _FetchedReader(self._partitions[partition.id])

    async def aclose(self) -> None:
        self._partitions.clear()


def in_order(records: Sequence[Record]) -> list[Record]:
    """One partition's records in source order, each once (ranges of two on-failure records may
    overlap when an earlier redrive could not remove its old record)."""
    unique = {record.ordinal: record for record in records}
    return [unique[ordinal] for ordinal in sorted(unique)]


async def run_partitions(
    context: InvocationContext, partitions: Mapping[str, Sequence[Record]]
) -> set[str]:
    """Run every partition's records through the engine, partitions side by side; the
    partitions that finished (every record succeeded, was filtered, or was recorded again)."""
    source = FetchedSource(context.mapping.source_kind, partitions)
    store = MemoryStore()
    finished: set[str] = set()
    stopping = anyio.Event()

    async def run_one(partition: str) -> None:
        runner = PartitionRunner(
            context,
            source,
            PartitionInfo(partition),
            store,
            stopping=stopping,
            starting_position=StartingPosition.TRIM_HORIZON,
            idle_poll=0.0,
        )
        if await runner.run():
            finished.add(partition)

    try:
        async with anyio.create_task_group() as group:
            for partition in partitions:
                group.start_soon(run_one, partition)
    finally:
        await store.aclose()
    return finished
