"""Markdown for the report: one table per figure, the tables of the scripts without a figure,
and the snippet that README's Performance section is refreshed from.

Tables give each median with the lowest and highest run next to it, so the spread is in the text
as well as in the whiskers of the charts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from _report_data import LatencyBox, Panel, ResultFile, Series, latency_boxes, spread_text

__all__ = [
    "batch_size_table",
    "engine_table",
    "environment_tables",
    "latency_table",
    "machine_text",
    "other_tables",
    "readme_snippet",
    "source_table",
    "sqs_table",
    "table",
]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (an empty string when there are no rows)."""
    if not rows:
        return ""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def machine_text(machine: Mapping[str, Any]) -> str:
    """``CPython 3.11.7, 2 CPUs (2 usable), Linux-..., x86_64``."""
    cpus = machine.get("cpu_count")
    usable = machine.get("usable_cpus")
    usable_text = f" ({usable} usable)" if usable is not None else ""
    return (
        f"{machine.get('implementation', 'Python')} {machine.get('python', '?')}, "
        f"{cpus} CPUs{usable_text}, {machine.get('platform', '?')}"
    )


def source_table(panels: Sequence[Panel]) -> str:
    rows = []
    for panel in panels:
        for bar in panel.bars:
            rows.append(
                [
                    panel.title,
                    bar.label,
                    f"{spread_text(bar.runs, bar.median)} {panel.unit}",
                    _ratio(bar.ratio),
                    f"`{panel.script}.py`",
                ]
            )
    return table(["source", "variant", "median (runs)", "poller / raw", "script"], rows)


def batch_size_table(panels: Sequence[Sequence[Series]]) -> str:
    rows = []
    for panel in panels:
        for series in panel:
            for x, y, runs in series.points:
                size = "-" if series.kind == "raw" else f"{x:g}"
                rows.append([series.label, size, f"{spread_text(runs, y)} {series.unit}"])
    return table(["series", "BatchSize", "median (runs)"], rows)


def latency_table(boxes: Sequence[LatencyBox]) -> str:
    rows = [
        [
            b.source,
            b.regime,
            b.pace,
            b.variant,
            b.records,
            b.p50_ms,
            b.extra.get("p90_ms"),
            b.p99_ms,
            b.max_ms,
            b.aim_ms,
            b.meets_aim,
            b.bound,
        ]
        for b in sorted(boxes, key=lambda b: (b.source, b.regime, str(b.pace), b.variant))
    ]
    headers = ["source", "regime", "pace", "variant", "records", "p50 ms", "p90 ms", "p99 ms"]
    return table([*headers, "max ms", "aim ms", "aim met", "what bounds it"], rows)


def sqs_table(result: ResultFile) -> str:
    rows = [
        [
            r["variant"],
            r["concurrency"],
            spread_text(r.get("runs_messages_per_s") or [], r["messages_per_s"], "{:,.1f}"),
            r.get("most_pollers"),
            _ratio(r.get("ratio_to_raw")),
        ]
        for r in result.document.get("results", [])
    ]
    return table(["variant", "concurrency", "messages/s (runs)", "pollers", "poller / raw"], rows)


def engine_table(result: ResultFile) -> str:
    rows = []
    for r in result.document.get("throughput", []):
        share = r.get("engine_share_of_cpu")
        rows.append(
            [
                r["variant"],
                r["batch_size"],
                spread_text(r.get("runs_records_per_s") or [], r["records_per_s"]),
                r["cpu_us_per_record"],
                r.get("engine_cpu_us_per_record_over_loop"),
                "-" if share is None else f"{share:.0%}",
                r.get("aim_records_per_s"),
                r.get("meets_aim"),
            ]
        )
    headers = ["variant", "BatchSize", "records/s (runs)", "CPU µs/record"]
    return table([*headers, "engine's own µs/record", "engine share", "aim", "met"], rows)


def environment_tables(result: ResultFile) -> str:
    doc = result.document
    parts = []
    worker_rows = [
        [
            r["variant"],
            r.get("batch_size"),
            spread_text(r.get("runs_records_per_s") or [], r["records_per_s"]),
            r.get("warm_records_per_s"),
            r.get("worker_cpu_us_per_record"),
            _ratio(r.get("ratio_to_thread", r.get("ratio_to_reserved_1"))),
        ]
        for key in ("throughput", "cpu_bound")
        for r in doc.get(key, [])
    ]
    headers = ["variant", "BatchSize", "records/s (runs)", "warm records/s", "worker CPU µs/rec"]
    parts.append(table([*headers, "ratio"], worker_rows))
    latency = list(doc.get("latency", [])) + list((doc.get("http") or {}).get("latency", []))
    latency_rows = [
        [r["variant"], r["batch_size"], r["p50_us"], r["p99_us"], r["p50_over_thread_us"]]
        for r in latency
    ]
    parts.append(
        table(
            ["per invocation", "BatchSize", "p50 µs", "p99 µs", "p50 over thread µs"], latency_rows
        )
    )
    return "\n".join(p for p in parts if p)


