"""Helpers shared by the benchmark scripts: clocks, medians, a text table and the JSON result file.

Benchmarks print a plain table to stdout and keep the same numbers, with a description of the
machine they ran on, in ``benchmarks/results/<name>.json``. The files are git-ignored: they are
measurements of one machine on one day, compared within a run, never against each other.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from poller.config import AwsConfig, parse_config
from poller.engine.state import Checkpoint
from poller.records import Record
from poller.runtime.worker import Worker
from poller.stores.memory import MemoryStore

__all__ = [
    "RESULTS_DIR",
    "Timing",
    "machine_info",
    "median",
    "parse_args_quick",
    "peak_rss_kib",
    "print_table",
    "rss_kib",
    "timed",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(slots=True)
class Timing:
    """Wall-clock and process CPU seconds of one measured interval."""

    wall: float = 0.0
    cpu: float = 0.0
    #: ``perf_counter()`` when the interval started.
    started: float = 0.0
    #: ``process_time()`` when the interval started.
    cpu_started: float = 0.0

    def elapsed(self) -> float:
        """Wall seconds since the interval started (``wall`` is filled in only at its end)."""
        return time.perf_counter() - self.started


@contextmanager
def timed() -> Iterator[Timing]:
    """Measure the ``with`` body: ``perf_counter`` for wall time, ``process_time`` for CPU time."""
    timing = Timing()
    timing.cpu_started = time.process_time()
    timing.started = time.perf_counter()
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - timing.started
        timing.cpu = time.process_time() - timing.cpu_started


def median(values: Sequence[float]) -> float:
    """The median of the repetitions of one measurement."""
    return float(statistics.median(values))


def rss_kib() -> int:
    """Resident set size of this process now, in KiB (VmRSS; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kib() -> int:
    """The highest resident set size this process reached so far, in KiB (Linux ``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: interpreter, CPUs, platform, and when they were taken."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print ``rows`` under ``headers`` as an aligned plain-text table (numbers right-aligned)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    numeric = [
        all(isinstance(row[i], int | float) for row in rows if i < len(row)) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(widths[i]) if numeric[i] else value.ljust(widths[i])
            for i, value in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def parse_args_quick(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: Mapping[str, Any]
) -> argparse.Namespace:
    """Parse ``argv`` with a ``--quick`` flag that swaps the defaults for ``quick``'s values.

    ``make bench-quick`` runs every script this way to check that the benchmarks and the report
    work in a few minutes; its numbers come from reduced sizes and single runs and are not for
    comparison. Options given on the command line still win over the quick values.
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short check run: "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in quick.items()),
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def write_results(name: str, results: Mapping[str, Any]) -> Path:
    """Write ``results`` and the machine description to ``benchmarks/results/<name>.json``.

    The command line is kept too (``arguments``), so the report can state each script's
    parameters and tell a ``--quick`` run from a full one whatever the script records itself.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "machine": machine_info(),
        "arguments": sys.argv[1:],
        "quick": "--quick" in sys.argv[1:],
        **results,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
#: Static credentials for the emulator; never real ones.
ACCESS_KEY = "benchmark"
SECRET_KEY = "benchmark"


def aws_config(endpoint: str) -> AwsConfig:
    """The ``[aws]`` settings of a benchmark against a local emulator at ``endpoint``."""
    return AwsConfig(
        region=REGION, endpoint_url=endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY
    )


def _load_servers() -> Any:
    """``scripts/servers.py``, imported by path (scripts/ is not a package; typed loosely)."""
    spec = importlib.util.spec_from_file_location(
        "poller_benchmark_servers", ROOT / "scripts" / "servers.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load scripts/servers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server for one benchmark run; yields its endpoint and stops it at the end."""
    with moto_process() as (endpoint, _pid):
        yield endpoint


@contextmanager
def moto_process() -> Iterator[tuple[str, int]]:
    """A moto server for one benchmark run; yields its endpoint and process id (a benchmark
    that asks whether moto is its bottleneck reads the process's CPU time) and stops it at the end.

    Its state file and log go to a temporary directory, not the repository's ``.servers/``,
    which a test run on the same checkout may be using at the same time.
    """
    servers = _load_servers()
    state_dir = Path(tempfile.mkdtemp(prefix="poller-benchmark-"))
    servers.STATE_DIR = state_dir
    server = servers.start_moto()
    try:
        print(f"moto server {server.endpoint} (pid {server.pid})")
        yield server.endpoint, server.pid
    finally:
        servers.stop(server)
        shutil.rmtree(state_dir, ignore_errors=True)


async def read_poller(
    endpoint: str, arn: str, total: int, batch_size: int, *, label: str, time_limit: float
) -> Timing:
    """A Worker from start() until its typed no-op handler has been handed every record.

    The mapping reads ``arn`` from TRIM_HORIZON with a memory store; ``label`` names it.
    """
    mapping_id = f"{label}-benchmark-{uuid.uuid4().hex[:8]}"
    config = parse_config(
        {
            "aws": aws_config(endpoint).model_dump(exclude_none=True),
            "store": {"url": "memory://"},
            "worker": {"shard_discovery_seconds": 3600, "shutdown_grace_seconds": 10},
            "mappings": [
                {
                    "UUID": mapping_id,
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": batch_size,
                }
            ],
        }
    )
    handed = 0
    everything = anyio.Event()

    async def handler(batch: Sequence[Record]) -> None:
        nonlocal handed
        handed += len(batch)
        if handed >= total:
            everything.set()

    worker = Worker(config, handlers={mapping_id: handler})
    try:
        with timed() as timing:
            await worker.start()
            with anyio.move_on_after(time_limit):
                await everything.wait()
    finally:
        await worker.stop_and_wait()
    if handed != total:
        raise RuntimeError(f"poller handed over {handed} records, expected exactly {total}")
    return timing


def rows_against_raw(
    samples: Mapping[str, Sequence[Timing]], count: int, aim: float
) -> list[dict[str, Any]]:
    """Table rows for a raw-loop-versus-poller read: ``samples`` maps ``"raw"`` and
    ``"poller-<BatchSize>"`` to their timings; medians, and ratios to the raw loop's median."""
    raw_rate = median([count / t.wall for t in samples["raw"]])
    raw_cpu = median([t.cpu / count * 1e6 for t in samples["raw"]])
    rows: list[dict[str, Any]] = []
    for key, timings in samples.items():
        rate = median([count / t.wall for t in timings])
        cpu_us = median([t.cpu / count * 1e6 for t in timings])
        is_raw = key == "raw"
        rows.append(
            {
                "variant": "raw aiobotocore loop" if is_raw else "poller Worker, typed no-op",
                "batch_size": None if is_raw else int(key.split("-")[1]),
                "records_per_s": rate,
                "wall_s": median([t.wall for t in timings]),
                "cpu_s": median([t.cpu for t in timings]),
                "cpu_us_per_record": cpu_us,
                "ratio_to_raw": rate / raw_rate,
                "cpu_ratio_to_raw": cpu_us / raw_cpu,
                "meets_aim": None if is_raw else rate / raw_rate >= aim,
                "runs_records_per_s": [count / t.wall for t in timings],
            }
        )
    return rows


def print_rows_against_raw(title: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Print rows from :func:`rows_against_raw` as a table."""
    print_table(
        title,
        ["variant", "batch", "records/s", "wall s", "CPU us/rec", "CPU vs raw", "vs raw", "aim"],
        [
            [
                r["variant"],
                r["batch_size"],
                r["records_per_s"],
                r["wall_s"],
                r["cpu_us_per_record"],
                r["cpu_ratio_to_raw"],
                r["ratio_to_raw"],
                "-" if r["meets_aim"] is None else ("met" if r["meets_aim"] else "MISSED"),
            ]
            for r in rows
        ],
    )


@contextmanager
def kafka_server(bootstrap: str | None = None) -> Iterator[str]:
    """A Kafka bootstrap address: ``bootstrap`` when given, else a tansu broker for this run.

    A broker started here keeps its log in a temporary directory (not the repository's
    ``.servers/``, which a test run may be using) and is stopped at the end.
    """
    if bootstrap:
        print(f"kafka broker {bootstrap} (given)")
        yield bootstrap
        return
    servers = _load_servers()
    state_dir = Path(tempfile.mkdtemp(prefix="poller-benchmark-"))
    servers.STATE_DIR = state_dir
    server = servers.start_kafka()
    try:
        print(f"kafka broker (tansu) {server.endpoint} (pid {server.pid})")
        yield server.endpoint
    finally:
        servers.stop(server)
        shutil.rmtree(state_dir, ignore_errors=True)


class StampingStore(MemoryStore):
    """A MemoryStore that notes when each checkpoint was written (wall and worker CPU clock).

    A benchmark's waiting loop only looks now and then; the stamps give the exact moment the run
    settled, and when every shard had its first batch done.
    """

    def __init__(self) -> None:
        super().__init__()
        self.done: dict[str, int] = {}
        self.writes: list[tuple[float, str, int]] = []
        self.last_write = 0.0
        self.last_write_cpu = 0.0

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        await super().put_checkpoint(mapping_id, partition, checkpoint)
        self.last_write = time.perf_counter()
        self.last_write_cpu = time.process_time()
        self.done[partition] = max(self.done.get(partition, 0), checkpoint.ordinal)
        self.writes.append((self.last_write, partition, checkpoint.ordinal))

    def warm_rate(self, partitions: int) -> float | None:
        """Records per second from the moment every partition had a checkpoint to the last one."""
        first: dict[str, float] = {}
        for at, partition, _ in self.writes:
            first.setdefault(partition, at)
        if len(first) < partitions:
            return None
        warm_from = max(first.values())
        done_then: dict[str, int] = {}
        for at, partition, ordinal in self.writes:
            if at <= warm_from:
                done_then[partition] = max(done_then.get(partition, 0), ordinal)
        span = self.last_write - warm_from
        remaining = sum(self.done.values()) - sum(done_then.values())
        return remaining / span if span > 0 and remaining > 0 else None
