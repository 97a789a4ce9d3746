"""One queue mapping (SQS, RabbitMQ, ActiveMQ): pollers, their number, and how they settle.

A queue has no partitions to walk: the engine runs *pollers*. Each poller gathers one batch with
the engine's :class:`~poller.engine.batching.Batcher` (several receives within the batching
window, up to BatchSize and the 6 MB cap), hands it to the target and settles it, so the number
of pollers is the number of batches in flight. How a batch settles is the source's kind of queue:

* **visibility queues** (SQS, :mod:`~poller.engine.queues.visibility`): pollers scale like
  Lambda's: start with five, add one every 0.2 s (300 a minute) while receives come back full,
  up to ``ScalingConfig.MaximumConcurrency``; a poller whose long poll came back empty retires
  while more than the minimum run. A slow handler only holds its own poller. Waits are whole
  seconds (SQS's unit), so the window may run up to a second over;
* **acknowledgement queues** (message brokers, :mod:`~poller.engine.queues.acknowledgement`): a
  fixed number of pollers, ``MaximumConcurrency`` if set, else one, which keeps the queue's order
  (a batch is settled before the next is handed over, and a failed one comes back before
  anything after it). The source's consumer buffers ahead, so a receive returns at once what
  arrived; the batching window starts at the first message of a batch (AWS's rule for MQ).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from poller.engine.backoff import Backoff
from poller.engine.batching import Batcher
from poller.engine.failures import RepeatedFailures
from poller.engine.invocation import InvocationContext
from poller.engine.protocols import AckQueue, QueueInfo, QueueSource
from poller.engine.queues.acknowledgement import AckProcessor
from poller.engine.queues.processor import QueueProcessor
from poller.engine.queues.visibility import VisibilityProcessor
from poller.records import Record

__all__ = ["QueueMappingRunner"]

_DESCRIBE_BACKOFF = Backoff(1.0, 60.0)
_RECEIVE_BACKOFF = Backoff(0.5, 30.0)
#: AWS starts an SQS mapping with five concurrent batches ...
_INITIAL_POLLERS = 5
#: ... and adds up to 300 a minute while there is work.
_SCALE_UP_EVERY = 0.2
#: AWS's most concurrent batches per SQS mapping without a MaximumConcurrency.
_DEFAULT_MAX_POLLERS = 1250
#: The longest long poll SQS allows.
_LONG_POLL_SECONDS = 20
#: Pollers of a broker queue without a MaximumConcurrency: one keeps the queue's order.
_DEFAULT_BROKER_POLLERS = 1


class _PollerFeed:
    """A poller's records: one receive per wait, counted and held as they arrive."""

    def __init__(
        self,
        runner: QueueMappingRunner,
        processor: QueueProcessor[Any],
        *,
        long_poll: float,
        whole_seconds: bool,
    ) -> None:
        self._runner = runner
        self._processor = processor
        self._long_poll = long_poll
        self._whole_seconds = whole_seconds

    async def receive(self, wanted: int, wait: float) -> Sequence[Record] | None:
        source = self._runner.source
        if wait == math.inf:
            wait = self._long_poll
        elif self._whole_seconds:
            wait = min(self._long_poll, max(1, math.ceil(wait)))
        else:
            wait = min(self._long_poll, max(0.0, wait))
        received = await source.receive(min(source.max_receive, wanted), wait)
        if received:
            counters = self._runner.counters
            counters.polled_events += len(received)
            self._processor.hold(received)
            if len(received) >= source.max_receive:
                self._runner.full_receives += 1
            filters = self._runner.filters
            if filters is not None:
                # Batches are made of matching messages; the others are settled now.
                kept = [record for record in received if filters.accepts(record)]
                if len(kept) < len(received):
                    kept_ids = {id(record) for record in kept}
                    dropped = [record for record in received if id(record) not in kept_ids]
                    counters.filtered_out_events += len(dropped)
                    await self._processor.settle_filtered(dropped)
                    return kept
        return received


