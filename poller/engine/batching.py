"""Cutting a partition's records into batches: BatchSize, the batching window and the 6 MB cap.

A batch is sent when the first of these happens: ``batch_size`` records are ready, the batching
window (which starts when the previous invocation ended) runs out, or the next record would take the
payload past ``max_bytes``. With a window of 0 a batch is whatever is ready now, at least one record.
A single record larger than ``max_bytes`` comes out alone, flagged, so the engine can discard it with
condition ``MaximumPayloadSizeExceeded`` instead of failing an invocation forever.
"""

from __future__ import annotations

from collections import deque
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
    ) -> None:
        self._chunks = chunks
        self._batch_size = batch_size
        self._window = window
        self._max_bytes = max_bytes
        self._pending: deque[Record] = deque()
        self._ended = False

    @property
    def pending(self) -> int:
        """Records received but not yet cut into a batch."""
        return len(self._pending)

    async def _receive(self) -> bool:
        """Wait for one more chunk; False once the stream has ended."""
        if self._ended:
            return False
        try:
            chunk = await self._chunks.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended = True
            return False
        self._pending.extend(chunk)
        return True

    def _drain_ready(self) -> None:
        receive_nowait = getattr(self._chunks, "receive_nowait", None)
        if receive_nowait is None:
            return
        while len(self._pending) < self._batch_size:
            try:
                chunk = receive_nowait()
            except anyio.WouldBlock:
                return
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._ended = True
                return
            self._pending.extend(chunk)

    def _full(self) -> bool:
        if len(self._pending) >= self._batch_size:
            return True
        total = 0
        for record in self._pending:
            total += record.size
            if total > self._max_bytes:
                return True
        return False

    async def next_batch(self) -> CutBatch | None:
        """The next batch, or None when the stream ended and nothing is left."""
        if self._window > 0:
            with anyio.move_on_after(self._window):
                while not self._full():
                    if not await self._receive():
                        break
                    self._drain_ready()
        if not self._pending and not await self._receive():
            return None
        self._drain_ready()
        return self._cut()

    def _cut(self) -> CutBatch:
        pending = self._pending
        first = pending.popleft()
        if first.size > self._max_bytes:
            return CutBatch([first], oversized=True)
        records = [first]
        total = first.size
        limit = self._batch_size
        max_bytes = self._max_bytes
        while pending and len(records) < limit:
            size = pending[0].size
            if total + size > max_bytes:
                break
            total += size
            records.append(pending.popleft())
        return CutBatch(records)
