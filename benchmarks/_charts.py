"""The report's figures, drawn with matplotlib's Agg backend (files only, no display).

Every bar or point is a median; its whisker spans the lowest and the highest run, so a reader
sees at once how far one run may stray on the machine that measured it. Each function writes
one PNG and returns nothing: the report decides what to draw and says why a figure is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from _report_data import Bar, LatencyBox, Panel, Series

__all__ = [
    "batch_size_chart",
    "engine_chart",
    "latency_chart",
    "sources_chart",
    "sqs_concurrency_chart",
]

#: One colour per role, the same in every figure.
COLOURS = {
    "raw": "#9e9e9e",
    "poller": "#1f77b4",
    "typed": "#1f77b4",
    "lambda": "#ff7f0e",
}
AIM_COLOUR = "#d62728"


def _whiskers(bars: Sequence[Bar]) -> list[list[float]]:
    low = [b.median - b.spread[0] for b in bars]
    high = [b.spread[1] - b.median for b in bars]
    return [low, high]


def _save(figure: plt.Figure, path: Path, note: str) -> None:
    figure.text(0.01, 0.005, note, fontsize=7, color="#555555", ha="left", va="bottom")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _grid(count: int, columns: int, width: float, height: float) -> tuple[plt.Figure, list]:
    rows = math.ceil(count / columns)
    columns = min(columns, count)
    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False
    )
    flat = [axis for row in axes for axis in row]
    for spare in flat[count:]:
        spare.set_visible(False)
    return figure, flat[:count]


def _bar_panel(axis: plt.Axes, panel: Panel, ratio_label: str) -> None:
    bars = panel.bars
    positions = range(len(bars))
    axis.bar(
        positions,
        [b.median for b in bars],
        yerr=_whiskers(bars),
        capsize=3,
        color=[COLOURS.get(b.kind, COLOURS["poller"]) for b in bars],
    )
    axis.set_xticks(list(positions), [b.label for b in bars], rotation=30, ha="right", fontsize=8)
    axis.set_title(panel.title, fontsize=10)
    axis.set_ylabel(panel.unit, fontsize=8)
    axis.tick_params(axis="y", labelsize=8)
    top = max((b.spread[1] for b in bars), default=1.0)
    axis.set_ylim(0, top * 1.18)
    for index, bar in enumerate(bars):
        if bar.ratio is not None:
            axis.annotate(
                ratio_label.format(bar.ratio),
                (index, bar.spread[1]),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=8,
            )


def sources_chart(panels: Sequence[Panel], path: Path, note: str) -> None:
    """(a) Each source's raw client loop (grey) next to poller (blue), ratio above poller."""
    figure, axes = _grid(len(panels), 3, 4.2, 3.4)
    for axis, panel in zip(axes, panels, strict=True):
        _bar_panel(axis, panel, "{:.2f}x raw")
    figure.suptitle(
        "Throughput against a raw client loop on the same server, same run", fontsize=11
    )
    _save(figure, path, note)


def batch_size_chart(panels: Sequence[Sequence[Series]], path: Path, note: str) -> None:
    """(b) records/s against BatchSize (log scale), one panel per script; a raw loop, which has
    no BatchSize, is a dashed line."""
    figure, axes = _grid(len(panels), 3, 4.2, 3.4)
    for axis, panel in zip(axes, panels, strict=True):
        for series in panel:
            if series.kind == "raw":
                _, value, _ = series.points[0]
                axis.axhline(value, color=COLOURS["raw"], linestyle="--", label=series.label)
                continue
            xs = [x for x, _, _ in series.points]
            ys = [y for _, y, _ in series.points]
            low = [y - (min(runs) if runs else y) for _, y, runs in series.points]
            high = [(max(runs) if runs else y) - y for _, y, runs in series.points]
            axis.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=series.label)
        axis.set_xscale("log")
        sizes = sorted({x for series in panel if series.kind != "raw" for x, _, _ in series.points})
        axis.set_xticks(sizes, [f"{x:g}" for x in sizes])
        axis.minorticks_off()
        axis.set_xlabel("BatchSize", fontsize=8)
        axis.set_ylabel(panel[0].unit, fontsize=8)
        axis.set_ylim(bottom=0)
        axis.set_title(panel[0].script + ".py", fontsize=10)
        axis.tick_params(labelsize=8)
        axis.legend(fontsize=7)
    figure.suptitle("Throughput against BatchSize", fontsize=11)
    _save(figure, path, note)


