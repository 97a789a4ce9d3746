"""Running one batch to completion: invoke, then retry, bisect, expire or discard, by AWS's rules.

For a batch cut from a partition, :class:`BatchProcessor` keeps invoking until every record is
*settled*: succeeded, or discarded to the on-failure sink. The rules are the ones AWS documents for
stream event source mappings:

* ``MaximumRetryAttempts`` N: a failing batch is invoked N+1 times, then discarded with condition
  ``RetryAttemptsExhausted``. -1 retries forever (the partition stays blocked meanwhile).
* ``MaximumRecordAgeInSeconds``: records older than this are discarded before each invocation with
  condition ``RecordAgeExceeded`` (no responseContext when they were never invoked).
* ``BisectBatchOnFunctionError``: a failed batch is split in halves that are retried in order;
  splitting consumes no retry.
* A partial response settles the records before the lowest failed one and retries from there
  (with idempotency on, records the response did not name are remembered as succeeded and skipped).
* A single record above the payload cap is discarded with ``MaximumPayloadSizeExceeded``.

Discards are delivered before anything after them settles, and delivery is retried until it works:
a discarded batch is never dropped. When the worker stops, the processor returns without settling
what it has not finished; those records are read again on the next start.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog

from poller.engine.backoff import Backoff
from poller.engine.batching import CutBatch
from poller.engine.discard import (
    PAYLOAD_SIZE_EXCEEDED,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    Discard,
    ResponseContext,
    deliver_discard,
)
from poller.engine.invocation import InvocationContext, invoke
from poller.engine.outcome import Failed, Outcome, PartiallyFailed, Succeeded
from poller.errors import during
from poller.records import Record, TumblingWindow

__all__ = ["BatchProcessor", "Settle"]

#: Called when records are settled: ``settle(records, succeeded)``.
Settle = Callable[[Sequence[Record], bool], Awaitable[None]]


class WindowState(Protocol):
    """A shard's open tumbling window (:class:`~poller.engine.streams.windows.WindowKeeper`)."""

    def current(self) -> TumblingWindow:
        """The open window as the next invocation carries it."""
        ...

    def accept(self, state: Any) -> None:
        """Keep the state a successful invocation returned."""
        ...


@dataclass(slots=True)
class _Segment:
    """Records still to settle, with how often they were retried and invoked."""

    records: list[Record]
    retries: int = 0
    invocations: int = 0
    last_request_id: str | None = None
    last_response: ResponseContext | None = field(default=None)

    def halves(self) -> list[_Segment]:
        """The records split in two, in order; each half keeps the retry and invocation counts."""
        half = len(self.records) // 2
        return [
            dataclasses.replace(self, records=self.records[:half]),
            dataclasses.replace(self, records=self.records[half:]),
        ]


