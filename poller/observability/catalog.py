"""Every metric poller exposes: its Prometheus name, the AWS metric it mirrors, and what it counts.

One table serves ``/metrics`` (Prometheus), CloudWatch's PutMetricData, README's table and the
Grafana dashboard's test, so a name cannot drift between them. Prometheus names are ``poller_``
plus AWS's name in snake case (counters end in ``_total``, as Prometheus names them); metrics
AWS does not have are poller's own and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRICS", "METRIC_NAMES", "MetricSpec", "per_mapping", "per_worker"]

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric."""

    #: The Prometheus family name (a counter's samples add ``_total``).
    name: str
    kind: Kind
    #: The key in a mapping's ``metrics`` status (AWS's metric name where AWS has one).
    key: str
    #: What it counts, in a line (the Prometheus HELP text and README's table).
    meaning: str
    #: AWS's metric of that name, or None for poller's own.
    aws_name: str | None
    #: CloudWatch unit of the AWS metric.
    unit: str = "Count"
    #: "mapping": labelled by mapping, function and source; "worker": by mapping only.
    scope: Literal["mapping", "worker"] = "mapping"
    #: The MetricsConfig group that turns it on (AWS's EventCount, ErrorCount, KafkaMetrics);
    #: None for metrics always exported (the function's own, and poller's).
    group: str | None = None

    def enabled(self, groups: frozenset[str] | None) -> bool:
        """Whether a mapping with MetricsConfig ``groups`` (None: unset) exports it."""
        return groups is None or self.group is None or self.group in groups


#: The event counts AWS exports when MetricsConfig has EventCount, and Kafka's ErrorCount group.
_GROUPS = {
    "PolledEventCount": "EventCount",
    "FilteredOutEventCount": "EventCount",
    "InvokedEventCount": "EventCount",
    "FailedInvokeEventCount": "EventCount",
    "DroppedEventCount": "EventCount",
    "OnFailureDestinationDeliveredEventCount": "EventCount",
    "DeletedEventCount": "EventCount",
    "CommittedEventCount": "EventCount",
    "PollingErrorCount": "ErrorCount",
    "CommitErrorCount": "ErrorCount",
}


def _counter(name: str, key: str, meaning: str, *, aws: bool = True) -> MetricSpec:
    return MetricSpec(name, "counter", key, meaning, key if aws else None, group=_GROUPS.get(key))


METRICS: tuple[MetricSpec, ...] = (
    _counter("poller_polled_events", "PolledEventCount", "records read from the source"),
    _counter(
        "poller_filtered_out_events",
        "FilteredOutEventCount",
        "records that matched no filter (settled without a hand-over)",
    ),
    _counter(
        "poller_invoked_events",
        "InvokedEventCount",
        "records handed to the function (each attempt counts again)",
    ),
    _counter(
        "poller_failed_invoke_events",
        "FailedInvokeEventCount",
        "records of invocations that failed (error, timeout, crash) and records a partial "
        "batch response named as failed",
    ),
    _counter(
        "poller_dropped_events",
        "DroppedEventCount",
        "records discarded with no on-failure destination (retries or record age exhausted)",
    ),
    _counter(
        "poller_on_failure_destination_delivered_events",
        "OnFailureDestinationDeliveredEventCount",
        "records recorded in the on-failure destination",
    ),
    _counter(
        "poller_deleted_events",
        "DeletedEventCount",
        "queue messages deleted after they succeeded (or reached a destination)",
    ),
    _counter("poller_invocations", "Invocations", "invocations of the function"),
    _counter(
        "poller_errors",
        "Errors",
        "invocations that failed: an error, a timeout or a crash (a partial response is not one)",
    ),
    _counter(
        "poller_throttles",
        "Throttles",
        "invocations that waited because every environment of the function was busy",
    ),
    _counter(
        "poller_destination_delivery_failures",
        "DestinationDeliveryFailures",
        "failed attempts to write to the on-failure destination",
    ),
    _counter(
        "poller_polling_errors",
        "PollingErrorCount",
        "failed reads from the source (retried; AWS counts it for Kafka)",
    ),
    _counter(
        "poller_committed_events",
        "CommittedEventCount",
        "records whose offsets were committed to the consumer group (Kafka)",
    ),
    _counter(
        "poller_commit_errors",
        "CommitErrorCount",
        "offset commits that failed (Kafka; retried with the next commit)",
    ),
    _counter(
        "poller_idempotent_skipped_events",
        "IdempotentSkippedEventCount",
        "records not handed over because the store knew they had succeeded",
        aws=False,
    ),
    _counter(
        "poller_delete_errors",
        "DeleteErrorCount",
        "queue deletes that failed (the messages come back)",
        aws=False,
    ),
    _counter(
        "poller_trimmed_ranges",
        "TrimmedRangeCount",
        "times the source had trimmed records before they were read",
        aws=False,
    ),
    MetricSpec(
        "poller_duration_seconds",
        "histogram",
        "Duration",
        "time from hand-over to the function's outcome, per invocation",
        "Duration",
        unit="Milliseconds",
    ),
    MetricSpec(
        "poller_iterator_age_milliseconds",
        "gauge",
        "IteratorAge",
        "age of the last record read, as the stream reports it (streams)",
        "IteratorAge",
        unit="Milliseconds",
    ),
    MetricSpec(
        "poller_offset_lag",
        "gauge",
        "SumOffsetLag",
        "records between the group's position and the end of each partition, summed (Kafka)",
        "OffsetLag",
    ),
    MetricSpec(
        "poller_concurrent_executions",
        "gauge",
        "ConcurrentExecutions",
        "invocations in flight now",
        "ConcurrentExecutions",
    ),
    MetricSpec(
        "poller_partitions_owned",
        "gauge",
        "PartitionsOwned",
        "partitions (shards, Kafka partitions) this worker reads now",
        None,
        scope="worker",
    ),
    MetricSpec(
        "poller_partitions_blocked",
        "gauge",
        "PartitionsBlocked",
        "partitions this worker holds back while a failing batch is retried",
        None,
        scope="worker",
    ),
)

#: The Prometheus family names, for tests and the dashboard's check.
METRIC_NAMES: frozenset[str] = frozenset(spec.name for spec in METRICS)


def per_mapping() -> tuple[MetricSpec, ...]:
    """The metrics labelled by mapping, function and source."""
    return tuple(spec for spec in METRICS if spec.scope == "mapping")


def per_worker() -> tuple[MetricSpec, ...]:
    """The metrics of this worker's share of a mapping (labelled by mapping and worker)."""
    return tuple(spec for spec in METRICS if spec.scope == "worker")
