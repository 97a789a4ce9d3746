"""The benchmark report: every ``benchmarks/results/*.json`` present, as Markdown and PNG charts.

Why: the scripts print tables that scroll away and JSON that nobody reads. The report puts one
run's numbers in one place people can look at (``benchmarks/results/report.md``, linked from
README's Performance section), with charts of what matters most: each source against its raw
client loop, throughput against BatchSize, latency distributions with their aims, SQS against
concurrency, and the engine and execution environments. It states when and where the numbers
were taken, the load, each script's parameters and repeats, medians and the spread of runs, and
ends with README's Performance tables filled from the same files, so README's numbers and the
charts always come from one run.

``make bench`` and ``make bench-quick`` run it last, after ``benchmarks/run_all.py`` has noted in
``results/run.json`` which scripts ran, how long, and which failed. Results older than that run
(a script that failed leaves its previous file behind) are not drawn or tabulated: the report
names them and the script to run instead, as it does for a missing file. A run with ``--quick``
is marked as one: reduced sizes, single runs, not for comparison.

Run ``python benchmarks/report.py`` (``--no-charts`` writes the Markdown alone, without
matplotlib; ``--include-earlier`` keeps results older than the last run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR
from _report_data import (
    ResultFile,
    batch_size_panels,
    engine_handler_panel,
    environment_panel,
    latency_boxes,
    load_results,
    source_panels,
    sqs_concurrency_series,
)
from _report_md import (
    batch_size_table,
    engine_table,
    environment_tables,
    latency_table,
    machine_text,
    other_tables,
    readme_snippet,
    source_table,
    sqs_table,
    table,
)

#: Every chart the report may write; one that cannot be drawn is removed, so no PNG outlives
#: the numbers it was drawn from.
CHARTS = {
    "sources": "sources_vs_raw.png",
    "batch": "batch_size.png",
    "latency": "latency.png",
    "sqs": "sqs_concurrency.png",
    "engine": "engine_and_environments.png",
}
QUICK_BANNER = (
    "> **quick: not for comparison.** Some results below come from `--quick` runs (reduced "
    "sizes, single runs); they show that the benchmarks and this report work, not how fast "
    "poller is."
)


def _run_summary(directory: Path) -> Mapping[str, Any] | None:
    try:
        summary = json.loads((directory / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _split_by_run(
    results: Mapping[str, ResultFile], summary: Mapping[str, Any] | None, include_earlier: bool
) -> tuple[dict[str, ResultFile], dict[str, ResultFile]]:
    """The results of the last run, and those older than it (left out unless asked for)."""
    started = summary.get("started") if summary else None
    if not started or include_earlier:
        return dict(results), {}
    since = datetime.fromisoformat(started)
    current, earlier = {}, {}
    for name, result in results.items():
        date = result.date
        (current if date is not None and date >= since else earlier)[name] = result
    return current, earlier


def _missing_line(scripts: list[str], earlier: Mapping[str, ResultFile]) -> str:
    parts = []
    for script in scripts:
        name = script.split(" ")[0]
        reason = "is from an earlier run" if name in earlier else "is missing"
        detail = script[len(name) :].strip()
        parts.append(
            f"`{name}.json` {reason}{' ' + detail if detail else ''}: run "
            f"`python benchmarks/{name}.py`"
        )
    return "; ".join(parts)


class Report:
    """Collects the report's sections and the charts it manages to draw."""

    def __init__(self, directory: Path, results: Mapping[str, ResultFile], charts: bool) -> None:
        self.directory = directory
        self.results = results
        self.earlier: Mapping[str, ResultFile] = {}
        self.charts = charts
        self.sections: list[str] = []
        self.drawn: list[str] = []

    def figure(
        self,
        title: str,
        measures: str,
        chart: str,
        draw: Callable[[Path, str], None] | None,
        missing: list[str],
        text: str,
    ) -> None:
        """One figure's section: what it measures, the chart (or why not), its table."""
        path = self.directory / CHARTS[chart]
        lines = [f"## {title}", "", measures, ""]
        if draw is None:
            path.unlink(missing_ok=True)
            lines.append(f"_Chart skipped: {_missing_line(missing, self.earlier)}._")
        elif not self.charts:
            lines.append("_Chart not drawn (`--no-charts`)._")
        else:
            quick = any(r.quick for r in self.results.values())
            note = f"poller benchmarks, {self.date_range()}"
            draw(path, note + ("; QUICK RUN: reduced sizes, not for comparison" if quick else ""))
            self.drawn.append(path.name)
            lines.append(f"![{title}]({path.name})")
            if missing:
                lines += ["", f"_Not in this chart: {_missing_line(missing, self.earlier)}._"]
        if text:
            lines += ["", text]
        self.sections.append("\n".join(lines))

    def date_range(self) -> str:
        dates = sorted(d for r in self.results.values() if (d := r.date) is not None)
        if not dates:
            return "no date"
        first, last = dates[0], dates[-1]
        if first.date() == last.date():
            return f"{first:%Y-%m-%d %H:%M} to {last:%H:%M} UTC"
        return f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"


