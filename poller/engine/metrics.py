"""Per-mapping counters, named after AWS's ESM metrics (PolledEventCount, ...).

Plain integers in a slotted object: incrementing one is the cheapest thing the hot path can do.
``poller.observability`` reads them for logs and exposition.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

__all__ = ["DURATION_BUCKETS", "MappingCounters"]

#: Upper bounds (seconds) of the invocation duration histogram: from a fast in-thread handler
#: to Lambda's longest timeout (900 s).
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)


@dataclass(slots=True)
class MappingCounters:
    """What happened in one mapping since it started."""

    polled_events: int = 0
    invoked_events: int = 0
    failed_invoke_events: int = 0
    invocations: int = 0
    errors: int = 0
    #: Records discarded with no on-failure destination (logged, then dropped, as AWS does).
    dropped_events: int = 0
    #: Records delivered to the on-failure destination.
    on_failure_delivered_events: int = 0
    on_failure_delivery_errors: int = 0
    #: Records not handed over because the idempotency store knew they had succeeded.
    idempotent_skipped_events: int = 0
    polling_errors: int = 0
    #: Queue messages deleted after they succeeded (or were recorded in a destination).
    deleted_events: int = 0
    #: Queue messages whose delete failed (they will be delivered again).
    delete_errors: int = 0
    #: Invocations that found every environment of the function busy and waited for one.
    throttles: int = 0
    #: Highest MillisBehindLatest seen on the last read of any partition (IteratorAge).
    iterator_age_ms: int = 0
    #: Records that matched no filter of FilterCriteria (never handed over; settled as done).
    filtered_out_events: int = 0
    #: Invocations in flight now (a gauge: ConcurrentExecutions).
    concurrent_executions: int = 0
    #: Invocation durations: counts per bucket of :data:`DURATION_BUCKETS` (the last one is
    #: "longer"), and their sum in seconds.
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0

    def observe_duration(self, seconds: float) -> None:
        """Count one invocation's duration (from hand-over to outcome)."""
        self.duration_buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def snapshot(self) -> dict[str, int]:
        """A copy of the counters, with AWS metric names."""
        values = asdict(self)
        return {
            "PolledEventCount": values["polled_events"],
            "InvokedEventCount": values["invoked_events"],
            "FailedInvokeEventCount": values["failed_invoke_events"],
            "Invocations": values["invocations"],
            "Errors": values["errors"],
            "DroppedEventCount": values["dropped_events"],
            "OnFailureDestinationDeliveredEventCount": values["on_failure_delivered_events"],
            "DestinationDeliveryFailures": values["on_failure_delivery_errors"],
            "IdempotentSkippedEventCount": values["idempotent_skipped_events"],
            "PollingErrorCount": values["polling_errors"],
            "DeletedEventCount": values["deleted_events"],
            "DeleteErrorCount": values["delete_errors"],
            "Throttles": values["throttles"],
            "IteratorAge": values["iterator_age_ms"],
            "FilteredOutEventCount": values["filtered_out_events"],
            "ConcurrentExecutions": values["concurrent_executions"],
        }
