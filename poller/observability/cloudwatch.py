"""``[metrics] cloudwatch_namespace``: the catalog's metrics in CloudWatch, as Lambda publishes its
own: once a period, per mapping, with the dimensions ``FunctionName`` and
``EventSourceMappingUUID``.

Counts are published as what happened since the last publish that landed: a PutMetricData that
fails is logged and its counts go out with the next one, so none is lost. Gauges are their value
at publish time. Durations go out as values and counts (CloudWatch's own histogram form) at the
upper bound of each bucket of the duration histogram, in milliseconds: percentiles in CloudWatch
are as precise as those buckets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import structlog

from poller.engine.metrics import DURATION_BUCKETS
from poller.observability.catalog import per_mapping
from poller.observability.views import MappingView, read

__all__ = ["CloudWatchPublisher"]

_log = structlog.get_logger("poller.metrics")

#: PutMetricData takes at most 1,000 metrics a call; fewer keep each request small.
_PER_CALL = 500
#: The representative value (ms) of the histogram's last, unbounded bucket.
_LONGEST_MS = DURATION_BUCKETS[-1] * 1000


class CloudWatchPublisher:
    """Publishes every ``interval`` seconds, and once more when stopped."""

    def __init__(
        self,
        client: Callable[[], Awaitable[Any]],
        namespace: str,
        views: Callable[[], Sequence[MappingView]],
        *,
        interval: float = 60.0,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._views = views
        self._interval = interval
        #: What was last published per (mapping, metric): counts and histogram buckets.
        self._published: dict[tuple[str, str], float] = {}
        self._published_buckets: dict[str, list[int]] = {}

    async def run(self) -> None:
        """Publish until cancelled; the last period is published on the way out."""
        try:
            while True:
                await anyio.sleep(self._interval)
                await self.publish()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.publish()

    async def publish(self) -> int:
        """Send what changed since the last publish; the number of metric data sent."""
        data, pending_counts, pending_buckets = self._metric_data()
        if not data:
            return 0
        try:
            client = await self._client()
            for start in range(0, len(data), _PER_CALL):
                await client.put_metric_data(
                    Namespace=self._namespace, MetricData=data[start : start + _PER_CALL]
                )
        except Exception as error:  # the next publish carries these counts
            _log.warning(
                "cannot publish metrics to CloudWatch; retrying with the next period",
                namespace=self._namespace,
                error=f"{type(error).__name__}: {error}",
            )
            return 0
        self._published.update(pending_counts)
        self._published_buckets.update(pending_buckets)
        return len(data)

    def _metric_data(
        self,
    ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], float], dict[str, list[int]]]:
        now = time.time()
        data: list[dict[str, Any]] = []
        counts: dict[tuple[str, str], float] = {}
        buckets: dict[str, list[int]] = {}
        for view in self._views():
            reading = read(view)
            dimensions = [
                {"Name": "FunctionName", "Value": view.function},
                {"Name": "EventSourceMappingUUID", "Value": view.mapping_id},
            ]
            groups = view.runner.mapping.metric_groups
            for spec in per_mapping():
                if not spec.enabled(groups):
                    continue  # the mapping's MetricsConfig leaves this group out
                name = spec.aws_name or spec.key
                if spec.kind == "counter":
                    total = reading.counts.get(spec.key, 0.0)
                    delta = total - self._published.get((view.mapping_id, spec.key), 0.0)
                    counts[(view.mapping_id, spec.key)] = total
                    if delta > 0:
                        data.append(_datum(name, dimensions, now, Value=delta, Unit="Count"))
                elif spec.kind == "gauge":
                    value = reading.gauges.get(spec.key)
                    if value is not None:
                        data.append(_datum(name, dimensions, now, Value=value, Unit=spec.unit))
                else:
                    current = list(view.counters.duration_buckets)
                    before = self._published_buckets.get(view.mapping_id, [0] * len(current))
                    buckets[view.mapping_id] = current
                    values, weights = [], []
                    for bound, now_count, then_count in zip(
                        (*DURATION_BUCKETS, None), current, before, strict=True
                    ):
                        if now_count > then_count:
                            values.append(_LONGEST_MS if bound is None else bound * 1000)
                            weights.append(float(now_count - then_count))
                    if values:
                        data.append(
                            _datum(
                                name, dimensions, now, Values=values, Counts=weights, Unit=spec.unit
                            )
                        )
        return data, counts, buckets


def _datum(name: str, dimensions: list[dict[str, str]], at: float, **fields: Any) -> dict[str, Any]:
    return {"MetricName": name, "Dimensions": dimensions, "Timestamp": at, **fields}
