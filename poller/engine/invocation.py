"""Handing a batch to the function: the target seam, the mapping's context, and one invocation.

Every processor (streams and queues) invokes the same way: a fresh request id, the FunctionTimeout,
a target error never escaping. What they need to do so, and to settle what comes back, is one
:class:`InvocationContext` per mapping, built by the runtime and shared by every runner and
processor of that mapping.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, cast, runtime_checkable

import anyio

from poller.config.resolved import ResolvedMapping
from poller.engine.discard import DiscardSink
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import Failed, Outcome, PartiallyFailed, Succeeded
from poller.engine.protocols import EventCodec
from poller.engine.state import IdempotencyStore
from poller.records import Batch, Record, TumblingWindow

__all__ = [
    "DEFAULT_FUNCTION",
    "FunctionIdentity",
    "Invocation",
    "InvocationContext",
    "InvocationTracer",
    "RecordFilter",
    "Target",
    "TimedTarget",
    "TraceSpan",
    "invoke",
]


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """The function a mapping invokes, as Lambda names it (the handler's ``context`` shows it)."""

    name: str = "poller"
    arn: str = "arn:aws:lambda:us-east-1:000000000000:function:poller"


#: The function of a mapping built without one (tests, benchmarks).
DEFAULT_FUNCTION = FunctionIdentity()


@dataclass(frozen=True, slots=True)
class Invocation:
    """Facts about one invocation that a target passes on to the handler (Lambda context)."""

    request_id: str
    #: Monotonic deadline (``anyio.current_time()`` clock) of this invocation.
    deadline: float
    function_name: str
    function_arn: str
    #: The X-Ray trace header the function gets (``Lambda-Runtime-Trace-Id``,
    #: ``_X_AMZN_TRACE_ID``): the invocation's span, or the trace an SQS message carried; None
    #: for a fresh one.
    trace_header: str | None = None


class TraceSpan(Protocol):
    """One invocation's span, opened by an :class:`InvocationTracer`."""

    #: What the function gets as its trace header (None: a fresh trace).
    header: str | None

    def end(self, outcome: Outcome) -> None:
        """Close the span with the invocation's outcome."""
        ...


class RecordFilter(Protocol):
    """A mapping's FilterCriteria (``poller.filtering``): records it refuses are settled without a
    hand-over and counted as FilteredOutEventCount."""

    def accepts(self, record: Record) -> bool:
        """Whether the record matches a filter (reaches the function)."""
        ...


class InvocationTracer(Protocol):
    """Opens a span per invocation (OpenTelemetry, when installed: ``poller.observability``)."""

    def begin(self, batch: Batch) -> TraceSpan:
        """The span of the invocation about to hand ``batch`` over."""
        ...


class Target(Protocol):
    """How a batch reaches user code. Returns the outcome; never raises for handler errors."""

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        """Hand the batch over and say how it went."""
        ...


@runtime_checkable
class TimedTarget(Protocol):
    """A target that starts the function's timeout itself, once an environment is free.

    Waiting for a free environment is back-pressure, not part of the invocation's time; so such
    a target gets the timeout and enforces it (and stops what overran it) instead of the caller.
    """

    async def invoke_timed(
        self, batch: Batch, invocation: Invocation, time_limit: float
    ) -> Outcome:
        """Hand the batch over, within ``time_limit`` seconds of an environment taking it."""
        ...


@dataclass(frozen=True, slots=True)
class InvocationContext:
    """What every runner and processor of one mapping shares to invoke and settle."""

    mapping: ResolvedMapping
    target: Target
    #: Renders events and on-failure batch infos, reads item identifiers back.
    codec: EventCodec
    counters: MappingCounters = field(default_factory=MappingCounters)
    #: Where discarded records go; None on a queue mapping without a destination (the queue's
    #: own redrive policy takes what keeps failing).
    sink: DiscardSink | None = None
    function: FunctionIdentity = DEFAULT_FUNCTION
    #: Idempotency records (used only when the mapping has ``Idempotency`` on).
    store: IdempotencyStore | None = None
    #: Epoch seconds (record age, discard timestamps, idempotency expiry).
    clock: Callable[[], float] = time.time
    #: A span per invocation, when tracing is on.
    tracer: InvocationTracer | None = None
    #: FilterCriteria; None when the mapping has none (every record reaches the function).
    filters: RecordFilter | None = None
    #: Whether the target starts the timeout itself (a :class:`TimedTarget`), known once.
    timed: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timed", isinstance(self.target, TimedTarget))

    @property
    def idempotency(self) -> IdempotencyStore | None:
        """The idempotency store when the mapping uses one, else None."""
        return self.store if self.mapping.idempotency else None


async def invoke(
    context: InvocationContext,
    partition: str,
    records: Sequence[Record],
    *,
    attempt: int,
    window: TumblingWindow | None = None,
) -> tuple[Outcome, str]:
    """Hand ``records`` to the target within FunctionTimeout; return the outcome and request id.

    ``window``: the tumbling window the invocation belongs to, when the mapping has one."""
    mapping = context.mapping
    counters = context.counters
    request_id = str(uuid.uuid4())
    batch = Batch(
        mapping=mapping.mapping_id,
        partition=partition,
        records=tuple(records),
        batch_id=request_id,
        attempt=attempt,
        window=window,
    )
    timeout = mapping.function_timeout
    invocation = Invocation(
        request_id=request_id,
        deadline=anyio.current_time() + timeout,
        function_name=context.function.name,
        function_arn=context.function.arn,
    )
    span = context.tracer.begin(batch) if context.tracer is not None else None
    if span is not None and span.header is not None:
        invocation = replace(invocation, trace_header=span.header)
    counters.invocations += 1
    counters.invoked_events += len(records)
    counters.concurrent_executions += 1
    started = time.perf_counter()
    outcome: Outcome = Failed("the invocation was stopped")
    try:
        outcome = await _hand_over(context, batch, invocation, timeout)
    finally:
        counters.concurrent_executions -= 1
        counters.observe_duration(time.perf_counter() - started)
        if span is not None:
            span.end(outcome)
    if isinstance(outcome, PartiallyFailed):
        # The function ran and answered (not an Error, as on Lambda); the records it named as
        # failed count as failed invoke events.
        counters.failed_invoke_events += len(outcome.failed)
    elif not isinstance(outcome, Succeeded):
        counters.errors += 1
        counters.failed_invoke_events += len(records)
    return outcome, request_id


async def _hand_over(
    context: InvocationContext, batch: Batch, invocation: Invocation, limit: float
) -> Outcome:
    """The target's outcome; an exception or the timeout is a failure, never an escape."""
    target = context.target
    if context.timed:
        try:
            return await cast(TimedTarget, target).invoke_timed(batch, invocation, limit)
        except Exception as error:  # a target bug must not kill the partition
            return Failed(f"{type(error).__name__}: {error}")
    outcome: Outcome | None = None
    with anyio.move_on_after(limit):
        try:
            outcome = await target.invoke(batch, invocation)
        except Exception as error:  # a target bug must not kill the partition
            outcome = Failed(f"{type(error).__name__}: {error}")
    return outcome or Failed(f"Task timed out after {limit:.2f} seconds")