class QueueMappingRunner:
    """Runs the pollers of one queue mapping until the worker stops."""

    def __init__(
        self,
        context: InvocationContext,
        source: QueueSource,
        *,
        long_poll_seconds: int = _LONG_POLL_SECONDS,
    ) -> None:
        self.mapping = mapping = context.mapping
        self.counters = context.counters
        self.source = source
        self._context = context
        #: FilterCriteria (None: every message reaches the function).
        self.filters = context.filters
        self._long_poll = long_poll_seconds
        #: Whether the queue keeps messages with their consumer (a broker) rather than hiding
        #: them for a visibility timeout: it decides the settlement and the pollers.
        self._acknowledged = isinstance(source, AckQueue)
        if self._acknowledged:
            # Fixed pollers: a broker's consumer already runs ahead of the batches.
            self._max_pollers = mapping.maximum_concurrency or _DEFAULT_BROKER_POLLERS
            self._min_pollers = self._max_pollers
        else:
            # ProvisionedPollerConfig bounds the pollers; ScalingConfig's MaximumConcurrency
            # (batches in flight, one per poller) caps them too.
            ceiling = mapping.maximum_pollers or _DEFAULT_MAX_POLLERS
            if mapping.maximum_concurrency:
                ceiling = min(ceiling, mapping.maximum_concurrency)
            self._max_pollers = ceiling
            self._min_pollers = min(mapping.minimum_pollers or _INITIAL_POLLERS, ceiling)
        self._pollers = 0
        self._in_flight = 0
        self._idle_pollers = 0
        #: Receives that came back full since the last scale-up (read by the scaler).
        self.full_receives = 0
        self._info: QueueInfo | None = None
        self._stopping = anyio.Event()
        self._receive_scopes: set[anyio.CancelScope] = set()
        #: Set when :meth:`run` has returned.
        self.done = anyio.Event()
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=mapping.mapping_id, queue=mapping.source_label
        )
        #: Failed describes, then failed receives of all pollers: logged once per cause.
        self._failures = RepeatedFailures(self._log)

    # --- status ----------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Every poller's last receive came back empty and no batch is in flight."""
        return (
            self._info is not None
            and self._pollers > 0
            and self._in_flight == 0
            and self._idle_pollers >= self._pollers
        )

    @property
    def ready(self) -> bool:
        """The queue answered (described): the mapping polls it."""
        return self._info is not None

    @property
    def pollers(self) -> int:
        """Pollers running now (each has at most one batch in flight)."""
        return self._pollers

    @property
    def in_flight(self) -> int:
        """Batches being processed now."""
        return self._in_flight

    def status(self) -> dict[str, Any]:
        """What the worker reports for this mapping."""
        info = self._info
        return {
            "idle": self.idle,
            "queue": {
                "fifo": info.fifo if info else None,
                "visibility_timeout": info.visibility_timeout if info else None,
                "pollers": self._pollers,
                "batches_in_flight": self._in_flight,
                "maximum_concurrency": self._max_pollers,
            },
            "metrics": self.counters.snapshot(),
        }

    def stop(self) -> None:
        """Stop receiving; batches in flight finish, then :meth:`run` returns."""
        self._stopping.set()
        for scope in list(self._receive_scopes):
            scope.cancel()

    @contextlib.contextmanager
    def _cancelled_by_stop(self) -> Iterator[anyio.CancelScope]:
        """A scope that :meth:`stop` cancels: long polls and waits end at once on stop."""
        scope = anyio.CancelScope()
        self._receive_scopes.add(scope)
        if self._stopping.is_set():
            scope.cancel()
        try:
            with scope:
                yield scope
        finally:
            self._receive_scopes.discard(scope)

    # --- run ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Describe the queue, then poll it until :meth:`stop`."""
        self._log.info("mapping starting", source=self.source.kind)
        try:
            info = await self._describe()
            if info is not None:
                self._info = info
                if not self._acknowledged:
                    self._check_timeouts(info)
                async with anyio.create_task_group() as group:
                    for _ in range(self._min_pollers):
                        self._start_poller(group)
                    if self._max_pollers > self._min_pollers:
                        group.start_soon(self._scale_up, group)
        finally:
            self.done.set()
        self._log.info("mapping stopped")

    async def _describe(self) -> QueueInfo | None:
        failures = self._failures
        while not self._stopping.is_set():
            try:
                info = await self.source.describe()
            except Exception as error:
                self.counters.polling_errors += 1
                delay = _DESCRIBE_BACKOFF.delay(failures.attempts + 1)
                failures.failed(
                    "cannot read the queue",
                    error,
                    operation="describing the queue",
                    retry_in=round(delay, 2),
                )
                with anyio.move_on_after(delay):
                    await self._stopping.wait()
                continue
            failures.recovered("queue answered again")
            return info
        return None

    def _check_timeouts(self, info: QueueInfo) -> None:
        timeout = self.mapping.function_timeout
        if not self.mapping.visibility_heartbeat and timeout > info.visibility_timeout:
            self._log.warning(
                "FunctionTimeout is longer than the queue's visibility timeout: messages may "
                "be handed over again while their handler still runs",
                function_timeout=timeout,
                visibility_timeout=info.visibility_timeout,
            )

    def _start_poller(self, group: TaskGroup) -> None:
        self._pollers += 1
        group.start_soon(self._poll)

    async def _scale_up(self, group: TaskGroup) -> None:
        """Add a poller every 0.2 s while receives come back full (Lambda's +300 a minute)."""
        with self._cancelled_by_stop():
            while not self._stopping.is_set():
                await anyio.sleep(_SCALE_UP_EVERY)
                if self.full_receives and self._pollers < self._max_pollers:
                    self.full_receives = 0
                    self._start_poller(group)
                    self._log.debug("scaled up", pollers=self._pollers)

    # --- one poller ------------------------------------------------------------------------------

    def _processor(self) -> QueueProcessor[Any]:
        assert self._info is not None
        source = self.source
        if isinstance(source, AckQueue):
            return AckProcessor(self._context, source, self._info, stopping=self._stopping)
        return VisibilityProcessor(self._context, source, self._info, stopping=self._stopping)

    async def _poll(self) -> None:
        processor = self._processor()
        mapping = self.mapping
        batcher = Batcher(
            _PollerFeed(
                self, processor, long_poll=self._long_poll, whole_seconds=not self._acknowledged
            ),
            batch_size=mapping.batch_size,
            window=mapping.batching_window,
            max_bytes=mapping.max_payload_bytes,
            window_from_first_record=mapping.window_from_first_record,
            first_wait=self._long_poll,
        )
        async with anyio.create_task_group() as group:
            group.start_soon(processor.run_alongside)
            await self._poll_loop(processor, batcher)
            group.cancel_scope.cancel()

    async def _poll_loop(self, processor: QueueProcessor[Any], batcher: Batcher) -> None:
        idle = False
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    with self._cancelled_by_stop():
                        await batcher.gather()
                    if failures:
                        self._failures.recovered("receiving again")
                    failures = 0
                except Exception as error:
                    failures += 1
                    self.counters.polling_errors += 1
                    delay = _RECEIVE_BACKOFF.delay(failures)
                    self._failures.failed(
                        "receive failed",
                        error,
                        operation="receiving messages",
                        retry_in=round(delay, 2),
                    )
                    await self._release_unprocessed(processor, batcher.take_all())
                    with self._cancelled_by_stop():
                        await anyio.sleep(delay)
                    continue
                records = batcher.take_all()
                if self._stopping.is_set():
                    await self._release_unprocessed(processor, records)
                    return
                if not records:
                    if not idle:
                        idle = True
                        self._idle_pollers += 1
                    if self._pollers > self._min_pollers:
                        return  # the queue is empty: retire this poller
                    continue
                if idle:
                    idle = False
                    self._idle_pollers -= 1
                self._in_flight += 1
                try:
                    await processor.process(records)
                finally:
                    self._in_flight -= 1
        finally:
            if idle:
                self._idle_pollers -= 1
            self._pollers -= 1

    async def _release_unprocessed(
        self, processor: QueueProcessor[Any], records: Sequence[Record]
    ) -> None:
        """Messages received but never handed over go straight back to the queue."""
        with anyio.CancelScope(shield=True):
            await processor.release(records)
        if records:
            self._log.info("released unprocessed messages", messages=len(records))
