"""Records the engine gave up on: the :class:`Discard`, the sink seam, and delivering it.

A discard becomes one on-failure record. The engine hands it to a :class:`DiscardSink` (the
mapping's destination, or :class:`DroppingSink` when it has none, as AWS drops them) and retries a
failed delivery until it works, blocking the partition or poller meanwhile: a discarded record is
never dropped unrecorded by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog
from structlog.typing import FilteringBoundLogger

from poller.engine.backoff import Backoff
from poller.engine.failures import RepeatedFailures
from poller.engine.metrics import MappingCounters
from poller.records import Record

__all__ = [
    "PAYLOAD_SIZE_EXCEEDED",
    "RECORD_AGE_EXCEEDED",
    "RETRY_ATTEMPTS_EXHAUSTED",
    "CountingSink",
    "Discard",
    "DiscardSink",
    "DroppingSink",
    "ResponseContext",
    "deliver_discard",
]

_DELIVERY_BACKOFF = Backoff(0.5, 30.0)

#: The ``condition`` of an on-failure record: why the records were given up on.
RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
PAYLOAD_SIZE_EXCEEDED = "MaximumPayloadSizeExceeded"


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """The ``responseContext`` of an on-failure record."""

    status_code: int = 200
    executed_version: str = "$LATEST"
    function_error: str | None = "Unhandled"


@dataclass(frozen=True, slots=True)
class Discard:
    """Records the engine gave up on, and why: becomes one on-failure record."""

    mapping_id: str
    partition: str
    records: tuple[Record, ...]
    #: RetryAttemptsExhausted | RecordAgeExceeded | MaximumPayloadSizeExceeded
    condition: str
    #: How many times these records were handed to the target (approximateInvokeCount).
    invoke_count: int
    #: The last invocation's request id, or a fresh one when never invoked.
    request_id: str
    #: None when the records were never invoked (RecordAgeExceeded before ingestion).
    response: ResponseContext | None
    #: Epoch seconds when the records were discarded.
    timestamp: float
    #: The last event handed over (the S3 destination stores it as ``payload``).
    payload: Mapping[str, Any] | None = field(default=None, repr=False)


class DiscardSink(Protocol):
    """Takes discarded records somewhere durable. Raises when it could not; the engine retries."""

    async def deliver(self, discard: Discard) -> None:
        """Record the discard (send the on-failure record) or raise."""
        ...


class DroppingSink:
    """No on-failure destination: discarded records are logged (with positions) and dropped.

    This is AWS's behaviour without a destination; the log line is the only record of them.
    """

    def __init__(self, counters: MappingCounters) -> None:
        self._counters = counters
        self._log = structlog.get_logger("poller.engine").bind(sink="none")

    async def deliver(self, discard: Discard) -> None:
        self._counters.dropped_events += len(discard.records)
        self._log.warning(
            "discarded records dropped (no on-failure destination configured)",
            mapping=discard.mapping_id,
            shard=discard.partition,
            condition=discard.condition,
            first=discard.records[0].position,
            last=discard.records[-1].position,
            records=len(discard.records),
        )


class CountingSink:
    """Counts what reached the on-failure destination."""

    def __init__(self, inner: DiscardSink, counters: MappingCounters) -> None:
        self._inner = inner
        self._counters = counters

    async def deliver(self, discard: Discard) -> None:
        await self._inner.deliver(discard)
        self._counters.on_failure_delivered_events += len(discard.records)


async def deliver_discard(
    sink: DiscardSink,
    discard: Discard,
    *,
    stopping: anyio.Event,
    counters: MappingCounters,
    log: FilteringBoundLogger,
    backoff: Backoff = _DELIVERY_BACKOFF,
) -> bool:
    """Deliver ``discard``, retrying until it works; False only if the worker stops first."""
    records = discard.records
    log.warning(
        "records discarded",
        batch=discard.request_id,
        condition=discard.condition,
        records=len(records),
        first=records[0].position,
        last=records[-1].position,
        invocations=discard.invoke_count,
    )
    failures = RepeatedFailures(log)  # one line per cause, not per attempt
    while True:
        try:
            await sink.deliver(discard)
            failures.recovered("on-failure record delivered", batch=discard.request_id)
            return True
        except Exception as error:  # any failure: block and retry, never drop the record
            counters.on_failure_delivery_errors += 1
            delay = backoff.delay(failures.attempts + 1)
            failures.failed(
                "on-failure delivery failed; blocked until it succeeds",
                error,
                operation="sending to a destination",
                batch=discard.request_id,
                retry_in=round(delay, 2),
            )
            with anyio.move_on_after(delay):
                await stopping.wait()
            if stopping.is_set():
                return False
