"""One queue mapping (SQS standard or FIFO): pollers, concurrency scaling, settlement.

A queue has no partitions to walk: the engine runs *pollers*. Each poller gathers one batch
(several receives within the batching window, up to BatchSize and the 6 MB cap), hands it to the
target and settles it, so the number of pollers is the number of batches in flight. Pollers scale
like Lambda's: start with five, add one every 0.2 s (300 a minute) while receives come back full,
up to ``ScalingConfig.MaximumConcurrency``; a poller whose long poll came back empty retires
while more than the minimum run. A slow handler only holds its own poller.

Settlement follows AWS (:class:`QueueBatchProcessor` has the rules); on a FIFO queue the queue
itself never hands one message group to two pollers, and the processor keeps a failed group's
later messages from being settled past its failure.

A message broker's queue (RabbitMQ, ActiveMQ; ``QueueInfo.broker``) runs a fixed number of
pollers instead: ``MaximumConcurrency`` if set, else one, which keeps the queue's order (a batch
is settled before the next is handed over, and a failed one comes back before anything after
it). The source's consumer buffers ahead, so a receive returns at once what arrived; the
batching window starts at the first message of a batch (AWS's rule for MQ).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import anyio
import structlog
from anyio.abc import TaskGroup

from poller.config import ResolvedMapping
from poller.engine.backoff import Backoff
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import (
    BrokerQueueSource,
    DiscardSink,
    IdempotencyStore,
    QueueInfo,
    QueueSource,
    Target,
)
from poller.engine.queue_processor import QueueBatchProcessor
from poller.records import Record

__all__ = ["QueueMappingRunner"]

_DESCRIBE_BACKOFF = Backoff(1.0, 60.0)
_RECEIVE_BACKOFF = Backoff(0.5, 30.0)
#: AWS starts a queue mapping with five concurrent batches ...
_INITIAL_POLLERS = 5
#: ... and adds up to 300 a minute while there is work.
_SCALE_UP_EVERY = 0.2
#: AWS's most concurrent batches per SQS mapping without a MaximumConcurrency.
_DEFAULT_MAX_POLLERS = 1250
#: The longest long poll SQS allows.
_LONG_POLL_SECONDS = 20
#: Pollers of a broker queue without a MaximumConcurrency: one keeps the queue's order.
_DEFAULT_BROKER_POLLERS = 1


class QueueMappingRunner:
    """Runs the pollers of one queue mapping until the worker stops."""

    def __init__(
        self,
        *,
        mapping: ResolvedMapping,
        source: QueueSource,
        target: Target,
        sink: DiscardSink | None,
        store: IdempotencyStore | None = None,
        counters: MappingCounters | None = None,
        function_name: str = "poller",
        function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:poller",
        long_poll_seconds: int = _LONG_POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mapping = mapping
        self.counters = counters or MappingCounters()
        self._source = source
        self._target = target
        self._sink = sink
        self._store = store
        self._function_name = function_name
        self._function_arn = function_arn
        self._long_poll = long_poll_seconds
        self._clock = clock
        self._max_pollers = mapping.maximum_concurrency or _DEFAULT_MAX_POLLERS
        self._min_pollers = min(_INITIAL_POLLERS, self._max_pollers)
        self._pollers = 0
        self._in_flight = 0
        self._idle_pollers = 0
        self._full_receives = 0
        self._info: QueueInfo | None = None
        self._stopping = anyio.Event()
        self._receive_scopes: set[anyio.CancelScope] = set()
        #: Set when :meth:`run` has returned.
        self.done = anyio.Event()
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=mapping.mapping_id, queue=mapping.source_label
        )

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
        self._log.info("mapping starting", source=self._source.kind)
        try:
            info = await self._describe()
            if info is not None:
                self._info = info
                if info.broker:
                    # Fixed pollers: a broker's consumer already runs ahead of the batches.
                    self._max_pollers = self.mapping.maximum_concurrency or _DEFAULT_BROKER_POLLERS
                    self._min_pollers = self._max_pollers
                else:
                    self._check_timeouts(info)
                async with anyio.create_task_group() as group:
                    for _ in range(self._min_pollers):
                        self._start_poller(group)
                    if not info.broker:
                        group.start_soon(self._scale_up, group)
        finally:
            self.done.set()
        self._log.info("mapping stopped")

    async def _describe(self) -> QueueInfo | None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                return await self._source.describe()
            except Exception as error:
                attempt += 1
                self.counters.polling_errors += 1
                delay = _DESCRIBE_BACKOFF.delay(attempt)
                self._log.error("cannot read the queue", error=str(error), retry_in=round(delay, 2))
                with anyio.move_on_after(delay):
                    await self._stopping.wait()
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
                if self._full_receives and self._pollers < self._max_pollers:
                    self._full_receives = 0
                    self._start_poller(group)
                    self._log.debug("scaled up", pollers=self._pollers)

    # --- one poller ------------------------------------------------------------------------------

    async def _poll(self) -> None:
        assert self._info is not None
        processor = QueueBatchProcessor(
            mapping=self.mapping,
            source=self._source,
            info=self._info,
            target=self._target,
            sink=self._sink,
            idempotency=self._store,
            counters=self.counters,
            stopping=self._stopping,
            function_name=self._function_name,
            function_arn=self._function_arn,
            clock=self._clock,
        )
        if self._info.broker:
            await self._poll_loop(processor)  # no visibility timeout: nothing to extend
            return
        async with anyio.create_task_group() as group:
            group.start_soon(processor.heartbeat)
            await self._poll_loop(processor)
            group.cancel_scope.cancel()

    async def _poll_loop(self, processor: QueueBatchProcessor) -> None:
        idle = False
        failures = 0
        try:
            while not self._stopping.is_set():
                held: list[Record] = []
                try:
                    records = await self._gather(processor, held)
                    failures = 0
                except Exception as error:
                    failures += 1
                    self.counters.polling_errors += 1
                    delay = _RECEIVE_BACKOFF.delay(failures)
                    self._log.error("receive failed", error=str(error), retry_in=round(delay, 2))
                    await self._release_unprocessed(processor, held)
                    with self._cancelled_by_stop():
                        await anyio.sleep(delay)
                    continue
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

    async def _gather(self, processor: QueueBatchProcessor, held: list[Record]) -> list[Record]:
        """Receive one batch: up to BatchSize, within the batching window, under the payload cap.

        Without a window a batch is one receive (a long poll that returns with the first
        messages). With a window, receives go on until it ends, the batch is full or the cap is
        reached; waits are whole seconds (SQS's unit), so the window may run up to a second over.
        An empty long poll returns no batch, so the poller can tell the queue is empty.
        """
        assert self._info is not None
        if self._info.broker:
            return await self._gather_from_broker(processor, held)
        source = self._source
        batch_size = self.mapping.batch_size
        window = self.mapping.batching_window
        cap = self.mapping.max_payload_bytes
        deadline = anyio.current_time() + window
        total_bytes = 0
        with self._cancelled_by_stop():
            while True:
                remaining = deadline - anyio.current_time()
                wait = (
                    min(self._long_poll, max(1, math.ceil(remaining))) if held else self._long_poll
                )
                wanted = min(source.max_receive, batch_size - len(held))
                received = await source.receive(wanted, wait)
                if not received and not held:
                    return held
                if received:
                    self.counters.polled_events += len(received)
                    held.extend(received)
                    processor.hold(received)
                    total_bytes += sum(r.size for r in received)
                    if len(received) >= source.max_receive:
                        self._full_receives += 1
                if len(held) >= batch_size or total_bytes >= cap:
                    return held
                if window <= 0 or deadline - anyio.current_time() <= 0:
                    return held
        return held  # stopped while receiving

    async def _gather_from_broker(
        self, processor: QueueBatchProcessor, held: list[Record]
    ) -> list[Record]:
        """Take one batch from a broker consumer's buffer: the window starts at the first message.

        The first receive waits up to the long poll for a message; later ones wait only what is
        left of the window, to the fraction of a second (the consumer's buffer has no whole-second
        unit). The batch ends at BatchSize, at the payload cap, or when the window ends.
        """
        source = self._source
        batch_size = self.mapping.batch_size
        window = self.mapping.batching_window
        cap = self.mapping.max_payload_bytes
        total_bytes = 0
        deadline = math.inf
        with self._cancelled_by_stop():
            while True:
                wait = self._long_poll if not held else max(0.0, deadline - anyio.current_time())
                received = await source.receive(
                    min(source.max_receive, batch_size - len(held)), wait
                )
                if not received and not held:
                    return held
                if received:
                    if not held:
                        deadline = anyio.current_time() + window
                    self.counters.polled_events += len(received)
                    held.extend(received)
                    processor.hold(received)
                    total_bytes += sum(r.size for r in received)
                if len(held) >= batch_size or total_bytes >= cap:
                    return held
                if anyio.current_time() >= deadline:
                    return held
        return held  # stopped while receiving

    async def _release_unprocessed(
        self, processor: QueueBatchProcessor, records: Sequence[Record]
    ) -> None:
        """Messages received but never handed over go straight back to the queue."""
        processor.release_all()
        if not records:
            return
        with anyio.CancelScope(shield=True):
            if self._info is not None and self._info.broker:
                await cast(BrokerQueueSource, self._source).release(records)
            else:
                await self._source.change_visibility(records, 0)
        self._log.info("released unprocessed messages", messages=len(records))
