"""The two steps every batch processor shares: invoking a target, and delivering a discard.

Both the stream processor and the queue processor hand batches over the same way (a fresh
request id, the FunctionTimeout, a target error never escaping) and record what they give up on the
same way (delivery retried until it works, the partition or poller blocked meanwhile).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import anyio
from structlog.typing import FilteringBoundLogger

from poller.config import ResolvedMapping
from poller.engine.backoff import Backoff
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import Failed, Outcome, Succeeded
from poller.engine.protocols import Discard, DiscardSink, Invocation, Target
from poller.records import Batch, Record

__all__ = ["deliver_discard", "invoke"]

_DELIVERY_BACKOFF = Backoff(0.5, 30.0)


async def invoke(
    target: Target,
    mapping: ResolvedMapping,
    partition: str,
    records: Sequence[Record],
    *,
    attempt: int,
    function_name: str,
    function_arn: str,
    counters: MappingCounters,
) -> tuple[Outcome, str]:
    """Hand ``records`` to the target within FunctionTimeout; return the outcome and request id."""
    request_id = str(uuid.uuid4())
    batch = Batch(
        mapping=mapping.mapping_id,
        partition=partition,
        records=tuple(records),
        batch_id=request_id,
        attempt=attempt,
    )
    timeout = mapping.function_timeout
    invocation = Invocation(
        request_id=request_id,
        deadline=anyio.current_time() + timeout,
        function_name=function_name,
        function_arn=function_arn,
    )
    counters.invocations += 1
    counters.invoked_events += len(records)
    outcome: Outcome
    with anyio.move_on_after(timeout) as scope:
        try:
            outcome = await target.invoke(batch, invocation)
        except Exception as error:  # a target bug must not kill the partition
            outcome = Failed(f"{type(error).__name__}: {error}")
    if scope.cancelled_caught:
        outcome = Failed(f"Task timed out after {timeout:.2f} seconds")
    if not isinstance(outcome, Succeeded):
        counters.errors += 1
        counters.failed_invoke_events += len(records)
    return outcome, request_id


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
    attempt = 0
    while True:
        try:
            await sink.deliver(discard)
            return True
        except Exception as error:  # any failure: block and retry, never drop the record
            attempt += 1
            counters.on_failure_delivery_errors += 1
            delay = backoff.delay(attempt)
            log.error(
                "on-failure delivery failed; blocked until it succeeds",
                error=str(error),
                attempt=attempt,
                retry_in=round(delay, 2),
            )
            with anyio.move_on_after(delay):
                await stopping.wait()
            if stopping.is_set():
                return False
