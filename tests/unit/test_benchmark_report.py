"""The benchmark report (benchmarks/report.py) and the runner behind make bench (run_all.py).

Both read and write files only, so they are tested on result files written here: what the report
states, what it leaves out and why, and that a failing script does not stop the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MACHINE = {
    "python": "3.11.7",
    "implementation": "CPython",
    "cpu_count": 2,
    "usable_cpus": 2,
    "platform": "Linux-test",
    "machine": "x86_64",
    "load_average": [0.5, 0.4, 0.3],
}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    """The benchmark modules, imported as the scripts import each other (by bare name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _common
    import report
    import run_all

    yield {"common": _common, "report": report, "run_all": run_all}
    for name in ("report", "run_all", "_charts", "_report_md", "_report_data"):
        sys.modules.pop(name, None)


def write(directory: Path, name: str, date: str, **document: Any) -> None:
    body = {"benchmark": name, "machine": {**MACHINE, "date": date}, **document}
    (directory / f"{name}.json").write_text(json.dumps(body), encoding="utf-8")


def stream_rows(raw: float, poller: dict[int, float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"variant": "raw", "batch_size": None, "records_per_s": raw, "runs_records_per_s": [raw]}
    ]
    for size, rate in poller.items():
        rows.append(
            {
                "variant": "poller",
                "batch_size": size,
                "records_per_s": rate,
                "ratio_to_raw": rate / raw,
                "runs_records_per_s": [rate * 0.9, rate, rate * 1.1],
            }
        )
    return rows


def test_the_report_states_the_run_and_leaves_out_what_is_older_or_missing(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    write(
        tmp_path,
        "kinesis",
        "2026-01-02T10:05:00+00:00",
        records=20000,
        repeats=3,
        arguments=["--quick"],
        quick=True,
        results=stream_rows(1000.0, {100: 930.0, 1000: 870.0}),
    )
    write(
        tmp_path,
        "dynamodb_streams",
        "2026-01-01T09:00:00+00:00",
        records=5000,
        results=stream_rows(500.0, {100: 490.0}),
    )
    run = {
        "command": "make bench-quick",
        "started": "2026-01-02T10:00:00+00:00",
        "seconds": 300.0,
        "scripts": [
            {"script": "kinesis.py", "exit_code": 0, "seconds": 20.0},
            {"script": "dynamodb_streams.py", "exit_code": 1, "seconds": 3.0},
        ],
    }
    (tmp_path / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (tmp_path / "latency.png").write_bytes(b"a chart of an older run")

    assert bench["report"].main(["--results", str(tmp_path), "--no-charts"]) == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")

    assert "quick: not for comparison" in text
    assert "CPython 3.11.7, 2 CPUs (2 usable), Linux-test" in text
    assert "`dynamodb_streams.py` (exit 1, 3 s)" in text
    assert "`dynamodb_streams.json` (2026-01-01 09:00)" in text  # older than the run: left out
    assert "490" not in text
    assert "930 (837 to 1,023, n=3) records/s | 0.93" in text  # median, spread, ratio
    assert "`latency.json` is missing: run `python benchmarks/latency.py`" in text
    assert not (tmp_path / "latency.png").exists()  # no chart outlives its numbers
    snippet = text[text.index("## README snippet") :]
    assert "| Kinesis, 20,000 records (`kinesis.py`) | 1,000 records/s |" in snippet
    assert "930 (BatchSize 100) / 870 (BatchSize 1000) | 0.93 / 0.87 |" in snippet


def test_the_report_draws_the_charts_it_has_data_for(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    write(tmp_path, "kinesis", "2026-01-02T10:05:00+00:00", results=stream_rows(1e3, {100: 9e2}))
    samples = [float(n) for n in range(1, 101)]
    latency = [
        {"source": "kinesis", "variant": v, "regime": "caught up", "pace": "1 read/s", **extra}
        for v, extra in (
            ("poller", {"samples_ms": samples, "p50_ms": 50.5, "aim_ms": 60, "max_ms": 100.0}),
            ("raw loop", {"samples_ms": samples, "p50_ms": 50.5, "max_ms": 100.0}),
        )
    ]
    write(tmp_path, "latency", "2026-01-02T10:06:00+00:00", results=latency)

    assert bench["report"].main(["--results", str(tmp_path)]) == 0

    for name in ("sources_vs_raw.png", "latency.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    assert not (tmp_path / "sqs_concurrency.png").exists()
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "![Latency per record](latency.png)" in text
    assert "`sqs.json` is missing: run `python benchmarks/sqs.py`" in text


def test_quick_replaces_defaults_but_not_options_given(bench: dict[str, ModuleType]) -> None:
    import argparse

    def parse(argv: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        parser.add_argument("--records", type=int, default=20_000)
        parser.add_argument("--repeats", type=int, default=3)
        quick = {"records": 1_000, "repeats": 1}
        return bench["common"].parse_args_quick(parser, argv, quick)

    assert vars(parse([])) == {"records": 20_000, "repeats": 3, "quick": False}
    assert vars(parse(["--quick"])) == {"records": 1_000, "repeats": 1, "quick": True}
    assert vars(parse(["--quick", "--records", "50"])) == {
        "records": 50,
        "repeats": 1,
        "quick": True,
    }


def test_a_failing_script_does_not_stop_the_run_but_fails_it(
    bench: dict[str, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_all = bench["run_all"]
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    monkeypatch.setattr(run_all, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "fails.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    (tmp_path / "works.py").write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[0]).with_suffix('.ran').write_text("
        "' '.join(sys.argv[1:]))\n",
        encoding="utf-8",
    )

    assert run_all.main(["--quick", "fails.py", "works.py", "absent.py"]) == 1

    assert (tmp_path / "works.ran").read_text() == "--quick"
    summary = json.loads((tmp_path / "results" / "run.json").read_text())
    codes = {s["script"]: s["exit_code"] for s in summary["scripts"]}
    assert codes == {"fails.py": 3, "works.py": 0, "absent.py": None}
    assert summary["quick"] is True
    assert summary["command"] == "make bench-quick"