def other_tables(results: Mapping[str, ResultFile]) -> list[tuple[str, str]]:
    """(heading, Markdown) for the scripts that have no figure: leases, filters, idle shards."""
    found: list[tuple[str, str]] = []
    leases = results.get("leases")
    if leases is not None:
        doc = leases.document
        rows = [
            [f"{float(d):g} s", v.get("failover_s"), v.get("rebalance_s"), len(v.get("runs", []))]
            for d, v in (doc.get("durations") or {}).items()
        ]
        text = table(["lease_duration_seconds", "failover s", "rebalance s", "runs"], rows)
        cost = (doc.get("cost") or {}).get("durations") or {}
        text += "\n" + table(
            ["lease_duration_seconds", "lease writes", "checkpoint writes", "reads", "per"],
            [
                [
                    f"{float(d):g} s",
                    v.get("lease_writes"),
                    v.get("checkpoint_writes"),
                    v.get("reads"),
                    "shard per minute",
                ]
                for d, v in cost.items()
            ],
        )
        throughput = doc.get("throughput") or {}
        if throughput:
            text += "\n" + table(
                ["workers", "records/s", "reading records/s", "moto CPU share"],
                [
                    [
                        w,
                        m.get("records_per_s"),
                        m.get("reading_records_per_s"),
                        m.get("moto_cpu_share"),
                    ]
                    for w, m in (throughput.get("medians") or {}).items()
                ],
            )
        found.append(("Leases (`leases.py`): failover, rebalance, DynamoDB cost, workers", text))
    filters = results.get("filters")
    if filters is not None:
        rows = [
            [
                r["variant"],
                spread_text(r.get("runs_records_per_s") or [], r["records_per_s"]),
                r.get("matched_fraction"),
                _ratio(r.get("ratio_to_json_loads")),
            ]
            for r in filters.document.get("rows", [])
        ]
        found.append(
            (
                "Filter matching alone (`filters.py`)",
                table(["pattern", "records/s (runs)", "matched", "x json.loads"], rows),
            )
        )
    engine_filters = results.get("engine_filters")
    if engine_filters is not None:
        rows = [
            [
                r["variant"],
                r.get("handed_over"),
                spread_text(r.get("runs_records_per_s") or [], r["records_per_s"]),
                _ratio(r.get("vs_no_filter")),
            ]
            for r in engine_filters.document.get("results", [])
        ]
        found.append(
            (
                "The engine with FilterCriteria (`engine_filters.py`)",
                table(["variant", "handed over", "records read/s (runs)", "vs no filter"], rows),
            )
        )
    engine = results.get("engine")
    idle = (engine.document.get("idle_shards") if engine else None) or {}
    if idle:
        found.append(
            (
                f"Idle shards (`engine.py`, {idle.get('shards', 0):,} empty shards)",
                table(
                    [
                        "RSS per shard KiB",
                        "idle CPU µs per shard per s",
                        "idle CPU share of a core",
                    ],
                    [
                        [
                            idle.get("rss_per_shard_kib"),
                            idle.get("idle_cpu_us_per_shard_per_s"),
                            idle.get("idle_cpu_fraction_of_core"),
                        ]
                    ],
                ),
            )
        )
    return found


def _sizes(result: ResultFile) -> str:
    """``shards=64, records_per_shard=5000, ...; medians of 3 runs`` for a snippet's heading."""
    shown = ", ".join(
        f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in result.parameters.items()
    )
    repeats = result.repeats or 1
    runs = f"medians of {repeats} alternating runs" if repeats > 1 else "one run"
    return f"{shown}; {runs}" + (" (quick run: not for comparison)" if result.quick else "")


