"""Cutting records into batches: BatchSize, the batching window and the 6 MB cap, for every source.

A :class:`Batcher` gathers records from a :class:`RecordFeed` until the first of these happens:
``batch_size`` records are pending, the payload cap is reached, or the batching window runs out.
The window starts when gathering starts (streams and SQS: after the previous invocation ended) or,
with ``window_from_first_record``, when the batch's first record arrives (Kafka and MQ, as AWS).
With a window of 0 a batch is whatever the first receive brought (and what was ready with it).

Streams and queues share the rules and differ only in their feed: a partition's feed is the
bounded buffer its fetcher fills (waiting on it costs nothing), a queue's feed is a receive call
(a long poll that must not be cut short, so the feed turns each wait into one the queue honours).

A stream cuts one batch at a time (:meth:`Batcher.next_batch`): a single record larger than the
cap comes out alone, flagged, so the engine can discard it with ``MaximumPayloadSizeExceeded``
instead of failing an invocation forever. A queue takes everything it gathered
(:meth:`Batcher.take_all`) and splits it by the cap (:func:`split_by_payload`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from poller.records import Record

__all__ = ["Batcher", "CutBatch", "RecordFeed", "StreamFeed", "split_by_payload"]


@dataclass(frozen=True, slots=True)
class CutBatch:
    """Records cut for one invocation."""

    records: list[Record]
    #: True when the batch is one record larger than the payload cap.
    oversized: bool = False


class RecordFeed(Protocol):
    """Where a batcher's records come from."""

    async def receive(self, wanted: int, wait: float) -> Sequence[Record] | None:
        """Up to about ``wanted`` records, waiting up to ``wait`` seconds (``math.inf``: until
        some arrive) for the first; empty when none came in time; None once the feed ended."""
        ...


class StreamFeed:
    """A partition's feed: the bounded buffer of record chunks its fetcher fills."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: MemoryObjectReceiveStream[Sequence[Record]]) -> None:
        self._chunks = chunks

    async def receive(self, wanted: int, wait: float) -> Sequence[Record] | None:
        """The next chunk (and any ready behind it, up to ``wanted``)."""
        chunks = self._chunks
        try:
            if wait == math.inf:
                chunk = await chunks.receive()
            else:
                with anyio.move_on_after(wait) as scope:
                    chunk = await chunks.receive()
                if scope.cancelled_caught:
                    return ()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        if len(chunk) >= wanted:
            return chunk
        # Take what the fetcher already buffered too: one batch instead of several small ones.
        merged: list[Record] | None = None
        total = len(chunk)
        while total < wanted:
            try:
                more = chunks.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if merged is None:
                merged = list(chunk)
            merged.extend(more)
            total += len(more)
        return chunk if merged is None else merged


class Batcher:
    """Gathers records from a feed and cuts batches from them."""

    def __init__(
        self,
        feed: RecordFeed,
        *,
        batch_size: int,
        window: float,
        max_bytes: int,
        window_from_first_record: bool = False,
        first_wait: float = math.inf,
    ) -> None:
        self._feed = feed
        self._batch_size = batch_size
        self._window = window
        self._from_first = window_from_first_record
        self._max_bytes = max_bytes
        #: How long gathering waits for a first record (streams: as long as it takes; queues:
        #: one long poll, after which an empty gather tells the poller the queue is empty).
        self._first_wait = first_wait
        # Pending records are pending[head:]; cutting moves head, and the list is compacted
        # now and then, so a batch is one slice instead of a pop per record.
        self._pending: list[Record] = []
        self._head = 0
        #: An upper bound of the pending records' sizes; recomputed when it passes max_bytes.
        self._pending_bytes = 0
        self._ended = False

    @property
    def pending(self) -> int:
        """Records received but not yet cut into a batch."""
        return len(self._pending) - self._head

    @property
    def ended(self) -> bool:
        """The feed has ended: nothing more will arrive."""
        return self._ended

    def _add(self, records: Sequence[Record]) -> None:
        if self._head and self._head * 2 >= len(self._pending):
            del self._pending[: self._head]
            self._head = 0
        self._pending.extend(records)
        self._pending_bytes += sum([r.size for r in records])

    def _full(self) -> bool:
        if self.pending >= self._batch_size:
            return True
        if self._pending_bytes < self._max_bytes:
            return False
        self._pending_bytes = sum([r.size for r in self._pending[self._head :]])
        return self._pending_bytes >= self._max_bytes

    async def gather(self) -> None:
        """Receive until a batch is full, the cap is reached or the window ends.

        Returns with nothing pending when the feed ended, or when nothing arrived within the
        first wait.
        """
        window = self._window
        deadline = None if self._from_first else anyio.current_time() + window
        while not self._ended:
            if self.pending:
                if window <= 0 or self._full():
                    return
                if deadline is None:
                    deadline = anyio.current_time() + window
                wait = deadline - anyio.current_time()
                if wait <= 0:
                    return
            else:
                wait = self._first_wait
            got = await self._feed.receive(self._batch_size - self.pending, wait)
            if got is None:
                self._ended = True
            elif got:
                self._add(got)
            elif not self.pending:
                return  # nothing within the first wait

    async def next_batch(self) -> CutBatch | None:
        """The next batch of a stream, or None when the feed ended and nothing is left."""
        await self.gather()
        if not self.pending:
            return None
        return self._cut()

    def take_all(self) -> list[Record]:
        """Everything pending, in order (a queue's received batch); nothing is left pending."""
        records = self._pending[self._head :]
        self._pending = []
        self._head = 0
        self._pending_bytes = 0
        return records

    def _cut(self) -> CutBatch:
        pending, head = self._pending, self._head
        end = min(head + self._batch_size, len(pending))
        if self._pending_bytes <= self._max_bytes:
            # Everything pending fits under the cap: the batch is a plain slice.
            self._head = end
            return CutBatch(pending[head:end])
        first = pending[head]
        if first.size > self._max_bytes:
            self._head = head + 1
            self._pending_bytes -= first.size
            return CutBatch([first], oversized=True)
        total = 0
        stop = head
        max_bytes = self._max_bytes
        while stop < end:
            size = pending[stop].size
            if total + size > max_bytes:
                break
            total += size
            stop += 1
        self._head = stop
        self._pending_bytes -= total
        return CutBatch(pending[head:stop])


def split_by_payload(records: Sequence[Record], max_bytes: int) -> list[list[Record]]:
    """``records`` in order, in parts whose sizes add up to at most ``max_bytes`` each (a record
    larger than that is a part of its own)."""
    parts: list[list[Record]] = [[]]
    total = 0
    for record in records:
        if parts[-1] and total + record.size > max_bytes:
            parts.append([])
            total = 0
        parts[-1].append(record)
        total += record.size
    return [part for part in parts if part]
