"""Run benchmark scripts one after another and note what happened in ``results/run.json``.

Why: ``make bench`` takes a long while, and each script starts its own servers and writes its
own result file. One that fails (a broker that does not start, a run that times out) should not
throw away the others' measurements, so every script runs whatever happened before it; but the
failure must not pass unnoticed either: this exits non-zero when any script failed, after the
last one, and ``run.json`` names it, so the report says so and leaves out the older result file
the failed script left behind (numbers and charts must come from one run).

Each script runs in its own process group; with ``--timeout`` a script still running after that
many seconds is stopped (its group, so the servers it started stop with it) and counted as
failed. ``--quick`` passes ``--quick`` on to every script (``make bench-quick``).

Run ``python benchmarks/run_all.py [--quick] [--timeout S] engine.py kinesis.py ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR

HERE = Path(__file__).resolve().parent
#: Seconds a stopped script gets to end after SIGTERM before it is killed.
STOP_GRACE = 10.0


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _write(summary: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "run.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the script's process group: SIGTERM, then SIGKILL after STOP_GRACE."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_script(script: str, arguments: list[str], timeout: float | None) -> dict[str, Any]:
    """Run one script with this interpreter; what it printed goes straight to our output."""
    path = HERE / script
    started = time.perf_counter()
    if not path.is_file():
        print(f"\n=== {script}: not found in {HERE}", flush=True)
        return {
            "script": script,
            "arguments": arguments,
            "exit_code": None,
            "seconds": 0.0,
            "error": "not found",
        }
    print(f"\n=== {script} {' '.join(arguments)}".rstrip(), flush=True)
    process = subprocess.Popen([sys.executable, str(path), *arguments], start_new_session=True)
    error = None
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        code, error = process.returncode, f"stopped after {timeout:.0f} s"
    except KeyboardInterrupt:
        _stop(process)
        raise
    seconds = time.perf_counter() - started
    outcome = error or ("ok" if code == 0 else f"exit {code}")
    print(f"=== {script}: {outcome} in {seconds:.0f} s", flush=True)
    return {
        "script": script,
        "arguments": arguments,
        "exit_code": code if error is None else None,
        "seconds": seconds,
        **({"error": error} if error else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="+", help="script file names in benchmarks/")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script")
    args = parser.parse_args(argv)
    arguments = ["--quick"] if args.quick else []
    began = time.perf_counter()
    summary: dict[str, Any] = {
        "command": "make bench-quick" if args.quick else "make bench",
        "quick": args.quick,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": _load(),
        "scripts": [],
    }
    _write(summary)  # a run cut short still tells the report where it began
    for script in args.scripts:
        summary["scripts"].append(run_script(script, arguments, args.timeout))
        summary["seconds"] = time.perf_counter() - began
        _write(summary)
    summary["load_after"] = _load()
    _write(summary)
    failed = [s["script"] for s in summary["scripts"] if s["exit_code"] != 0]
    print(
        f"\n{len(args.scripts)} benchmark scripts in {summary['seconds']:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "; all finished"),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