def readme_snippet(results: Mapping[str, ResultFile], header: str) -> str:
    """README's Performance tables, filled from these results (sections without data left out)."""
    parts = [header]
    engine = results.get("engine")
    if engine is not None:
        rows = [
            [
                "typed `handler(batch)`"
                if r["variant"].endswith("typed")
                else "Lambda-style `handler(event, context)`",
                r["batch_size"],
                f"{r['records_per_s']:,.0f}",
                f"{r['cpu_us_per_record']:.2g} µs",
                f"{r.get('engine_cpu_us_per_record_over_loop') or 0:.2g} µs",
            ]
            for r in engine.document.get("throughput", [])
            if r["variant"].startswith("engine")
        ]
        parts.append(
            f"**Engine** (`benchmarks/engine.py`): {_sizes(engine)}\n\n"
            + table(
                [
                    "handler",
                    "BatchSize",
                    "records/s",
                    "CPU per record",
                    "engine's own CPU per record",
                ],
                rows,
            )
        )
    rows = []
    for name, title, unit in (
        ("kinesis", "Kinesis", "records/s"),
        ("dynamodb_streams", "DynamoDB Streams", "records/s"),
    ):
        result = results.get(name)
        if result is None:
            continue
        found = result.document.get("results", [])
        raw = next((r for r in found if r.get("batch_size") is None), None)
        pollers = [r for r in found if r.get("batch_size") is not None]
        if raw and pollers:
            rows.append(
                [
                    f"{title}, {result.document.get('records', 0):,} records (`{name}.py`)",
                    f"{raw['records_per_s']:,.0f} {unit}",
                    " / ".join(
                        f"{r['records_per_s']:,.0f} (BatchSize {r['batch_size']})" for r in pollers
                    ),
                    " / ".join(f"{r['ratio_to_raw']:.2f}" for r in pollers),
                ]
            )
    sqs = results.get("sqs")
    if sqs is not None:
        by_level = {(r["variant"], r["concurrency"]): r for r in sqs.document.get("results", [])}
        for (variant, level), row in sorted(by_level.items(), key=lambda i: i[0][1]):
            raw = by_level.get(("raw loop", level))
            if variant == "poller" and raw:
                rows.append(
                    [
                        f"SQS, 20 ms handler, concurrency {level} (`sqs.py`)",
                        f"{raw['messages_per_s']:,.1f} messages/s",
                        f"{row['messages_per_s']:,.1f}",
                        _ratio(row.get("ratio_to_raw")),
                    ]
                )
    if rows:
        parts.append(
            "**Against a raw client loop on the same server, same run**\n\n"
            + table(["source", "raw aiobotocore loop", "poller", "poller / raw"], rows)
        )
    mq = results.get("mq")
    if mq is not None:
        brokers: dict[str, dict[str, Any]] = {}
        for r in mq.document.get("results", []):
            brokers.setdefault(r["broker"], {})["poller" if r["variant"] == "poller" else "raw"] = r
        rows = [
            [
                broker,
                f"{v['raw']['messages_per_s']:,.0f} messages/s ({v['raw']['variant']})",
                f"{v['poller']['messages_per_s']:,.0f}",
                _ratio(v["poller"].get("ratio_to_raw")),
            ]
            for broker, v in brokers.items()
            if "raw" in v and "poller" in v
        ]
        parts.append(
            f"**Message brokers** (`mq.py`): {_sizes(mq)}\n\n"
            + table(["broker", "raw loop", "poller", "poller / raw"], rows)
        )
    kafka = results.get("kafka")
    if kafka is not None:
        found = kafka.document.get("results", [])
        raw = next((r for r in found if r.get("key") == "raw"), None)
        if raw:
            rows = [
                [
                    r["variant"].replace("poller Worker, ", ""),
                    f"{raw['records_per_s_median']:,.0f} records/s",
                    f"{r['records_per_s_median']:,.0f} records/s",
                    _ratio(r.get("ratio_to_raw_median")),
                    f"{raw['cpu_s_per_100k_median']:.2f} s / {r['cpu_s_per_100k_median']:.2f} s",
                ]
                for r in found
                if r is not raw
            ]
            parts.append(
                f"**Kafka** (`kafka.py`): {_sizes(kafka)}\n\n"
                + table(
                    [
                        "handler",
                        "raw loop",
                        "poller",
                        "poller / raw",
                        "CPU per 100k records (raw / poller)",
                    ],
                    rows,
                )
            )
    functions = results.get("functions")
    if functions is not None:
        parts.append(
            "**Execution environments** (`functions.py`)\n\n" + environment_tables(functions)
        )
    latency = results.get("latency")
    if latency is not None:
        rows = [
            [b.source, b.regime, b.pace, b.variant, b.p50_ms, b.p99_ms, b.aim_ms, b.meets_aim]
            for b in latency_boxes(latency)
        ]
        parts.append(
            "**Latency** (`latency.py`)\n\n"
            + table(
                ["source", "regime", "pace", "variant", "p50 ms", "p99 ms", "aim ms", "met"], rows
            )
        )
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"