class BatchProcessor:
    """Runs cut batches of one lane of one partition under the mapping's retry policy."""

    def __init__(
        self,
        context: InvocationContext,
        partition: str,
        *,
        settle: Settle,
        stopping: anyio.Event,
        window: WindowState | None = None,
    ) -> None:
        assert context.sink is not None  # streams always have one (DroppingSink without)
        self._context = context
        self._mapping = mapping = context.mapping
        self._partition = partition
        self._sink = context.sink
        self._settle = settle
        self._stopping = stopping
        #: The shard's tumbling window, when the mapping has one: invocations carry it, and a
        #: successful one's state is kept before its records settle (the checkpoint holds it).
        self._window = window
        self._counters = context.counters
        self._idempotency = context.idempotency
        self._clock = context.clock
        self._backoff = Backoff(mapping.retry_backoff, mapping.retry_backoff_max)
        self._max_retries = mapping.maximum_retry_attempts
        self._max_age = mapping.maximum_record_age
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=mapping.mapping_id, shard=partition
        )

    @property
    def retrying(self) -> bool:
        """True while a failed batch is waiting for its next attempt (the lane is blocked)."""
        return self._retrying

    _retrying = False

    async def process(self, cut: CutBatch) -> bool:
        """Settle every record of ``cut``; False if the worker is stopping and some were left."""
        if cut.oversized:
            record = cut.records[0]
            self._log.error(
                "record above the payload cap discarded",
                position=record.position,
                size=record.size,
                cap=self._mapping.max_payload_bytes,
            )
            return await self._discard(cut.records, PAYLOAD_SIZE_EXCEEDED)
        queue: deque[_Segment] = deque([_Segment(cut.records)])
        while queue:
            if self._stopping.is_set():
                return False
            segment = queue[0]
            if self._idempotency is not None and not await self._skip_succeeded(segment):
                queue.popleft()
                continue
            if self._max_age >= 0 and not await self._expire(segment):
                if self._stopping.is_set() and segment.records:
                    return False
                queue.popleft()
                continue
            if not segment.records:
                queue.popleft()
                continue
            outcome = await self._invoke(segment)
            if self._window is not None and not isinstance(outcome, Failed):
                self._window.accept(outcome.state)
            if isinstance(outcome, Succeeded):
                await self._succeeded(segment.records)
                queue.popleft()
                continue
            if isinstance(outcome, PartiallyFailed):
                if not await self._partially_failed(segment, outcome):
                    return False
                if not segment.records:
                    queue.popleft()
                    continue
            else:
                segment.last_response = ResponseContext(function_error=outcome.function_error)
                self._log.warning(
                    "batch failed",
                    batch=segment.last_request_id,
                    records=len(segment.records),
                    reason=outcome.reason,
                    invocations=segment.invocations,
                )
                if self._mapping.bisect_on_error and len(segment.records) > 1:
                    queue.popleft()
                    halves = segment.halves()
                    queue.extendleft(reversed(halves))
                    self._log.info("batch bisected", sizes=tuple(len(h.records) for h in halves))
                    continue
                segment.retries += 1
            if 0 <= self._max_retries < segment.retries:
                if not await self._discard(segment.records, RETRY_ATTEMPTS_EXHAUSTED, segment):
                    return False
                queue.popleft()
                continue
            await self._wait(self._backoff.delay(segment.retries))
        return True

    async def _skip_succeeded(self, segment: _Segment) -> bool:
        """Drop records the idempotency store knows succeeded; False when none are left."""
        assert self._idempotency is not None
        positions = [r.position for r in segment.records]
        with during("reading idempotency records"):
            known = await self._idempotency.succeeded_among(
                self._mapping.mapping_id, self._partition, positions
            )
        if known:
            skipped = [r for r in segment.records if r.position in known]
            segment.records = [r for r in segment.records if r.position not in known]
            self._counters.idempotent_skipped_events += len(skipped)
            self._log.info("skipped records that already succeeded", records=len(skipped))
            await self._settle(skipped, True)
        return bool(segment.records)

    async def _expire(self, segment: _Segment) -> bool:
        """Discard records older than MaximumRecordAgeInSeconds; False when none are left."""
        oldest_allowed = self._clock() - self._max_age
        expired = [r for r in segment.records if r.arrival < oldest_allowed]
        if not expired:
            return True
        segment.records = [r for r in segment.records if r.arrival >= oldest_allowed]
        if not await self._discard(expired, RECORD_AGE_EXCEEDED, segment):
            segment.records = expired + segment.records
            return False
        return bool(segment.records)

    async def _invoke(self, segment: _Segment) -> Outcome:
        segment.invocations += 1
        window = self._window
        with during("invoking the function"):
            outcome, segment.last_request_id = await invoke(
                self._context,
                self._partition,
                segment.records,
                attempt=segment.invocations,
                window=None if window is None else window.current(),
            )
        return outcome

    async def _succeeded(self, records: Sequence[Record]) -> None:
        if self._idempotency is not None:
            with during("writing idempotency records"):
                await self._idempotency.remember_succeeded(
                    self._mapping.mapping_id,
                    self._partition,
                    [r.position for r in records],
                    self._clock() + self._mapping.idempotency_ttl,
                )
        await self._settle(records, True)

    async def _partially_failed(self, segment: _Segment, outcome: PartiallyFailed) -> bool:
        """Settle what succeeded, keep the rest in ``segment`` for a retry."""
        records = segment.records
        first = outcome.failed[0]
        failed = set(outcome.failed)
        segment.last_response = ResponseContext(function_error=None)
        self._log.warning(
            "batch partially failed",
            batch=segment.last_request_id,
            failed=len(failed),
            records=len(records),
            lowest_failed=records[first].position,
        )
        succeeded = list(records[:first])
        rest = records[first:]
        if self._idempotency is not None:
            # Remember every record the response did not name, so the retry skips them.
            succeeded.extend(r for i, r in enumerate(rest, first) if i not in failed)
            rest = [r for i, r in enumerate(rest, first) if i in failed]
        if succeeded:
            await self._succeeded(succeeded)
        segment.records = list(rest)
        segment.retries += 1
        return True

    async def _discard(
        self, records: Sequence[Record], condition: str, segment: _Segment | None = None
    ) -> bool:
        """Deliver an on-failure record (retrying until it works), then settle the records.

        ``segment`` is what the records were invoked as; None when they never were (a record
        above the payload cap). Records never invoked carry no response context (AWS's rule).
        """
        invocations = segment.invocations if segment is not None else 0
        request_id = segment.last_request_id if segment is not None else None
        response = segment.last_response if segment is not None and invocations else None
        discard = Discard(
            mapping_id=self._mapping.mapping_id,
            partition=self._partition,
            records=tuple(records),
            condition=condition,
            invoke_count=max(invocations, 1),
            request_id=request_id or str(uuid.uuid4()),
            response=response,
            timestamp=self._clock(),
        )
        delivered = await deliver_discard(
            self._sink,
            discard,
            stopping=self._stopping,
            counters=self._counters,
            log=self._log,
        )
        if not delivered:
            return False
        await self._settle(records, False)
        return True

    async def _wait(self, seconds: float) -> None:
        """Sleep, waking early when the worker stops."""
        if seconds <= 0:
            return
        self._retrying = True
        try:
            with anyio.move_on_after(seconds):
                await self._stopping.wait()
        finally:
            self._retrying = False
