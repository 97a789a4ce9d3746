"""Cutting a partition's records into batches: BatchSize, the batching window and the 6 MB cap.

A batch is sent when the first of these happens: ``batch_size`` records are ready, the batching
window runs out, or the next record would take the payload past ``max_bytes``. The window starts
when the previous invocation ended (streams, as AWS) or, with ``window_from_first_record``, when
the batch's first record arrived (Kafka and MQ, as AWS). With a window of 0 a batch is whatever
is ready now, at least one record. A single record larger than ``max_bytes`` comes out alone,
flagged, so the engine can discard it with condition ``MaximumPayloadSizeExceeded`` instead of
failing an invocation forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import ObjectReceiveStream

from poller.records import Record

__all__ = ["Batcher", "CutBatch"]


@dataclass(frozen=True, slots=True)
class CutBatch:
    """Records cut for one invocation."""

    records: list[Record]
    #: True when the batch is one record larger than the payload cap.
    oversized: bool = False


class Batcher:
    """Pulls record chunks from a bounded stream and cuts batches from them."""

    def __init__(
        self,
        chunks: ObjectReceiveStream[Sequence[Record]],
        *,
        batch_size: int,
        window: float,
        max_bytes: int,
        window_from_first_record: bool = False,
    ) -> None:
        self._chunks = chunks
        self._batch_size = batch_size
        self._window = window
        self._from_first = window_from_first_record
        self._max_bytes = max_bytes
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

    def _add(self, chunk: Sequence[Record]) -> None:
        if self._head and self._head * 2 >= len(self._pending):
            del self._pending[: self._head]
            self._head = 0
        self._pending.extend(chunk)
        self._pending_bytes += sum([r.size for r in chunk])

    async def _receive(self) -> bool:
        """Wait for one more chunk; False once the stream has ended."""
        if self._ended:
            return False
        try:
            chunk = await self._chunks.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended = True
            return False
        self._add(chunk)
        return True

    def _drain_ready(self) -> None:
        receive_nowait = getattr(self._chunks, "receive_nowait", None)
        if receive_nowait is None:
            return
        while self.pending < self._batch_size:
            try:
                chunk = receive_nowait()
            except anyio.WouldBlock:
                return
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._ended = True
                return
            self._add(chunk)

    def _full(self) -> bool:
        if self.pending >= self._batch_size:
            return True
        if self._pending_bytes <= self._max_bytes:
            return False
        self._pending_bytes = sum([r.size for r in self._pending[self._head :]])
        return self._pending_bytes > self._max_bytes

    async def next_batch(self) -> CutBatch | None:
        """The next batch, or None when the stream ended and nothing is left."""
        if self._window > 0:
            if self._from_first and not self.pending:
                # The window opens with the first record: an idle partition waits for it.
                if not await self._receive():
                    return None
                self._drain_ready()
            with anyio.move_on_after(self._window):
                while not self._full():
                    if not await self._receive():
                        break
                    self._drain_ready()
        if not self.pending and not await self._receive():
            return None
        self._drain_ready()
        return self._cut()

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
