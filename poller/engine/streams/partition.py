"""One partition (shard) from checkpoint to end: fetch ahead, cut batches, process, checkpoint.

Three kinds of task cooperate per partition:

* the *fetcher* reads the source and pushes record chunks into one bounded buffer, so the next
  batch is ready when the current one returns; it polls again at once while the reader is behind,
  waits ``idle_poll`` when caught up, and never reads faster than the source allows;
* one *lane* per ParallelizationFactor cuts batches and runs them through the
  :class:`~poller.engine.streams.processor.BatchProcessor`; records of one partition key always go to the
  same lane, so per-key order holds, and each lane has one batch in flight;
* the :class:`~poller.engine.streams.watermark.Watermark` turns settled records into a checkpoint that only
  covers a settled prefix.

While a batch fails, its lane stops cutting new batches and the buffer fills, so the partition blocks
(other partitions run in their own tasks and go on). Each lane watches its batches on their way
through the target (:mod:`poller.engine.streams.watch`), so status can say whether one is in the
handler now, since when a failing one has been retried, and at which attempt it is.

With TumblingWindowInSeconds, a lane hands its batches to a
:class:`~poller.engine.streams.windows.WindowedLane`, and each checkpoint carries the window's state.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import anyio
import structlog
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from poller.config.fields import StartingPosition
from poller.engine.backoff import Backoff
from poller.engine.batching import Batcher, StreamFeed
from poller.engine.cutoff import CLOCK_SKEW_ALLOWANCE, ArrivalCutoff
from poller.engine.failures import RepeatedFailures
from poller.engine.invocation import (
    InvocationContext,
    RecordFilter,
)
from poller.engine.protocols import PartitionInfo, PartitionReader, PartitionSource, StartAt
from poller.engine.state import Checkpoint, Store
from poller.engine.streams.processor import BatchProcessor
from poller.engine.streams.watch import LaneWatch, WatchedTarget, WatchedTimedTarget
from poller.engine.streams.watermark import Watermark
from poller.engine.streams.windows import IDLE_WAIT, WindowedLane, WindowKeeper
from poller.engine.windows import tumbling_window_seconds
from poller.errors import during
from poller.records import Record

__all__ = ["PartitionRunner"]

_READ_ERROR_BACKOFF = Backoff(0.5, 30.0)


class PartitionRunner:
    """Processes one partition until it ends (returns True) or the worker stops (False)."""

    def __init__(
        self,
        context: InvocationContext,
        source: PartitionSource,
        partition: PartitionInfo,
        store: Store,
        *,
        stopping: anyio.Event,
        starting_position: StartingPosition,
        idle_poll: float = 1.0,
    ) -> None:
        self.partition = partition
        self._context = context
        self._mapping = context.mapping
        self._source = source
        self._store = store
        self._stopping = stopping
        self._counters = context.counters
        self._starting_position = starting_position
        self._idle_poll = idle_poll
        self._watermark = Watermark()
        length = tumbling_window_seconds(self._mapping)
        #: The shard's tumbling window (TumblingWindowInSeconds), None without one.
        self._windows = WindowKeeper(length, self._mapping.event_source_arn) if length else None
        self._checkpoint: Checkpoint | None = None
        self._fetched = 0
        self._settled = 0
        self._moved = False
        self._in_flight = 0
        self._caught_up = False
        self._ended = False
        #: MillisBehindLatest of the last read (the partition's iterator age).
        self.behind_ms = 0
        #: Resuming from a LATEST marker without AT_TIMESTAMP: records before it are skipped.
        self._cutoff = ArrivalCutoff()
        self._processors: list[BatchProcessor] = []
        self._watches: list[LaneWatch] = []
        #: Set when this partition must stop taking work: the worker stops (``stopping``) or the
        #: source revoked the partition. The batch in flight finishes either way.
        self._stop = anyio.Event()
        #: True once the source said the partition is no longer ours.
        self.revoked = False
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=self._mapping.mapping_id, shard=partition.id
        )
        #: Failed reads in a row (and reader openings), logged once per cause.
        self._read_failures = RepeatedFailures(self._log)

    # --- status ----------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Caught up with the source and nothing read is still unsettled."""
        return self._caught_up and self._settled >= self._fetched and self._in_flight == 0

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The last checkpoint written (or loaded) for this partition."""
        return self._checkpoint

    @property
    def moved(self) -> bool:
        """True once this runner stored a checkpoint past the one it started from."""
        return self._moved

    @property
    def blocked(self) -> bool:
        """True while a lane waits to retry a failed batch."""
        return any(p.retrying for p in self._processors)

    @property
    def in_flight(self) -> bool:
        """True while a batch of this partition is in the handler."""
        return any(w.in_handler for w in self._watches)

    @property
    def blocked_since(self) -> float | None:
        """Epoch seconds of the first failure of a batch still being retried (None when no
        batch is failing): the partition has not moved past it since."""
        return min(
            (w.failing_since for w in self._watches if w.failing_since is not None), default=None
        )

    @property
    def attempts(self) -> int:
        """The attempt number of the batch in the handler or waiting for its retry, else of the
        last batch (the highest among lanes); 0 before the first invocation."""
        return max((w.attempts for w in self._watches), default=0)

    # --- run ---------------------------------------------------------------------------------------

    async def run(self) -> bool:
        """Process the partition; True when it ended and is fully checkpointed as finished."""
        mapping_id = self._mapping.mapping_id
        with during("reading the checkpoint"):
            checkpoint = await self._store.get_checkpoint(mapping_id, self.partition.id)
        self._checkpoint = checkpoint
        if checkpoint is not None and checkpoint.finished:
            return True
        if self._windows is not None:
            self._windows.restore(checkpoint)
        start = self._start_for(checkpoint)
        self._log.info(
            "partition starting",
            resume_after=start.after,
            starting_position=None if start.after else start.starting_position.value,
        )
        reader = await self._open_reader(start)
        if reader is None:
            return False
        if checkpoint is None and self._starting_position is StartingPosition.LATEST:
            # Remember when this shard started at LATEST: if the worker stops before a record
            # settles, the next start resumes from here instead of skipping to a new LATEST.
            marker = Checkpoint(position="", ordinal=0, opened_at=self._context.clock())
            await self._put_checkpoint(marker)
            self._checkpoint = marker
        send, receive = anyio.create_memory_object_stream[Sequence[Record]](max_buffer_size=1)
        fetching = anyio.CancelScope()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._fetch_until_stopped, fetching, reader, send)
                group.start_soon(self._follow_worker_stop, fetching)
                await self._process(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await reader.aclose()
        if self._ended and self._settled >= self._fetched and not self._stop.is_set():
            await self._finish()
            return True
        return False

    def _start_for(self, checkpoint: Checkpoint | None) -> StartAt:
        """After the checkpoint; else from the LATEST marker's moment; else StartingPosition."""
        if checkpoint is not None and checkpoint.position:
            return StartAt(self._starting_position, after=checkpoint.position)
        if checkpoint is not None and checkpoint.opened_at is not None:
            moment = checkpoint.opened_at - CLOCK_SKEW_ALLOWANCE
            self._cutoff = ArrivalCutoff(moment)
            if self._source.supports_at_timestamp:
                return StartAt(
                    StartingPosition.AT_TIMESTAMP,
                    timestamp=datetime.fromtimestamp(moment, UTC),
                )
            return StartAt(StartingPosition.TRIM_HORIZON)
        return StartAt(self._starting_position, timestamp=self._mapping.starting_position_timestamp)

    async def _open_reader(self, start: StartAt) -> PartitionReader | None:
        failures = self._read_failures
        while not self._stopping.is_set():
            try:
                reader = await self._source.open_reader(self.partition, start)
            except Exception as error:
                self._counters.polling_errors += 1
                delay = _READ_ERROR_BACKOFF.delay(failures.attempts + 1)
                failures.failed(
                    "cannot open partition reader",
                    error,
                    operation="opening the partition reader",
                    retry_in=round(delay, 2),
                )
                with anyio.move_on_after(delay):
                    await self._stopping.wait()
                continue
            failures.recovered()
            return reader
        return None

    async def _finish(self) -> None:
        last = self._checkpoint
        finished = Checkpoint(
            position=last.position if last else "",
            ordinal=last.ordinal if last else 0,
            finished=True,
        )
        await self._put_checkpoint(finished)
        self._moved = True
        self._checkpoint = finished
        self._log.info("partition finished", last_position=finished.position or None)

    # --- fetching ----------------------------------------------------------------------------------

    async def _follow_worker_stop(self, fetching: anyio.CancelScope) -> None:
        await self._stopping.wait()
        self._stop.set()
        fetching.cancel()

    async def _fetch_until_stopped(
        self,
        fetching: anyio.CancelScope,
        reader: PartitionReader,
        send: ObjectSendStream[Sequence[Record]],
    ) -> None:
        # Stopping cancels this scope, so the fetch loop's waits are plain sleeps: an idle shard
        # costs one timer per poll and nothing more.
        async with send:
            with fetching:
                await self._fetch(reader, send)

    async def _fetch(
        self, reader: PartitionReader, send: ObjectSendStream[Sequence[Record]]
    ) -> None:
        min_interval = self._source.min_read_interval
        next_read = 0.0
        failures = self._read_failures
        while not self._stop.is_set():
            wait = next_read - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
            next_read = anyio.current_time() + min_interval
            try:
                result = await reader.read()
            except Exception as error:
                self._counters.polling_errors += 1
                delay = _READ_ERROR_BACKOFF.delay(failures.attempts + 1)
                failures.failed(
                    "read failed", error, operation="reading records", retry_in=round(delay, 2)
                )
                next_read = anyio.current_time() + delay
                continue
            failures.recovered("reading records again")
            if result.revoked:
                # Lanes see the stop before the buffer closes, so no new batch is cut; what was
                # read and not settled is read again by the partition's next owner.
                self.revoked = True
                self._stop.set()
                self._log.info("partition revoked; finishing the batch in flight")
                return
            records = result.records
            self.behind_ms = result.behind_ms
            if self._cutoff.active:
                records = self._cutoff.screen(records)
            if records:
                self._fetched += len(records)
                self._counters.polled_events += len(records)
                self._caught_up = False
                await send.send(records)
            if result.ended:
                self._ended = True
                self._log.info("partition end reached", children=[c.id for c in result.children])
                return
            if result.behind_ms <= 0:
                self._caught_up = not records
                next_read = max(next_read, anyio.current_time() + self._idle_poll)

    # --- processing --------------------------------------------------------------------------------

    async def _process(self, receive: MemoryObjectReceiveStream[Sequence[Record]]) -> None:
        lanes = self._mapping.parallelization_factor
        filters = self._context.filters
        if lanes == 1 and filters is None:
            await self._lane(receive, register=True)
            return
        sends: list[ObjectSendStream[Sequence[Record]]] = []
        async with anyio.create_task_group() as group:
            for _ in range(lanes):
                lane_send, lane_receive = anyio.create_memory_object_stream[Sequence[Record]](
                    max_buffer_size=1
                )
                sends.append(lane_send)
                group.start_soon(self._lane, lane_receive, False)
            try:
                async for chunk in receive:
                    if self._stop.is_set():
                        break
                    self._watermark.register(chunk)
                    kept: Sequence[Record] = chunk
                    if filters is not None:
                        kept = await self._filter(chunk, filters)
                    if lanes == 1:
                        if kept:
                            await sends[0].send(kept)
                        continue
                    groups: list[list[Record]] = [[] for _ in range(lanes)]
                    for record in kept:
                        groups[zlib.crc32(record.key.encode()) % lanes].append(record)
                    for index, records in enumerate(groups):
                        if records:
                            await sends[index].send(records)
            except anyio.BrokenResourceError:
                pass  # a lane stopped early because the worker is stopping
            finally:
                for stream in sends:
                    await stream.aclose()

    async def _filter(self, chunk: Sequence[Record], filters: RecordFilter) -> list[Record]:
        """The records that match FilterCriteria; the others settle at once, as done (the
        checkpoint moves past them with the settled prefix), and are counted."""
        accepts = filters.accepts
        kept = [record for record in chunk if accepts(record)]
        if len(kept) < len(chunk):
            kept_ids = {id(record) for record in kept}
            dropped = [record for record in chunk if id(record) not in kept_ids]
            self._counters.filtered_out_events += len(dropped)
            await self._settle(dropped, True)
        return kept

    async def _lane(
        self, receive: MemoryObjectReceiveStream[Sequence[Record]], register: bool
    ) -> None:
        mapping = self._mapping
        watch = LaneWatch()
        self._watches.append(watch)
        context = self._context
        watched = WatchedTimedTarget if context.timed else WatchedTarget
        context = replace(context, target=watched(context.target, watch, context.clock))
        windows = self._windows
        processor = BatchProcessor(
            context, self.partition.id, settle=self._settle, stopping=self._stop, window=windows
        )
        self._processors.append(processor)
        windowed = None
        if windows is not None:
            windowed = WindowedLane(
                windows,
                context,
                self.partition.id,
                processor,
                persist=self._write_window,
                stopping=self._stop,
            )
        batcher = Batcher(
            StreamFeed(receive),
            batch_size=mapping.batch_size,
            window=mapping.batching_window,
            max_bytes=mapping.max_payload_bytes,
            window_from_first_record=mapping.window_from_first_record,
            # A windowed lane wakes up now and then to close a window that ended on the clock.
            first_wait=math.inf if windowed is None else IDLE_WAIT,
        )
        async with receive:
            while not self._stop.is_set():
                cut = await batcher.next_batch()
                if cut is None and windowed is not None and not self._stop.is_set():
                    ended = batcher.ended and self._ended
                    if not await windowed.idle(caught_up=self._caught_up, ended=ended):
                        return
                    if not batcher.ended:
                        continue
                if cut is None or self._stop.is_set():
                    return
                if register:
                    self._watermark.register(cut.records)
                self._in_flight += 1
                try:
                    if windowed is None:
                        finished = await processor.process(cut)
                    else:
                        finished = await windowed.process(cut)
                finally:
                    self._in_flight -= 1
                    watch.failing_since = None  # settled (or left to the next start)
                if not finished:
                    return

    async def _settle(self, records: Sequence[Record], succeeded: bool) -> None:
        self._settled += len(records)
        last = self._watermark.settle(records)
        if last is None:
            return
        checkpoint = Checkpoint(position=last.position, ordinal=last.ordinal)
        if self._windows is not None:
            checkpoint = replace(
                checkpoint, window_start=self._windows.start, window_state=self._windows.text
            )
        current = self._checkpoint
        if current is not None and current.ordinal >= checkpoint.ordinal and current.position:
            return
        self._checkpoint = checkpoint
        await self._put_checkpoint(checkpoint)
        self._moved = True

    async def _write_window(self) -> None:
        """Store the window's change (closed, or state reset) at the current checkpoint."""
        current, windows = self._checkpoint, self._windows
        if current is None or windows is None or not current.position:
            return
        self._checkpoint = replace(
            current,
            window_start=windows.start,
            window_state=None if windows.start is None else windows.text,
        )
        await self._put_checkpoint(self._checkpoint)

    async def _put_checkpoint(self, checkpoint: Checkpoint) -> None:
        with during("writing a checkpoint"):
            mapping_id, partition = self._mapping.mapping_id, self.partition.id
            await self._store.put_checkpoint(mapping_id, partition, checkpoint)