def _header(report: Report, summary: Mapping[str, Any] | None) -> str:
    results = report.results
    machines = {machine_text(r.machine) for r in results.values() if r.machine}
    loads = [r.machine["load_average"] for r in results.values() if r.machine.get("load_average")]
    lines = [
        "# poller benchmark report",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/report.py` from "
        f"`benchmarks/results/*.json`; measured {report.date_range()}.",
        "",
    ]
    if any(r.quick for r in results.values()):
        lines += [QUICK_BANNER, ""]
    lines.append(f"**Machine:** {'; '.join(sorted(machines)) or 'unknown'}.")
    if loads:
        one_minute = [load[0] for load in loads]
        lines.append(
            f"**Load** (1-minute load average as each script ended): {min(one_minute):.2f} to "
            f"{max(one_minute):.2f}. On a machine with few cores, a load near or above the core "
            "count means other work competed with the benchmarks; ratios measured within one "
            "script's run hold up better than absolute rates."
        )
    if summary:
        scripts = summary.get("scripts", [])
        failed = [s for s in scripts if s.get("exit_code") != 0]
        lines.append(
            f"**Run:** `{summary.get('command', 'make bench')}`, {len(scripts)} scripts in "
            f"{summary.get('seconds', 0):.0f} s, started {summary.get('started')}"
            + _load_text(summary)
            + "."
        )
        if failed:
            lines.append(
                "**Failed:** "
                + ", ".join(
                    f"`{s['script']}` (exit {s.get('exit_code')}, {s.get('seconds', 0):.0f} s)"
                    for s in failed
                )
                + "; their results are not in this report."
            )
    if report.earlier:
        lines.append(
            "**Left out, from an earlier run:** "
            + ", ".join(
                f"`{n}.json` ({r.date:%Y-%m-%d %H:%M})" for n, r in report.earlier.items() if r.date
            )
            + "."
        )
    return "\n".join(lines)


def _load_text(summary: Mapping[str, Any]) -> str:
    before, after = summary.get("load_before"), summary.get("load_after")
    if not before or not after:
        return ""
    return (
        f"; load average (1/5/15 min) {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} before, "
        + (f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} after")
    )


def _scripts_table(results: Mapping[str, ResultFile]) -> str:
    rows = []
    for name, result in sorted(results.items()):
        parameters = ", ".join(
            f"{k}={v if not isinstance(v, list) else '/'.join(map(str, v))}"
            for k, v in result.parameters.items()
        )
        load = result.machine.get("load_average") or []
        rows.append(
            [
                f"`{name}.py`",
                f"{result.date:%Y-%m-%d %H:%M}" if result.date else "-",
                " ".join(result.document.get("arguments") or []) or "(defaults)",
                parameters,
                result.repeats,
                " / ".join(f"{x:.2f}" for x in load),
                result.quick,
            ]
        )
    return table(
        ["script", "UTC", "arguments", "parameters", "repeats", "load 1/5/15 min", "quick"], rows
    )


def build(report: Report) -> None:
    results = report.results
    charts: Any = None
    if report.charts:
        import _charts

        charts = _charts
    report.sections.append(
        "## Scripts\n\nEach script alternates its variants and reports medians of its repeats; "
        "ratios compare variants measured in the same run.\n\n" + _scripts_table(results)
    )

    panels, missing = source_panels(results)
    report.figure(
        "Throughput against a raw client loop",
        "Records (or messages) per second that poller's Worker hands a no-op typed handler, "
        "next to a hand-written client loop reading the same server in the same run (moto for "
        "Kinesis, DynamoDB Streams and SQS; tansu for Kafka; RabbitMQ and ActiveMQ). The label "
        "is poller's median over the raw loop's: the cost of poller itself, not the speed of "
        "AWS, whose servers these emulators are not. Bars are medians, whiskers the lowest and "
        "highest run.",
        "sources",
        (lambda path, note: charts.sources_chart(panels, path, note)) if panels else None,
        missing,
        source_table(panels),
    )

    batch_panels, missing = batch_size_panels(results)
    report.figure(
        "Throughput against BatchSize",
        "Records per second at each BatchSize the scripts ran: the engine alone on in-memory "
        "shards (a typed and a Lambda-style no-op handler; the fixed cost per batch shows at "
        "small sizes), and poller reading Kinesis and DynamoDB Streams from moto, where the "
        "dashed line is the raw loop, which has no BatchSize. kafka.py and mq.py run BatchSize 100 "
        "only, so they are not drawn here.",
        "batch",
        (lambda path, note: charts.batch_size_chart(batch_panels, path, note))
        if batch_panels
        else None,
        missing,
        batch_size_table(batch_panels),
    )

    latency = results.get("latency")
    boxes = latency_boxes(latency) if latency else []
    report.figure(
        "Latency per record",
        "Milliseconds from a record's write until the handler has it, per source, for poller "
        "and a raw loop reading at the same pace, while caught up (records trickle in) and "
        "with a backlog (everything written before the consumer starts, so records queue). "
        "Boxes span the 25th to 75th percentile, whiskers the 1st to 99th, a cross marks the "
        "largest sample and a red dashed line the aim where there is one.",
        "latency",
        (lambda path, note: charts.latency_chart(boxes, path, note))
        if any(b.samples_ms for b in boxes)
        else None,
        [] if boxes else ["latency"],
        latency_table(boxes),
    )

    sqs = results.get("sqs")
    series, one_at_a_time = sqs_concurrency_series(sqs) if sqs else ([], None)
    report.figure(
        "SQS against concurrency",
        "Messages per second through an SQS queue on moto with a handler that sleeps 20 ms per "
        "batch of 10: poller at ScalingConfig.MaximumConcurrency N next to a raw receive/delete "
        "loop with N tasks, and one message at a time (dotted). Throughput grows with the "
        "batches in flight until moto saturates.",
        "sqs",
        (lambda path, note: charts.sqs_concurrency_chart(series, one_at_a_time, path, note))
        if series
        else None,
        [] if sqs else ["sqs"],
        sqs_table(sqs) if sqs else "",
    )

    engine, functions = results.get("engine"), results.get("functions")
    engine_panels = [
        p
        for p in (
            engine_handler_panel(engine) if engine else None,
            environment_panel(functions) if functions else None,
        )
        if p is not None
    ]
    report.figure(
        "Engine and execution environments",
        "Left: the engine's records per second on one core with a typed handler and a "
        "Lambda-style one (whose event is rendered), per BatchSize; the label is the share of "
        "CPU per record spent in the engine rather than in a plain loop handing the same "
        "records to the same handler (and, Lambda-style, rendering them). Right: the same "
        "no-op Lambda-style handler in the worker's threads and in process environments over "
        "the Runtime API, from start (cold starts included) and once every environment is warm.",
        "engine",
        (lambda path, note: charts.engine_chart(engine_panels, path, note))
        if engine_panels
        else None,
        [name for name, r in (("engine", engine), ("functions", functions)) if r is None],
        "\n".join(
            text
            for text in (
                engine_table(engine) if engine else "",
                environment_tables(functions) if functions else "",
            )
            if text
        ),
    )

    for heading, text in other_tables(results):
        report.sections.append(f"## {heading}\n\n{text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="the results directory")
    parser.add_argument("--no-charts", action="store_true", help="Markdown only, no matplotlib")
    parser.add_argument(
        "--include-earlier", action="store_true", help="keep results older than the last run"
    )
    args = parser.parse_args(argv)
    directory: Path = args.results
    if not args.no_charts:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "report.py: matplotlib is not installed; install the bench extra "
                "(pip install -e '.[bench]', which make bench does) or pass --no-charts",
                file=sys.stderr,
            )
            return 2
    summary = _run_summary(directory)
    current, earlier = _split_by_run(load_results(directory), summary, args.include_earlier)
    report = Report(directory, current, charts=not args.no_charts)
    report.earlier = earlier
    build(report)
    header = _header(report, summary)
    command = f"`{summary['command']}`" if summary else "the scripts in `benchmarks/`"
    machines = "; ".join(sorted({machine_text(r.machine) for r in current.values()}))
    quick = "; quick run, not for comparison" if any(r.quick for r in current.values()) else ""
    snippet = readme_snippet(
        current,
        f"Measured by {command} {report.date_range()} on {machines}{quick}. Charts and the full "
        "report: [benchmarks/results/report.md](benchmarks/results/report.md).",
    )
    snippet_section = (
        "## README snippet\n\nREADME's Performance tables, filled from the results above (paste "
        "over the tables there, so README's numbers and these charts come from one run):\n\n"
        "````markdown\n" + snippet + "````"
    )
    text = "\n\n".join([header, *report.sections, snippet_section]) + "\n"
    path = directory / "report.md"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    drawn = ", ".join(report.drawn) if report.drawn else "no charts"
    print(f"report: {path} ({len(current)} result files; {drawn})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
