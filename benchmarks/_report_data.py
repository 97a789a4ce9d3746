"""The benchmark result files, read into the few shapes the report draws and tabulates.

Each script writes its own JSON shape (``benchmarks/results/<name>.json``); this module knows
them all, so the charts and the Markdown only ever see :class:`Bar`, :class:`Series` and
:class:`LatencyBox`. Nothing here imports matplotlib: the tables can be written without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Bar",
    "LatencyBox",
    "Panel",
    "ResultFile",
    "Series",
    "batch_size_panels",
    "engine_handler_panel",
    "environment_panel",
    "latency_boxes",
    "load_results",
    "source_panels",
    "spread_text",
    "sqs_concurrency_series",
]


@dataclass(frozen=True, slots=True)
class ResultFile:
    """One script's result file: what it measured, when, where, and with which parameters."""

    name: str
    path: Path
    document: Mapping[str, Any]

    @property
    def machine(self) -> Mapping[str, Any]:
        return self.document.get("machine") or {}

    @property
    def date(self) -> datetime | None:
        text = self.machine.get("date")
        return datetime.fromisoformat(text) if text else None

    @property
    def quick(self) -> bool:
        config = self.document.get("config") or {}
        return bool(self.document.get("quick") or config.get("quick"))

    @property
    def repeats(self) -> int | None:
        config = self.document.get("config") or {}
        value = self.document.get("repeats", config.get("repeats"))
        return int(value) if isinstance(value, int | float) else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The scalar settings the script recorded (sizes, batch sizes, shards...)."""
        found: dict[str, Any] = {}
        config = self.document.get("config") or {}
        for source in (self.document, config):
            for key, value in source.items():
                if key in _NOT_PARAMETERS or key.startswith("aim") or key.endswith("_s"):
                    continue
                if isinstance(value, str) and len(value) > 40:
                    continue
                if isinstance(value, str | int | float | bool) or (
                    isinstance(value, list) and all(isinstance(v, int | float | str) for v in value)
                ):
                    found[key] = value
        return found


#: Keys of a result file that are identities or outcomes, not settings.
_NOT_PARAMETERS = frozenset(
    {
        "benchmark",
        "machine",
        "arguments",
        "quick",
        "table",
        "stream",
        "topic",
        "repeats",
        "note",
        "notes",
        "mean_body_bytes",
        "cpu_handler_iterations",
    }
)


def load_results(directory: Path) -> dict[str, ResultFile]:
    """Every ``<name>.json`` result file in ``directory`` (the run summary left out), by name."""
    found: dict[str, ResultFile] = {}
    for path in sorted(directory.glob("*.json")):
        if path.stem == "run":
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            found[path.stem] = ResultFile(path.stem, path, document)
    return found


@dataclass(frozen=True, slots=True)
class Bar:
    """One measured variant: its median and every run it is the median of."""

    label: str
    median: float
    runs: tuple[float, ...] = ()
    #: ``"raw"`` for a baseline, ``"poller"`` for what is compared with it.
    kind: str = "poller"
    ratio: float | None = None

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.runs), max(self.runs)) if self.runs else (self.median, self.median)


@dataclass(frozen=True, slots=True)
class Panel:
    """Bars that share a unit and a baseline (one source, one broker)."""

    title: str
    script: str
    unit: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Series:
    """Medians against an x value (BatchSize, concurrency), with each point's runs."""

    label: str
    script: str
    unit: str
    points: tuple[tuple[float, float, tuple[float, ...]], ...]
    kind: str = "poller"


@dataclass(frozen=True, slots=True)
class LatencyBox:
    """The latency samples of one source, variant and regime, with its aim and percentiles."""

    source: str
    variant: str
    regime: str
    samples_ms: tuple[float, ...]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    aim_ms: float | None
    meets_aim: bool | None
    pace: Any = None
    records: Any = None
    bound: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _runs(row: Mapping[str, Any], *keys: str) -> tuple[float, ...]:
    for key in keys:
        values = row.get(key)
        if isinstance(values, list) and values:
            return tuple(float(v) for v in values)
    return ()


def _stream_panel(result: ResultFile, title: str) -> Panel | None:
    """kinesis.py and dynamodb_streams.py: the raw loop and poller at each BatchSize."""
    bars = []
    for row in result.document.get("results", []):
        is_raw = row.get("batch_size") is None
        bars.append(
            Bar(
                "raw loop" if is_raw else f"poller, BatchSize {row['batch_size']}",
                float(row["records_per_s"]),
                _runs(row, "runs_records_per_s"),
                "raw" if is_raw else "poller",
                None if is_raw else row.get("ratio_to_raw"),
            )
        )
    return Panel(title, result.name, "records/s", tuple(bars)) if bars else None


