"""What the exporters (Prometheus, CloudWatch) read of a running mapping, at the moment they read.

Nothing is counted twice: the engine keeps plain integers in :class:`MappingCounters` on its hot
path, and exporters read them (and the runner's status) only when asked, a scrape or a publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poller.engine.metrics import MappingCounters
from poller.engine.protocols import MappingRunner

__all__ = ["MappingView", "Reading", "read"]


@dataclass(frozen=True, slots=True)
class MappingView:
    """One running mapping, with the names its metrics are labelled by."""

    mapping_id: str
    #: The function's name (``FunctionName``: a dimension in CloudWatch, a label in Prometheus).
    function: str
    #: The source kind ("kinesis", "sqs", "kafka", ...).
    source: str
    #: "stream" or "queue": which gauges apply.
    family: str
    runner: MappingRunner
    #: The worker holding this view's leases and partitions.
    worker: str

    @property
    def counters(self) -> MappingCounters:
        return self.runner.counters


@dataclass(frozen=True, slots=True)
class Reading:
    """One mapping's metrics at one moment, by catalog key."""

    view: MappingView
    #: Every count (AWS's and poller's), as ``metrics`` of the runner's status has them.
    counts: dict[str, float]
    #: The gauges; None where a gauge does not apply to this mapping's source.
    gauges: dict[str, float | None]


def read(view: MappingView) -> Reading:
    """Read a mapping's counters and status once."""
    status: dict[str, Any] = view.runner.status()
    metrics: dict[str, Any] = {**status.get("metrics", {}), **view.counters.snapshot()}
    partitions = status.get("partitions", {})
    stream = view.family == "stream"
    kafka = "SumOffsetLag" in metrics
    gauges: dict[str, float | None] = {
        "IteratorAge": float(metrics.get("IteratorAge", 0)) if stream and not kafka else None,
        "SumOffsetLag": float(metrics["SumOffsetLag"]) if kafka else None,
        "ConcurrentExecutions": float(view.counters.concurrent_executions),
        "PartitionsOwned": float(len(partitions)) if stream else None,
        "PartitionsBlocked": (
            float(sum(1 for p in partitions.values() if p.get("blocked"))) if stream else None
        ),
    }
    counts = {key: float(value) for key, value in metrics.items() if isinstance(value, int | float)}
    return Reading(view, counts, gauges)