def latency_chart(boxes: Sequence[LatencyBox], path: Path, note: str) -> None:
    """(c) Latency samples per source and variant, one panel per regime: boxes from the 25th
    to the 75th percentile, whiskers from the 1st to the 99th, a cross at the largest sample,
    the aim as a red line; logarithmic milliseconds (caught-up and backlog differ by orders)."""
    regimes = sorted({b.regime for b in boxes})
    widest = max(sum(1 for b in boxes if b.regime == regime) for regime in regimes)
    figure, axes = _grid(len(regimes), 1, max(8.0, 0.75 * widest), 3.8)
    for axis, regime in zip(axes, regimes, strict=True):
        chosen = [b for b in boxes if b.regime == regime and b.samples_ms]
        chosen.sort(key=lambda b: (b.source, str(b.pace), b.variant != "poller"))
        if not chosen:
            axis.set_visible(False)
            continue
        plot = axis.boxplot(
            [list(b.samples_ms) for b in chosen],
            whis=(1, 99),
            showfliers=False,
            patch_artist=True,
            widths=0.6,
        )
        for patch, box in zip(plot["boxes"], chosen, strict=True):
            patch.set_facecolor(COLOURS["poller" if box.variant == "poller" else "raw"])
            patch.set_alpha(0.7)
        for index, box in enumerate(chosen, start=1):
            if box.max_ms is not None:
                axis.plot(index, box.max_ms, marker="x", color="black", markersize=4)
            if box.aim_ms is not None:
                axis.hlines(
                    box.aim_ms, index - 0.4, index + 0.4, colors=AIM_COLOUR, linestyles="--"
                )
        axis.set_xticks(
            range(1, len(chosen) + 1),
            [f"{b.source}\n{b.pace or ''}\n{b.variant}" for b in chosen],
            fontsize=7,
        )
        axis.set_yscale("log")
        axis.set_ylabel("ms (log)", fontsize=8)
        axis.set_title(f"regime: {regime}", fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
    figure.suptitle(
        "Latency per record (box 25-75%, whiskers 1-99%, x = max, red dashes = aim)", fontsize=11
    )
    _save(figure, path, note)


def sqs_concurrency_chart(
    series: Sequence[Series], one_at_a_time: float | None, path: Path, note: str
) -> None:
    """(d) SQS messages/s against MaximumConcurrency: poller and the raw loop side by side."""
    figure, axis = plt.subplots(figsize=(6.0, 3.8))
    for line in series:
        xs = [x for x, _, _ in line.points]
        ys = [y for _, y, _ in line.points]
        low = [y - (min(runs) if runs else y) for _, y, runs in line.points]
        high = [(max(runs) if runs else y) - y for _, y, runs in line.points]
        axis.errorbar(
            xs,
            ys,
            yerr=[low, high],
            marker="o",
            capsize=3,
            label=line.label,
            color=COLOURS[line.kind],
        )
    if one_at_a_time is not None:
        axis.axhline(one_at_a_time, color="black", linestyle=":", label="one message at a time")
    axis.set_xscale("log")
    xs = sorted({x for line in series for x, _, _ in line.points})
    axis.set_xticks(xs, [f"{x:g}" for x in xs])
    axis.minorticks_off()
    axis.set_xlabel("concurrency (poller: ScalingConfig.MaximumConcurrency)", fontsize=8)
    axis.set_ylabel("messages/s", fontsize=8)
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=8)
    axis.set_title("SQS on moto, 20 ms handler per batch of 10", fontsize=10)
    _save(figure, path, note)


def engine_chart(panels: Sequence[Panel], path: Path, note: str) -> None:
    """(e) Engine records/s per handler style and BatchSize; execution environments against
    the worker's threads. Logarithmic when the bars span more than a factor of 20."""
    figure, axes = _grid(len(panels), 2, 5.5, 3.8)
    for axis, panel in zip(axes, panels, strict=True):
        labels = "{:.0%} engine" if panel.script == "engine" else "{:.2f}x in-thread"
        _bar_panel(axis, panel, labels)
        values = [b.median for b in panel.bars if b.median > 0]
        if values and max(values) / min(values) > 20:
            axis.set_yscale("log")
            axis.set_ylim(min(values) / 2, max(b.spread[1] for b in panel.bars) * 3)
    figure.suptitle("Records per second with a no-op handler (one core at most)", fontsize=11)
    _save(figure, path, note)
