"""The metric catalog is the one list: README's table and the collector agree with it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from poller.engine.metrics import MappingCounters
from poller.observability.catalog import METRICS
from poller.observability.prometheus import exposition
from poller.observability.views import MappingView

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_metric_with_its_aws_name() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| ")]
    for spec in METRICS:
        name = spec.name + ("_total" if spec.kind == "counter" else "")
        row = next((r for r in rows if f"| `{name}` |" in r), None)
        assert row is not None, f"README's metric table lacks {name}"
        aws = f"`{spec.aws_name}`" if spec.aws_name else "(poller's own)"
        assert row.startswith(f"| {aws} |"), row


class _Runner:
    """Just what the collector reads of a running mapping."""

    def __init__(self, groups: frozenset[str] | None = None) -> None:
        self.mapping = SimpleNamespace(metric_groups=groups)
        self.counters = MappingCounters(polled_events=7, invocations=2, concurrent_executions=1)
        self.counters.observe_duration(0.003)
        self.counters.observe_duration(2.0)

    def status(self) -> dict[str, object]:
        return {"partitions": {"s-0": {"blocked": True}, "s-1": {"blocked": False}}}


def test_the_exposition_has_every_family_with_its_labels() -> None:
    view = MappingView("m-1", "fn", "kinesis", "stream", _Runner(), "w-1")  # type: ignore[arg-type]
    text = exposition(lambda: [view])().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for spec in METRICS:
        if spec.key in ("SumOffsetLag",):  # Kafka mappings only
            assert spec.name not in families or not families[spec.name].samples
            continue
        assert spec.name in families, spec.name
    samples = {s.name: s for f in families.values() for s in f.samples if not s.labels.get("le")}
    assert samples["poller_polled_events_total"].value == 7
    assert samples["poller_polled_events_total"].labels == {
        "mapping": "m-1",
        "function": "fn",
        "source": "kinesis",
    }
    assert samples["poller_concurrent_executions"].value == 1
    assert samples["poller_duration_seconds_count"].value == 2
    assert abs(samples["poller_duration_seconds_sum"].value - 2.003) < 1e-9
    assert samples["poller_partitions_owned"].labels == {"mapping": "m-1", "worker": "w-1"}
    assert samples["poller_partitions_owned"].value == 2
    assert samples["poller_partitions_blocked"].value == 1
    buckets = {
        s.labels["le"]: s.value
        for s in families["poller_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.001"] == 0 and buckets["0.005"] == 1 and buckets["2.5"] == 2
    assert buckets["+Inf"] == 2


def test_metrics_config_chooses_the_groups_of_event_counts_exported() -> None:
    def families(groups: frozenset[str] | None) -> set[str]:
        view = MappingView("m", "fn", "sqs", "queue", _Runner(groups), "w")  # type: ignore[arg-type]
        text = exposition(lambda: [view])().decode()
        return {
            sample.name
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    everything = families(None)  # no MetricsConfig: poller exports every group
    assert "poller_polled_events_total" in everything
    only_events = families(frozenset({"EventCount"}))
    assert "poller_polled_events_total" in only_events
    assert "poller_polling_errors_total" not in only_events  # Kafka's ErrorCount group
    none = families(frozenset())  # MetricsConfig with no groups: the function's metrics only
    assert "poller_polled_events_total" not in none
    assert {"poller_invocations_total", "poller_errors_total", "poller_throttles_total"} <= none