def _sqs_panel(result: ResultFile) -> Panel | None:
    bars = []
    for row in result.document.get("results", []):
        if row.get("variant") not in ("raw loop", "poller") or row.get("concurrency", 0) < 2:
            continue
        is_raw = row["variant"] == "raw loop"
        bars.append(
            Bar(
                f"{'raw' if is_raw else 'poller'} x{row['concurrency']}",
                float(row["messages_per_s"]),
                _runs(row, "runs_messages_per_s"),
                "raw" if is_raw else "poller",
                None if is_raw else row.get("ratio_to_raw"),
            )
        )
    bars.sort(key=lambda b: (int(b.label.split("x")[-1]), b.kind != "raw"))
    return Panel("SQS (20 ms handler)", result.name, "messages/s", tuple(bars)) if bars else None


def _kafka_panel(result: ResultFile) -> Panel | None:
    bars = []
    for row in result.document.get("results", []):
        is_raw = row.get("key") == "raw"
        label = "raw loop" if is_raw else row.get("variant", row.get("key", "poller"))
        label = label.replace("poller Worker, ", "poller, ")
        bars.append(
            Bar(
                label,
                float(row["records_per_s_median"]),
                _runs(row, "runs_records_per_s"),
                "raw" if is_raw else "poller",
                None if is_raw else row.get("ratio_to_raw_median"),
            )
        )
    return Panel("Kafka (tansu)", result.name, "records/s", tuple(bars)) if bars else None


def _mq_panels(result: ResultFile) -> list[Panel]:
    brokers: dict[str, list[Bar]] = {}
    for row in result.document.get("results", []):
        is_raw = row.get("variant") != "poller"
        brokers.setdefault(row.get("broker", "broker"), []).append(
            Bar(
                "raw loop" if is_raw else "poller",
                float(row["messages_per_s"]),
                _runs(row, "runs_messages_per_s"),
                "raw" if is_raw else "poller",
                None if is_raw else row.get("ratio_to_raw"),
            )
        )
    return [Panel(b, result.name, "messages/s", tuple(bars)) for b, bars in brokers.items()]


#: The sources of figure (a), in order: (result name, how to read it).
SOURCE_SCRIPTS = ("kinesis", "dynamodb_streams", "sqs", "kafka", "mq")


def source_panels(results: Mapping[str, ResultFile]) -> tuple[list[Panel], list[str]]:
    """Figure (a): each source against its raw loop; also the scripts whose results are missing."""
    panels: list[Panel] = []
    missing: list[str] = []
    for name in SOURCE_SCRIPTS:
        result = results.get(name)
        if result is None:
            missing.append(name)
            continue
        if name == "kinesis":
            found = [_stream_panel(result, "Kinesis (moto)")]
        elif name == "dynamodb_streams":
            found = [_stream_panel(result, "DynamoDB Streams (moto)")]
        elif name == "sqs":
            found = [_sqs_panel(result)]
        elif name == "kafka":
            found = [_kafka_panel(result)]
        else:
            found = list(_mq_panels(result))
        panels.extend(p for p in found if p is not None)
    return panels, missing


def _by_batch(rows: Iterable[Mapping[str, Any]], rate: str, runs: str) -> Series | None:
    points = sorted(
        (float(r["batch_size"]), float(r[rate]), _runs(r, runs))
        for r in rows
        if r.get("batch_size") is not None
    )
    return Series("", "", "", tuple(points)) if len(points) >= 2 else None


def batch_size_panels(results: Mapping[str, ResultFile]) -> tuple[list[list[Series]], list[str]]:
    """Figure (b): records/s against BatchSize, one panel per script that varies it; the raw
    loop of a source (which has no BatchSize) comes along as a one-point series."""
    panels: list[list[Series]] = []
    missing: list[str] = []
    engine = results.get("engine")
    if engine is None:
        missing.append("engine")
    else:
        rows = engine.document.get("throughput", [])
        panel = []
        for variant in ("engine, typed", "engine, Lambda-style"):
            series = _by_batch(
                [r for r in rows if r["variant"] == variant], "records_per_s", "runs_records_per_s"
            )
            if series is not None:
                panel.append(Series(variant, "engine", "records/s", series.points))
        if panel:
            panels.append(panel)
    for name, title in (("kinesis", "Kinesis"), ("dynamodb_streams", "DynamoDB Streams")):
        result = results.get(name)
        if result is None:
            missing.append(name)
            continue
        rows = result.document.get("results", [])
        series = _by_batch(rows, "records_per_s", "runs_records_per_s")
        if series is None:
            continue
        panel = [Series(f"{title}, poller", name, "records/s", series.points)]
        for row in rows:
            if row.get("batch_size") is None:
                point = (0.0, float(row["records_per_s"]), _runs(row, "runs_records_per_s"))
                panel.append(Series(f"{title}, raw loop", name, "records/s", (point,), "raw"))
        panels.append(panel)
    return panels, missing


