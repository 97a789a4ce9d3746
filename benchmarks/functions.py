"""Execution environments: what running a Lambda-style handler in its own process costs.

Why: a handler named in the config runs by default in process environments that talk to poller
over the Lambda Runtime API (one invocation at a time per environment), instead of in the worker's
threads. That buys isolation (a timeout really stops the handler, a crash or a leak stays in its
process) and real parallelism for CPU-bound handlers, at the price of serialising every event to
JSON, two HTTP round trips over loopback and a process per concurrent invocation. This script
puts numbers on both sides, each against the in-thread target (``Isolation = "thread"``) measured
in the same run.

What runs (the handlers are a module written to a temporary directory at start, which becomes the
working directory, so the environments import it as a user's module; every function has
``Timeout = 30``):

1. **Worker throughput, no-op handler.** A whole ``Worker`` (``sources={uuid: MemorySource}``, a
   memory store) reads 4 in-memory shards x 20,000 records of 100 B at BatchSize 100 into a
   ``handler(event, context): return None``, in-thread (the baseline) and in process environments
   (one per shard, started by the run: cold starts included). Timed from ``worker.start()`` to the
   last checkpoint write; "warm" is the rate after every shard's first batch has settled (all
   environments started). CPU per record is the worker's own, and the environments' (reaped
   children, ``RUSAGE_CHILDREN``). Aim: >= 100,000 records/s in process environments, warm (steady state).
2. **Per-invocation overhead.** A ``FunctionSet`` + ``FunctionTarget`` (process) and the
   ``LambdaTarget`` the worker builds for ``Isolation = "thread"`` (a sync handler, run in a worker
   thread), built as ``poller.runtime.wiring.build_target`` builds them, driven directly: one
   invocation at a time, timed from ``invoke_timed`` call to return (event rendering, JSON,
   Runtime API, response parsing), BatchSize 1 and 10, a no-op handler, warm environment (its
   cold start, first invocation included, is reported apart). Rounds alternate the two targets;
   p50/p99 are over all invocations of all rounds.
3. **CPU-bound handler.** A pure-Python loop calibrated at start to about 20 ms, BatchSize 10,
   2 shards, through the Worker: ``ReservedConcurrentExecutions = 1`` vs ``= 2``, in process
   environments (two processes can use two cores: aim >= 1.6x) and in-thread (the GIL: about 1x).
4. **HTTP target.** A minimal aiohttp application answering ``{}`` (its own process, started for
   the run, so it shares neither the worker's event loop nor its CPU accounting) as a
   ``Url`` function, next to the in-thread target: per-invocation mean/p50/p99 driven directly
   (BatchSize 10, one at a time, alternating rounds), and invocations/s through the Worker
   (4 shards, BatchSize 10).

The worker is one asyncio event loop (at most one core for rendering, JSON and HTTP); on a small
machine environments compete with it for the cores. Numbers are medians of alternating runs;
ratios are against the in-thread target measured in the same run.

Run ``python benchmarks/functions.py`` (about 75 s on 2 cores; ``--quick`` is a smoke run of about
10 s; ``--parts`` picks parts). Results are also written to ``benchmarks/results/functions.json``.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from _common import StampingStore, median, parse_args_quick, print_table, write_results

from poller.config import parse_config
from poller.engine.invocation import FunctionIdentity, Invocation
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import Failed
from poller.functions import FunctionSet, FunctionTarget, load_handler, target_for
from poller.observability import configure_logging
from poller.records import Batch
from poller.runtime.worker import Worker
from poller.testing import MemoryPartition, MemorySource

STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/functions-benchmark"
MAPPING = "functions-benchmark"
FUNCTION = "bench"
MODULE = "poller_bench_handlers"
RECORD_BYTES = 100
TIMEOUT = 30.0
#: Records per second the worker should sustain with a no-op handler in process environments,
#: once they are warm.
AIM_PROCESS_RECORDS_PER_S = 100_000
#: Two environments should get this much more done than one on two cores (CPU-bound handler).
AIM_CPU_SCALING = 1.6
#: What one invocation of the CPU-bound handler should cost (calibrated at start).
CPU_HANDLER_SECONDS = 0.020
#: Seconds between two looks at the checkpoints while waiting for a run to settle.
POLL_SECONDS = 0.002
#: A run that has not settled after this long is a failure, not a slow result.
SETTLE_TIMEOUT = 300.0

HANDLERS = '''\
"""Handlers of benchmarks/functions.py (written for one run, then removed)."""

#: Loop length for about {cpu_ms:.0f} ms of pure Python on this machine (calibrated by the run).
ITERATIONS = {iterations}


def noop(event, context):
    return None


def cpu(event, context):
    total = 0
    for i in range(ITERATIONS):
        total += i * i
    return None
'''

#: The HTTP application: POST anything, get ``{}``; prints its port once it listens.
HTTP_APP = """\
import asyncio

