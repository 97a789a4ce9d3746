"""Tumbling windows on one shard: which window a record belongs to, the window's state, and the
final invocation that closes it.

A record belongs to the window ``[start, start + length)`` that holds its arrival time
(Kinesis ``approximateArrivalTimestamp``, DynamoDB ``ApproximateCreationDateTime``), windows being
aligned to multiples of their length since the epoch. A record that arrives stamped before the open
window's start (arrival stamps are approximate) joins the open window: windows never go back.

Batches are cut as usual and split where the window changes, so one invocation never holds two
windows. Each successful invocation's ``state`` is kept (:class:`WindowKeeper`) and written with the
checkpoint, so a restart or a lease move resumes the window with it. A window closes when a record
of a later window comes, when the shard is idle and caught up past the window's end, or when the
shard ends (its children start windows of their own); closing is one more invocation without
records, ``isFinalInvokeForWindow`` true, retried until it succeeds (AWS suspends the shard
meanwhile), whose state is dropped. A state over 1 MB ends the window early: the next invocation
is that final one with ``isWindowTerminatedEarly`` true, and the window goes on with ``{}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog

from poller.engine.backoff import Backoff
from poller.engine.batching import CutBatch
from poller.engine.invocation import InvocationContext, invoke
from poller.engine.outcome import Succeeded
from poller.engine.state import Checkpoint
from poller.engine.streams.processor import BatchProcessor
from poller.records import Record, TumblingWindow

__all__ = ["IDLE_WAIT", "MAX_STATE_BYTES", "WindowKeeper", "WindowedLane"]

#: Lambda's limit on a window's state per shard; a bigger state ends the window early.
MAX_STATE_BYTES = 1024 * 1024
#: How long a windowed lane waits for records before it looks at the clock.
IDLE_WAIT = 0.25
#: After a window's end, how long an idle shard waits for records stamped inside it (arrival
#: stamps are set by the stream a little before the records can be read).
CLOSE_GRACE = 1.0


class WindowKeeper:
    """The open window of one shard and its state (JSON text, as the checkpoint stores it)."""

    __slots__ = ("early", "length", "source_arn", "start", "text")

    def __init__(self, length: int, source_arn: str) -> None:
        self.length = length
        self.source_arn = source_arn
        #: Start of the open window (epoch seconds); None when none is open.
        self.start: int | None = None
        self.text = "{}"
        #: The state grew over the limit: the next invocation ends the window early.
        self.early = False

    def restore(self, checkpoint: Checkpoint | None) -> None:
        """Reopen the window a stored checkpoint holds, with its state."""
        if checkpoint is None or checkpoint.window_start is None:
            return
        self.start = checkpoint.window_start
        self.text = checkpoint.window_state or "{}"
        self.early = len(self.text.encode()) > MAX_STATE_BYTES

    def window_of(self, record: Record) -> int:
        """The start of the window ``record`` belongs to."""
        start = int(record.arrival // self.length) * self.length
        current = self.start
        return current if current is not None and start < current else start

    def open(self, start: int) -> None:
        """Open the window at ``start`` with an empty state."""
        self.start, self.text, self.early = start, "{}", False

    def close(self) -> None:
        """No window is open any more."""
        self.start, self.text, self.early = None, "{}", False

    def current(self, *, final: bool = False) -> TumblingWindow:
        """The open window as an invocation carries it (a fresh copy of the state)."""
        assert self.start is not None
        return TumblingWindow(
            start=self.start,
            end=self.start + self.length,
            state=json.loads(self.text),
            source_arn=self.source_arn,
            final=final,
            terminated_early=final and self.early,
        )

    def accept(self, state: Any) -> None:
        """Keep what a successful invocation returned as the window's state."""
        text = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
        self.text = text
        self.early = len(text.encode()) > MAX_STATE_BYTES


class WindowedLane:
    """Runs a shard's cut batches window by window and makes each window's final invocation."""

    def __init__(
        self,
        keeper: WindowKeeper,
        context: InvocationContext,
        partition: str,
        processor: BatchProcessor,
        *,
        persist: Callable[[], Awaitable[None]],
        stopping: anyio.Event,
    ) -> None:
        self._keeper = keeper
        self._context = context
        self._partition = partition
        self._processor = processor
        self._persist = persist
        self._stopping = stopping
        mapping = context.mapping
        self._backoff = Backoff(mapping.retry_backoff, mapping.retry_backoff_max)
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=mapping.mapping_id, shard=partition
        )

    async def process(self, cut: CutBatch) -> bool:
        """Settle every record of ``cut``, window by window; False if the worker is stopping."""
        keeper = self._keeper
        records = cut.records
        if cut.oversized:  # discarded without an invocation: no window to open for it
            return await self._processor.process(cut)
        index, count = 0, len(records)
        while index < count:
            start = keeper.window_of(records[index])
            end = index + 1
            while end < count and keeper.window_of(records[end]) == start:
                end += 1
            if keeper.start is not None and keeper.start != start and not await self.close():
                return False
            if keeper.start is None:
                keeper.open(start)
            if not await self._processor.process(CutBatch(records[index:end])):
                return False
            if keeper.early and not await self.close():
                return False
            index = end
        return True

    async def idle(self, *, caught_up: bool, ended: bool) -> bool:
        """No records came: close the open window when the shard ended, or when it is caught up
        and the window's end has passed on the clock. False if the worker is stopping."""
        keeper = self._keeper
        if keeper.start is None:
            return True
        if ended or (
            caught_up and self._context.clock() >= keeper.start + keeper.length + CLOSE_GRACE
        ):
            return await self.close()
        return True

    async def close(self) -> bool:
        """The window's final invocation, retried until it succeeds; then the window closes (or,
        ended early, goes on with an empty state). False if the worker stopped first."""
        keeper = self._keeper
        early = keeper.early
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            outcome, request_id = await invoke(
                self._context,
                self._partition,
                (),
                attempt=attempt,
                window=keeper.current(final=True),
            )
            if isinstance(outcome, Succeeded):
                if early:
                    keeper.text, keeper.early = "{}", False
                else:
                    keeper.close()
                await self._persist()
                return True
            self._log.warning(
                "final window invocation failed",
                batch=request_id,
                window_start=keeper.start,
                reason=getattr(outcome, "reason", "partial response"),
                invocations=attempt,
            )
            with anyio.move_on_after(self._backoff.delay(attempt)):
                await self._stopping.wait()
        return False
