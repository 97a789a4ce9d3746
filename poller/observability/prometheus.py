"""``/metrics``: every metric of the catalog in the Prometheus text format.

A custom collector of ``prometheus-client`` reads the mappings at scrape time (no second set of
counters to keep in step), and ``generate_latest`` writes the exposition: names, HELP, TYPE,
label escaping and the histogram's buckets are the library's, not ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from poller.engine.metrics import DURATION_BUCKETS
from poller.observability.catalog import MetricSpec, per_mapping, per_worker
from poller.observability.views import MappingView, Reading, read

__all__ = ["CONTENT_TYPE", "MappingCollector", "exposition"]

#: The Prometheus text format's content type (version 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_MAPPING = ["mapping", "function", "source"]
_WORKER = ["mapping", "worker"]


class MappingCollector(Collector):
    """Builds every family from the mappings ``views()`` returns, at each scrape."""

    def __init__(self, views: Callable[[], Sequence[MappingView]]) -> None:
        self._views = views

    def collect(self) -> Iterator[Metric]:
        readings = [read(view) for view in self._views()]
        for spec in per_mapping():
            if spec.kind == "counter":
                counter = CounterMetricFamily(spec.name, spec.meaning, labels=_MAPPING)
                for reading in readings:
                    if not spec.enabled(reading.view.runner.mapping.metric_groups):
                        continue  # the mapping's MetricsConfig leaves this group out
                    value = reading.counts.get(spec.key, 0.0)
                    counter.add_metric(_labels(reading.view, _MAPPING), value)
                yield counter
            elif spec.kind == "histogram":
                yield self._durations(spec, [reading.view for reading in readings])
            else:
                yield _gauge(spec, readings, _MAPPING)
        for spec in per_worker():
            yield _gauge(spec, readings, _WORKER)

    def _durations(self, spec: MetricSpec, views: list[MappingView]) -> Metric:
        family = HistogramMetricFamily(spec.name, spec.meaning, labels=_MAPPING)
        for view in views:
            counters = view.counters
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*DURATION_BUCKETS, float("inf")), counters.duration_buckets, strict=True
            ):
                cumulative += count
                buckets.append((_bound(bound), float(cumulative)))
            family.add_metric(_labels(view, _MAPPING), buckets, sum_value=counters.duration_sum)
        return family


def _labels(view: MappingView, names: list[str]) -> list[str]:
    values = {
        "mapping": view.mapping_id,
        "function": view.function,
        "source": view.source,
        "worker": view.worker,
    }
    return [values[name] for name in names]


def _gauge(spec: MetricSpec, readings: list[Reading], labels: list[str]) -> Metric:
    family = GaugeMetricFamily(spec.name, spec.meaning, labels=labels)
    for reading in readings:
        value = reading.gauges.get(spec.key)
        if value is not None:
            family.add_metric(_labels(reading.view, labels), value)
    return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def exposition(views: Callable[[], Sequence[MappingView]]) -> Callable[[], bytes]:
    """A function that renders ``/metrics`` for the mappings ``views()`` returns."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MappingCollector(views))
    return lambda: generate_latest(registry)