from aiohttp import web


async def handle(request):
    await request.read()
    return web.Response(body=b"{}", content_type="application/json")


async def main():
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


# --- handlers, sources, clocks --------------------------------------------------------------------


def spin(iterations: int) -> None:
    """The CPU-bound handler's loop, here for calibration (same code as the module's)."""
    total = 0
    for i in range(iterations):
        total += i * i


def calibrate(seconds: float) -> int:
    """Loop iterations that take about ``seconds`` here (median of a few tries: this machine's
    speed varies with its neighbours)."""
    probe = 200_000
    tries = []
    for _ in range(7):
        started = time.perf_counter()
        spin(probe)
        tries.append(time.perf_counter() - started)
    return max(1000, int(probe * seconds / median(tries)))


@contextmanager
def handler_directory(iterations: int) -> Iterator[Path]:
    """A temporary working directory holding the handler module (and the HTTP app's script).

    It is the working directory while the benchmark runs: environments start there
    (``LAMBDA_TASK_ROOT``) and import the module as a user's; the worker imports it from there
    for the in-thread variants.
    """
    directory = Path(tempfile.mkdtemp(prefix="poller-functions-benchmark-"))
    (directory / f"{MODULE}.py").write_text(
        HANDLERS.format(iterations=iterations, cpu_ms=CPU_HANDLER_SECONDS * 1000),
        encoding="utf-8",
    )
    (directory / "http_app.py").write_text(HTTP_APP, encoding="utf-8")
    previous = os.getcwd()
    os.chdir(directory)
    sys.path.insert(0, str(directory))
    try:
        yield directory
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(MODULE, None)
        os.chdir(previous)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def http_app(directory: Path) -> Iterator[tuple[str, int]]:
    """The aiohttp application in a process of its own; yields its URL and pid."""
    process = subprocess.Popen(
        [sys.executable, str(directory / "http_app.py")],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=directory,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=30):
                raise RuntimeError("the HTTP application did not start within 30 s")
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process, from /proc (None where it is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children (stopped environments)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_partitions(shards: int, per_shard: int) -> list[MemoryPartition]:
    """``shards`` partitions of ``per_shard`` records, each ``RECORD_BYTES`` long."""
    partitions = []
    for index in range(shards):
        partition = MemoryPartition(f"shardId-{index:012d}")
        for n in range(per_shard):
            data = f"{index:04d}:{n:08d}:".encode().ljust(RECORD_BYTES, b"x")
            partition.put(data, key=f"key-{n % 97}", arrival=1_700_000_000.0)
        partitions.append(partition)
    return partitions


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) samples lie (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# --- the worker runs ------------------------------------------------------------------------------


@dataclass(slots=True)
class WorkerRun:
    """One Worker run from start() until every record is checkpointed."""

    records: int
    invocations: int
    wall: float
    #: Records per second after every shard's first checkpoint (environments all started).
    warm_rate: float | None
    worker_cpu: float
    environments_cpu: float
    #: CPU of a separate server process (the HTTP application), when there is one.
    server_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.records / self.wall


def worker_config(function: dict[str, Any], batch_size: int) -> Any:
    return parse_config(
        {
            "store": {"url": "memory://"},
            "worker": {
                "idle_poll_seconds": 0.05,
                "shard_discovery_seconds": 3600,
                "shutdown_grace_seconds": 10,
            },
            "functions": [{"FunctionName": FUNCTION, "Timeout": TIMEOUT, **function}],
            "mappings": [
                {
                    "UUID": MAPPING,
                    "EventSourceArn": STREAM_ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "FunctionName": FUNCTION,
                    "BatchSize": batch_size,
                }
            ],
        }
    )


async def run_worker(
    partitions: Sequence[MemoryPartition],
    function: dict[str, Any],
    batch_size: int,
    server_pid: int | None = None,
) -> WorkerRun:
    """Time a Worker from start() until every shard's checkpoint is at its last record."""
    config = worker_config(function, batch_size)
    store = StampingStore()
    worker = Worker(
        config, sources={MAPPING: MemorySource(partitions, arn=STREAM_ARN)}, store=store
    )
    last = {p.id: p.records[-1].ordinal for p in partitions}
    total = sum(last.values())
    gc.collect()
    children_before = children_cpu_seconds()
    server_before = process_cpu_seconds(server_pid) if server_pid else None
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        await worker.start()
        with anyio.move_on_after(SETTLE_TIMEOUT):
            while any(store.done.get(shard, 0) < ordinal for shard, ordinal in last.items()):
                await anyio.sleep(POLL_SECONDS)
        server_after = process_cpu_seconds(server_pid) if server_pid else None
        metrics = worker.status()[MAPPING]["metrics"]
    finally:
        await worker.stop_and_wait()
    if any(store.done.get(shard, 0) < ordinal for shard, ordinal in last.items()):
        raise TimeoutError(f"the worker did not settle every record within {SETTLE_TIMEOUT:.0f} s")
    if metrics.get("InvokedEventCount") != total or metrics.get("FailedInvokeEventCount", 0):
        raise RuntimeError(f"expected {total} records invoked once without failure: {metrics}")
    return WorkerRun(
        records=total,
        invocations=sum(-(-len(p.records) // batch_size) for p in partitions),
        wall=store.last_write - started,
        warm_rate=store.warm_rate(len(partitions)),
        worker_cpu=store.last_write_cpu - cpu_started,
        environments_cpu=children_cpu_seconds() - children_before,
        server_cpu=(
            server_after - server_before
            if server_after is not None and server_before is not None
            else None
        ),
    )


def summarise(name: str, runs: Sequence[WorkerRun], **extra: Any) -> dict[str, Any]:
    """One table/JSON row: medians over the runs of one variant."""
    records = runs[0].records
    warm = [r.warm_rate for r in runs if r.warm_rate is not None]
    server = [r.server_cpu for r in runs if r.server_cpu is not None]
    return {
        "variant": name,
        **extra,
        "records": records,
        "invocations": runs[0].invocations,
        "records_per_s": median([r.rate for r in runs]),
        "invocations_per_s": median([r.invocations / r.wall for r in runs]),
        "warm_records_per_s": median(warm) if warm else None,
        "wall_s": median([r.wall for r in runs]),
        "worker_cpu_us_per_record": median([r.worker_cpu / records * 1e6 for r in runs]),
        # The most the worker's one event loop could do at that CPU cost per record.
        "worker_bound_records_per_s": median([records / r.worker_cpu for r in runs]),
        "environments_cpu_us_per_record": median(
            [r.environments_cpu / records * 1e6 for r in runs]
        ),
        "server_cpu_us_per_record": median([s / records * 1e6 for s in server]) if server else None,
        "runs_records_per_s": [r.rate for r in runs],
    }


# --- part 1: no-op throughput ---------------------------------------------------------------------


def measure_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    partitions = make_partitions(args.shards, args.records_per_shard)
    variants = {
        "in-thread (baseline)": {"Handler": f"{MODULE}.noop", "Isolation": "thread"},
        "process environments": {"Handler": f"{MODULE}.noop"},
    }
    runs: dict[str, list[WorkerRun]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, function in variants.items():
            runs[name].append(anyio.run(run_worker, partitions, function, args.batch_size))
    rows = [
        summarise(name, runs[name], isolation=function.get("Isolation", "process"))
        for name, function in variants.items()
    ]
    baseline = rows[0]
    for row in rows:
        row["ratio_to_thread"] = row["records_per_s"] / baseline["records_per_s"]
        row["batch_size"] = args.batch_size
        is_process = row["isolation"] == "process"
        row["aim_records_per_s"] = AIM_PROCESS_RECORDS_PER_S if is_process else None
        # A worker runs for hours: the aim is the steady rate, once every environment is warm
        # (the cold starts, about 0.1 s each, are in 'records/s' and weigh on a 1 s run).
        warm = row.get("warm_records_per_s") or 0
        row["meets_aim"] = warm >= AIM_PROCESS_RECORDS_PER_S if is_process else None
    return rows


# --- part 2 and 4: per-invocation latency, driven directly ----------------------------------------


def one_batch(size: int) -> tuple[MemorySource, Batch]:
    """A batch of ``size`` records of one shard, and the source that renders its events."""
    partition = MemoryPartition("shardId-000000000000")
    for n in range(size):
        data = f"0000:{n:08d}:".encode().ljust(RECORD_BYTES, b"x")
        partition.put(data, key=f"key-{n % 97}", arrival=1_700_000_000.0)
    source = MemorySource([partition], arn=STREAM_ARN)
    batch = Batch(MAPPING, partition.id, tuple(partition.records), "latency")
    return source, batch


async def build_targets(
    functions: FunctionSet, codec: MemorySource, variants: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One target per variant, built as ``poller.runtime.wiring.build_target`` builds them:
    in-thread (``target_for``) or a ``FunctionTarget`` on the function's environments."""
    targets: dict[str, Any] = {}
    for name, fields in variants.items():
        config = parse_config(
            {
                "functions": [{"FunctionName": FUNCTION, "Timeout": TIMEOUT, **fields}],
                "mappings": [],
            }
        ).functions[0]
        identity = FunctionIdentity(
            FUNCTION, f"arn:aws:lambda:us-east-1:000000000000:function:{FUNCTION}"
        )
        counters = MappingCounters()
        if config.way == "thread":
            assert config.handler is not None
            targets[name] = target_for(
                load_handler(config.handler),
                codec,
                report_batch_item_failures=False,
                limiter=anyio.CapacityLimiter(64),
                environments=functions.environments(config),
                counters=counters,
            )
        else:
            function = await functions.function(config, identity)
            targets[name] = FunctionTarget(
                function, codec, report_batch_item_failures=False, counters=counters
            )
    return targets


async def invoke_once(target: Any, batch: Batch) -> float:
    """Seconds one ``invoke_timed`` took (what the engine calls for a timed target)."""
    invocation = Invocation(
        request_id=str(uuid.uuid4()),
        deadline=anyio.current_time() + TIMEOUT,
        function_name=FUNCTION,
        function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{FUNCTION}",
    )
    started = time.perf_counter()
    outcome = await target.invoke_timed(batch, invocation, TIMEOUT)
    elapsed = time.perf_counter() - started
    if isinstance(outcome, Failed):
        raise RuntimeError(f"the benchmark handler failed: {outcome}")
    return elapsed


async def measure_latency(
    variants: dict[str, dict[str, Any]],
    batch_sizes: Sequence[int],
    invocations: int,
    repeats: int,
) -> tuple[dict[tuple[str, int], list[float]], dict[str, float]]:
    """Per variant and batch size, the seconds of every timed invocation (alternating rounds),
    and each variant's first invocation (for environments: start, init and the call)."""
    samples: dict[tuple[str, int], list[float]] = {}
    functions = FunctionSet(region="us-east-1")
    try:
        batches = {size: one_batch(size) for size in batch_sizes}
        codec = batches[batch_sizes[0]][0]
        targets = await build_targets(functions, codec, variants)
        cold: dict[str, float] = {}
        for name, target in targets.items():
            cold[name] = await invoke_once(target, batches[batch_sizes[0]][1])
            for _ in range(20):  # warm: first calls, thread pool, connections
                await invoke_once(target, batches[batch_sizes[0]][1])
        gc.collect()
        for _ in range(repeats):
            for size in batch_sizes:
                batch = batches[size][1]
                for name, target in targets.items():
                    timings = samples.setdefault((name, size), [])
                    for _ in range(invocations):
                        timings.append(await invoke_once(target, batch))
    finally:
        await functions.aclose()
    return samples, cold


def latency_rows(
    samples: dict[tuple[str, int], list[float]], cold: dict[str, float], baseline: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for (name, size), values in samples.items():
        ordered = sorted(values)
        base = sorted(samples[(baseline, size)])
        p50, p99 = percentile(ordered, 0.5) * 1e6, percentile(ordered, 0.99) * 1e6
        mean = sum(ordered) / len(ordered) * 1e6
        rows.append(
            {
                "variant": name,
                "batch_size": size,
                "invocations": len(values),
                "mean_us": mean,
                "p50_us": p50,
                "p99_us": p99,
                "p50_over_thread_us": p50 - percentile(base, 0.5) * 1e6,
                "mean_over_thread_us": mean - sum(base) / len(base) * 1e6,
                "p50_ratio_to_thread": p50 / (percentile(base, 0.5) * 1e6),
                "first_invocation_ms": cold[name] * 1000,
            }
        )
    rows.sort(key=lambda r: (r["batch_size"], r["variant"] != baseline))
    return rows


def print_latency(title: str, rows: Sequence[dict[str, Any]]) -> None:
    print_table(
        title,
        [
            "variant",
            "batch",
            "n",
            "mean us",
            "p50 us",
            "p99 us",
            "p50 +us",
            "mean +us",
            "p50 x",
            "1st call ms",
        ],
        [
            [
                r["variant"],
                r["batch_size"],
                r["invocations"],
                r["mean_us"],
                r["p50_us"],
                r["p99_us"],
                r["p50_over_thread_us"],
                r["mean_over_thread_us"],
                r["p50_ratio_to_thread"],
                r["first_invocation_ms"],
            ]
            for r in rows
        ],
    )


# --- part 3: CPU-bound scaling --------------------------------------------------------------------


def measure_cpu_scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    partitions = make_partitions(args.cpu_shards, args.cpu_invocations_per_shard * args.cpu_batch)
    variants: dict[str, tuple[str, int]] = {
        "process, Reserved 1": ("process", 1),
        "process, Reserved 2": ("process", 2),
        "in-thread, Reserved 1": ("thread", 1),
        "in-thread, Reserved 2": ("thread", 2),
    }
    runs: dict[str, list[WorkerRun]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (isolation, reserved) in variants.items():
            function = {
                "Handler": f"{MODULE}.cpu",
                "Isolation": isolation,
                "ReservedConcurrentExecutions": reserved,
            }
            runs[name].append(anyio.run(run_worker, partitions, function, args.cpu_batch))
    rows = {
        name: summarise(name, runs[name], isolation=isolation, reserved=reserved)
        for name, (isolation, reserved) in variants.items()
    }
    for row in rows.values():
        one = rows[f"{row['variant'].split(',')[0]}, Reserved 1"]
        row["ratio_to_reserved_1"] = row["records_per_s"] / one["records_per_s"]
        warm, warm_one = row["warm_records_per_s"], one["warm_records_per_s"]
        row["warm_ratio_to_reserved_1"] = warm / warm_one if warm and warm_one else None
        row["batch_size"] = args.cpu_batch
        aimed = row["isolation"] == "process" and row["reserved"] == 2
        row["aim_ratio"] = AIM_CPU_SCALING if aimed else None
        row["meets_aim"] = row["ratio_to_reserved_1"] >= AIM_CPU_SCALING if aimed else None
    return list(rows.values())


# --- part 4: HTTP application ---------------------------------------------------------------------


def measure_http(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    with http_app(directory) as (url, pid):
        variants = {
            "in-thread (baseline)": {"Handler": f"{MODULE}.noop", "Isolation": "thread"},
            "HTTP application": {"Url": url},
        }
        samples, cold = anyio.run(
            measure_latency, variants, [args.http_batch], args.invocations, args.repeats
        )
        latency = latency_rows(samples, cold, "in-thread (baseline)")
        partitions = make_partitions(args.shards, args.http_records_per_shard)
        runs: dict[str, list[WorkerRun]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, function in variants.items():
                server = pid if "Url" in function else None
                runs[name].append(
                    anyio.run(run_worker, partitions, function, args.http_batch, server)
                )
    throughput = [summarise(name, runs[name]) for name in variants]
    for row in throughput:
        row["ratio_to_thread"] = row["invocations_per_s"] / throughput[0]["invocations_per_s"]
        row["batch_size"] = args.http_batch
    return {"latency": latency, "throughput": throughput}


# --- output ---------------------------------------------------------------------------------------


def aim_text(aim: Any, met: bool | None) -> str:
    if met is None:
        return "-"
    return f"{aim:,} {'met' if met else 'MISSED'}"


def print_worker_rows(title: str, rows: Sequence[dict[str, Any]], ratio_key: str) -> None:
    print_table(
        title,
        [
            "variant",
            "batch",
            "records/s",
            "warm rec/s",
            "inv/s",
            "wall s",
            "worker CPU us/rec",
            "worker-bound rec/s",
            "env CPU us/rec",
            "ratio",
            "aim",
        ],
        [
            [
                r["variant"],
                r["batch_size"],
                r["records_per_s"],
                r["warm_records_per_s"],
                r["invocations_per_s"],
                r["wall_s"],
                r["worker_cpu_us_per_record"],
                r["worker_bound_records_per_s"],
                r["environments_cpu_us_per_record"]
                if r.get("server_cpu_us_per_record") is None
                else r["server_cpu_us_per_record"],
                r[ratio_key],
                aim_text(r.get("aim_records_per_s") or r.get("aim_ratio"), r.get("meets_aim")),
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--records-per-shard", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--invocations", type=int, default=1000, help="per round and variant")
    parser.add_argument("--cpu-shards", type=int, default=2)
    parser.add_argument("--cpu-batch", type=int, default=10)
    parser.add_argument("--cpu-invocations-per-shard", type=int, default=80)
    parser.add_argument("--http-batch", type=int, default=10)
    parser.add_argument("--http-records-per-shard", type=int, default=5_000)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["throughput", "latency", "cpu", "http"],
        choices=["throughput", "latency", "cpu", "http"],
    )
    quick = {
        "repeats": 1,
        "records_per_shard": 2_000,
        "invocations": 100,
        "cpu_invocations_per_shard": 10,
        "http_records_per_shard": 500,
    }
    args = parse_args_quick(parser, argv, quick)
    configure_logging(level="warning", stream=sys.stderr)

    iterations = calibrate(CPU_HANDLER_SECONDS)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with handler_directory(iterations) as directory:
        print(
            f"Execution environments vs in-thread, {os.cpu_count()} CPUs; median of "
            f"{args.repeats} alternating run(s). Handlers in {directory}; the CPU-bound handler "
            f"loops {iterations:,} times (about {CPU_HANDLER_SECONDS * 1000:.0f} ms here)."
        )
        if "throughput" in args.parts:
            rows = measure_throughput(args)
            results["throughput"] = rows
            print_worker_rows(
                f"1. Worker throughput, no-op handler: {args.shards} shards x "
                f"{args.records_per_shard:,} records of {RECORD_BYTES} B "
                f"('ratio' = records/s over in-thread; 'env CPU' = environments' CPU)",
                rows,
                "ratio_to_thread",
            )
        if "latency" in args.parts:
            variants = {
                "in-thread (baseline)": {"Handler": f"{MODULE}.noop", "Isolation": "thread"},
                "process environment": {"Handler": f"{MODULE}.noop"},
            }
            samples, cold = anyio.run(
                measure_latency,
                variants,
                args.latency_batch_sizes,
                args.invocations,
                args.repeats,
            )
            rows = latency_rows(samples, cold, "in-thread (baseline)")
            results["latency"] = rows
            print_latency(
                "2. Per-invocation time, no-op handler, one invocation at a time, invoke_timed "
                "call to return ('+us' and 'x' against in-thread; '1st call' = cold start)",
                rows,
            )
        if "cpu" in args.parts:
            rows = measure_cpu_scaling(args)
            results["cpu_bound"] = rows
            print_worker_rows(
                f"3. CPU-bound handler (~{CPU_HANDLER_SECONDS * 1000:.0f} ms), {args.cpu_shards} "
                f"shards x {args.cpu_invocations_per_shard} invocations "
                "('ratio' = records/s over Reserved 1 of the same isolation)",
                rows,
                "ratio_to_reserved_1",
            )
        if "http" in args.parts:
            http = measure_http(args, directory)
            results["http"] = http
            print_latency(
                "4a. HTTP application (own process) vs in-thread: per-invocation time, "
                "one at a time",
                http["latency"],
            )
            print_worker_rows(
                f"4b. HTTP application vs in-thread through the Worker: {args.shards} shards x "
                f"{args.http_records_per_shard:,} records ('ratio' = invocations/s over "
                "in-thread; 'env CPU' = the application's CPU)",
                http["throughput"],
                "ratio_to_thread",
            )

    path = write_results(
        "functions",
        {
            "config": {
                "quick": args.quick,
                "repeats": args.repeats,
                "shards": args.shards,
                "records_per_shard": args.records_per_shard,
                "record_bytes": RECORD_BYTES,
                "batch_size": args.batch_size,
                "latency_batch_sizes": args.latency_batch_sizes,
                "invocations_per_round": args.invocations,
                "cpu_shards": args.cpu_shards,
                "cpu_batch": args.cpu_batch,
                "cpu_invocations_per_shard": args.cpu_invocations_per_shard,
                "cpu_handler_iterations": iterations,
                "cpu_handler_target_s": CPU_HANDLER_SECONDS,
                "http_batch": args.http_batch,
                "http_records_per_shard": args.http_records_per_shard,
                "aim_process_records_per_s": AIM_PROCESS_RECORDS_PER_S,
                "aim_cpu_scaling": AIM_CPU_SCALING,
                "duration_s": time.perf_counter() - started,
            },
            **results,
        },
    )
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