def sqs_concurrency_series(result: ResultFile) -> tuple[list[Series], float | None]:
    """Figure (d): messages/s against MaximumConcurrency for poller and the raw loop, and the
    one-message-at-a-time rate as a reference."""
    lines: dict[str, list[tuple[float, float, tuple[float, ...]]]] = {}
    one_at_a_time = None
    for row in result.document.get("results", []):
        runs = _runs(row, "runs_messages_per_s")
        if row["variant"] == "one at a time":
            one_at_a_time = float(row["messages_per_s"])
            continue
        point = (float(row["concurrency"]), float(row["messages_per_s"]), runs)
        lines.setdefault(row["variant"], []).append(point)
    series = [
        Series(
            variant,
            "sqs",
            "messages/s",
            tuple(sorted(points)),
            "raw" if variant == "raw loop" else "poller",
        )
        for variant, points in lines.items()
    ]
    return series, one_at_a_time


def engine_handler_panel(result: ResultFile) -> Panel | None:
    """Figure (e), left: the engine's records/s with a typed and a Lambda-style handler."""
    bars = []
    for row in result.document.get("throughput", []):
        if not row["variant"].startswith("engine"):
            continue
        style = "typed" if row["variant"].endswith("typed") else "Lambda-style"
        share = row.get("engine_share_of_cpu")
        bars.append(
            Bar(
                f"{style}, BatchSize {row['batch_size']}",
                float(row["records_per_s"]),
                _runs(row, "runs_records_per_s"),
                "typed" if style == "typed" else "lambda",
                share,
            )
        )
    return Panel("Engine, no-op handler", "engine", "records/s", tuple(bars)) if bars else None


def environment_panel(result: ResultFile) -> Panel | None:
    """Figure (e), right: the same Lambda-style handler in the worker's threads and in process
    environments (functions.py), from start and once warm."""
    bars = []
    for row in result.document.get("throughput", []):
        name = row["variant"].replace(" (baseline)", "")
        bars.append(
            Bar(
                f"{name}, from start",
                float(row["records_per_s"]),
                _runs(row, "runs_records_per_s"),
                "raw" if row.get("isolation") == "thread" else "poller",
                row.get("ratio_to_thread"),
            )
        )
        warm = row.get("warm_records_per_s")
        if warm:
            bars.append(
                Bar(
                    f"{name}, warm",
                    float(warm),
                    (),
                    "raw" if row.get("isolation") == "thread" else "poller",
                )
            )
    return Panel("Execution environments", "functions", "records/s", tuple(bars)) if bars else None


def latency_boxes(result: ResultFile) -> list[LatencyBox]:
    """Figure (c): one box per source, variant and regime of latency.py's results."""
    boxes = []
    for row in result.document.get("results", []):
        samples = tuple(float(v) for v in row.get("samples_ms") or ())
        known = {
            "source",
            "variant",
            "regime",
            "samples_ms",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "aim_ms",
            "meets_aim",
            "pace",
            "records",
            "bound",
        }
        boxes.append(
            LatencyBox(
                source=str(row.get("source", "?")),
                variant=str(row.get("variant", "poller")),
                regime=str(row.get("regime", "")),
                samples_ms=samples,
                p50_ms=_number(row.get("p50_ms")),
                p99_ms=_number(row.get("p99_ms")),
                max_ms=_number(row.get("max_ms")),
                aim_ms=_number(row.get("aim_ms")),
                meets_aim=row.get("meets_aim"),
                pace=row.get("pace"),
                records=row.get("records"),
                bound=row.get("bound"),
                extra={k: v for k, v in row.items() if k not in known},
            )
        )
    return boxes


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def spread_text(runs: Sequence[float], value: float, fmt: str = "{:,.0f}") -> str:
    """``median (lowest to highest of n runs)``, or the value alone for a single run."""
    if len(runs) < 2:
        return fmt.format(value)
    return (
        f"{fmt.format(value)} ({fmt.format(min(runs))} to {fmt.format(max(runs))}, n={len(runs)})"
    )
