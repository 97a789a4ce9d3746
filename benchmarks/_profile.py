"""cProfile of one benchmark call, reduced to the functions that cost the most own time.

Kept apart from the scripts that use it so that they stay about what they measure.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
from collections.abc import Callable
from typing import Any

from _common import print_table

__all__ = ["profile_call"]


def profile_call(label: str, call: Callable[[], object], top: int = 20) -> list[dict[str, Any]]:
    """Run ``call`` under cProfile; print and return the ``top`` functions by own time."""
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows: list[dict[str, Any]] = []
    for (filename, line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        calls, own, cumulative = row[1], row[2], row[3]
        short = filename.split("/site-packages/")[-1].split("/work/main/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({function})",
                "calls": calls,
                "own_s": own,
                "own_pct": 100 * own / total if total else 0.0,
                "cumulative_s": cumulative,
            }
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    best = rows[:top]
    print_table(
        f"cProfile, {label}: top functions by own time (profiled total {total:.2f} s)",
        ["own %", "own s", "cum s", "calls", "function"],
        [[r["own_pct"], r["own_s"], r["cumulative_s"], r["calls"], r["function"]] for r in best],
    )
    return best
