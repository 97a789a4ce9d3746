"""Per-mapping counters, named after AWS's ESM metrics (PolledEventCount, ...).

Plain integers in a slotted object: incrementing one is the cheapest thing the hot path can do.
``poller.observability`` reads them for logs and exposition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["MappingCounters"]


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
        }
