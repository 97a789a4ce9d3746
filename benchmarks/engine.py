"""Engine overhead on an in-memory source: records per second, microseconds per record, idle memory.

Why: the engine sits between every record and the user's handler. Its own cost (reading ahead,
cutting batches, building Batch objects, invoking, settling, checkpointing) must stay small next
to any real handler, and a worker must be able to hold many quiet shards. With a memory source, a
memory store and a handler that does nothing, everything measured here is the engine itself.

What runs:

* 64 in-memory shards (MemoryPartition) of 5,000 records of 100 bytes each (320,000 records),
  read by a StreamMappingRunner with a MemoryStore, BatchSize 10, 100 and 1000, until every shard's
  checkpoint has reached its last record. Completion is detected by polling the checkpoints
  every few milliseconds, bounded by a timeout; nothing waits on a fixed sleep.
* (a) a typed handler ``async def h(batch): return None`` and (b) a Lambda-style handler
  ``async def h(event, context): return None``, for which the source renders the AWS event.
* Baselines in the same run: a plain loop that walks the same records in chunks of the batch
  size and awaits the same typed handler, and the same loop that also renders the Lambda event.
  The plain loop does almost nothing per record, so the engine is not reported as a ratio of it
  (that ratio would be tiny whatever the engine did): the loop's CPU per record is subtracted
  instead, giving the engine's own cost per record and per batch, and the share of each record's
  time that goes to the engine rather than to the loop (and, Lambda-style, to rendering).
* 1,000 idle shards (empty, caught up): resident memory growth per shard, and the CPU the idle
  polling costs.

The engine runs on one asyncio event loop, so it uses at most one core whatever the machine has;
the CPU/wall column shows how much of that core it got. Numbers are medians of the repetitions.

Run ``python benchmarks/engine.py`` (``--profile`` adds a cProfile of one typed and one
Lambda-style run; ``--quick`` is a check run of a few seconds: 16 shards, one repeat, 200 idle
shards). Results are also written to ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from _common import (
    StampingStore,
    Timing,
    median,
    parse_args_quick,
    peak_rss_kib,
    print_table,
    rss_kib,
    timed,
    write_results,
)
from _profile import profile_call

from poller.config import ResolvedMapping, parse_config
from poller.engine.discard import Discard
from poller.engine.invocation import InvocationContext
from poller.engine.streams import StreamMappingRunner
from poller.functions import target_for
from poller.observability import configure_logging
from poller.records import Record
from poller.stores.memory import MemoryStore
from poller.testing import MemoryPartition, MemorySource

STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/engine-benchmark"
RECORD_BYTES = 100
#: Records per second the engine should sustain on one core with a no-op handler.
AIM_TYPED = 200_000
AIM_LAMBDA = 100_000
#: Seconds between two looks at the checkpoints while waiting for a run to settle.
POLL_SECONDS = 0.002
#: A run that has not settled after this long is a failure, not a slow result.
SETTLE_TIMEOUT = 300.0
#: Idle poll of the throughput runs: small, so a shard that finished is noticed quickly.
IDLE_POLL_BUSY = 0.05
#: Idle poll of the idle-shard run: the worker default (about what Lambda does).
IDLE_POLL_IDLE = 1.0
#: The plain-loop baseline repeats its pass until it has run at least this long.
BASELINE_MIN_SECONDS = 0.3


async def typed_noop(batch: Sequence[Record]) -> None:
    """The typed handler: takes the batch, does nothing (also called by the baseline loop)."""
    return None


async def lambda_noop(event: dict[str, Any], context: Any) -> None:
    """The Lambda-style handler: takes the rendered event and a context, does nothing."""
    return None


class DiscardCounter:
    """On-failure sink that only counts: a no-op handler never fails, so this stays at zero."""

    def __init__(self) -> None:
        self.discarded = 0

    async def deliver(self, discard: Discard) -> None:
        self.discarded += len(discard.records)


def mapping_for(batch_size: int) -> ResolvedMapping:
    """A Kinesis-shaped mapping at TRIM_HORIZON with ``batch_size``, validated like a config file."""
    config = parse_config(
        {
            "store": {"url": "memory://"},
            "mappings": [
                {
                    "UUID": f"engine-benchmark-{batch_size}",
                    "EventSourceArn": STREAM_ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": batch_size,
                }
            ],
        }
    )
    return config.mappings[0].resolved()


def make_partitions(shards: int, per_shard: int) -> list[MemoryPartition]:
    """``shards`` partitions of ``per_shard`` records, each ``RECORD_BYTES`` long."""
    partitions = []
    arrival = 1_700_000_000.0
    for index in range(shards):
        partition = MemoryPartition(f"shardId-{index:012d}")
        for n in range(per_shard):
            data = f"{index:04d}:{n:08d}:".encode().ljust(RECORD_BYTES, b"x")
            partition.put(data, key=f"key-{n % 97}", arrival=arrival)
        partitions.append(partition)
    return partitions


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``condition`` every POLL_SECONDS until it holds; fail after ``within`` seconds.

    Polling on purpose: the engine offers no event for "every record settled", and the benchmark
    must observe it from outside without adding work to the handler.
    """
    with anyio.move_on_after(within):
        while not condition():
            await anyio.sleep(POLL_SECONDS)
        return
    raise TimeoutError(f"{what} did not happen within {within:.0f} s")


def new_runner(
    source: MemorySource,
    handler: Callable[..., Awaitable[None]],
    batch_size: int,
    idle: float,
    store: MemoryStore | None = None,
) -> tuple[StreamMappingRunner, DiscardCounter]:
    sink = DiscardCounter()
    mapping = mapping_for(batch_size)
    target = target_for(handler, source, report_batch_item_failures=False)
    store = store or MemoryStore()
    context = InvocationContext(mapping, target, source, sink=sink, store=store)
    runner = StreamMappingRunner(context, source, store, discovery_interval=3600.0, idle_poll=idle)
    return runner, sink


async def stop_runner(runner: StreamMappingRunner) -> None:
    runner.stop()
    with anyio.fail_after(30):
        await runner.done.wait()


async def run_engine(
    partitions: Sequence[MemoryPartition],
    handler: Callable[..., Awaitable[None]],
    batch_size: int,
    collect: bool = True,
) -> Timing:
    """Time one mapping from start until every shard's checkpoint is at its last record."""
    source = MemorySource(partitions)
    store = StampingStore()
    runner, sink = new_runner(source, handler, batch_size, IDLE_POLL_BUSY, store)
    last = {p.id: p.records[-1].ordinal for p in partitions}

    def settled() -> bool:
        running = runner.partitions
        if len(running) < len(last):
            return False
        for shard, partition in running.items():
            checkpoint = partition.checkpoint
            if checkpoint is None or checkpoint.ordinal < last[shard]:
                return False
        return True

    if collect:
        gc.collect()
    async with anyio.create_task_group() as group:
        with timed() as timing:
            group.start_soon(runner.run)
            await wait_until(settled, SETTLE_TIMEOUT, "settling every record")
        # The run ends at the last checkpoint write, not when the poll noticed it.
        timing.wall = store.last_write - timing.started
        timing.cpu = store.last_write_cpu - timing.cpu_started
        await stop_runner(runner)
    if sink.discarded:
        raise RuntimeError(f"{sink.discarded} records were discarded; the run is not valid")
    invoked = runner.counters.invoked_events
    if invoked != sum(len(p.records) for p in partitions):
        raise RuntimeError(f"handler saw {invoked} records, expected every record exactly once")
    return timing


async def run_baseline(
    partitions: Sequence[MemoryPartition], batch_size: int, render: bool
) -> tuple[Timing, int]:
    """The least any engine could do: walk the records in chunks and await the handler.

    With ``render``, each chunk is also rendered as the Lambda event first (what a Lambda-style
    target cannot avoid). The pass repeats until it has run BASELINE_MIN_SECONDS; returns the
    timing and how many records were handed over.
    """
    source = MemorySource(partitions)
    total = sum(len(p.records) for p in partitions)
    handed = 0
    gc.collect()
    with timed() as timing:
        while True:
            for partition in partitions:
                records = partition.records
                for start in range(0, len(records), batch_size):
                    chunk = records[start : start + batch_size]
                    if render:
                        await lambda_noop(source.render_event(chunk), None)
                    else:
                        await typed_noop(chunk)
            handed += total
            if timing.elapsed() >= BASELINE_MIN_SECONDS:
                break
    return timing, handed


async def measure_idle(shards: int) -> dict[str, float]:
    """Resident memory per idle shard and the CPU their idle polling costs."""
    # Warm up with a few shards so that imports and first allocations are not counted.
    warm, _ = new_runner(
        MemorySource([MemoryPartition(f"warm-{i}") for i in range(8)]),
        typed_noop,
        100,
        IDLE_POLL_IDLE,
    )
    async with anyio.create_task_group() as group:
        group.start_soon(warm.run)
        await wait_until(lambda: warm.idle and len(warm.partitions) == 8, 30, "warm-up idle")
        await stop_runner(warm)

    source = MemorySource([MemoryPartition(f"shardId-{i:012d}") for i in range(shards)])
    runner, _ = new_runner(source, typed_noop, 100, IDLE_POLL_IDLE)
    gc.collect()
    rss_before, peak_before = rss_kib(), peak_rss_kib()
    async with anyio.create_task_group() as group:
        with timed() as startup:
            group.start_soon(runner.run)
            await wait_until(
                lambda: runner.idle and len(runner.partitions) == shards, 120, "every shard idle"
            )
        gc.collect()
        rss_idle = rss_kib()
        # Stay idle for a few idle-poll periods: every shard reads its empty partition again.
        with timed() as quiet:
            await anyio.sleep(3 * IDLE_POLL_IDLE)
        rss_after = max(rss_idle, rss_kib())
        peak_after = peak_rss_kib()
        await stop_runner(runner)
    return {
        "shards": shards,
        "startup_s": startup.wall,
        "rss_before_kib": rss_before,
        "rss_idle_kib": rss_after,
        "rss_per_shard_kib": (rss_after - rss_before) / shards,
        "peak_rss_growth_per_shard_kib": max(0, peak_after - peak_before) / shards,
        "idle_cpu_fraction_of_core": quiet.cpu / quiet.wall,
        "idle_cpu_us_per_shard_per_s": quiet.cpu / quiet.wall / shards * 1e6,
        "idle_poll_s": IDLE_POLL_IDLE,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--records-per-shard", type=int, default=5000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle-shards", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="also cProfile two runs")
    quick = {"shards": 16, "records_per_shard": 2000, "repeats": 1, "idle_shards": 200}
    args = parse_args_quick(parser, argv, quick)
    configure_logging(level="warning", stream=sys.stderr)

    # Idle shards first, while the process is small, so ru_maxrss growth means something.
    idle = anyio.run(measure_idle, args.idle_shards)

    partitions = make_partitions(args.shards, args.records_per_shard)
    total = args.shards * args.records_per_shard
    names = ("raw loop, typed", "raw loop + render", "engine, typed", "engine, Lambda-style")
    samples: dict[tuple[str, int], list[Timing]] = {}
    counts: dict[tuple[str, int], list[int]] = {}

    def add(name: str, batch: int, timing: Timing, records: int) -> None:
        samples.setdefault((name, batch), []).append(timing)
        counts.setdefault((name, batch), []).append(records)

    for _ in range(args.repeats):  # alternate, so drift in machine load hits every variant
        for batch in args.batch_sizes:
            timing, handed = anyio.run(run_baseline, partitions, batch, False)
            add(names[0], batch, timing, handed)
            timing, handed = anyio.run(run_baseline, partitions, batch, True)
            add(names[1], batch, timing, handed)
            add(names[2], batch, anyio.run(run_engine, partitions, typed_noop, batch), total)
            add(names[3], batch, anyio.run(run_engine, partitions, lambda_noop, batch), total)

    aims = {names[2]: AIM_TYPED, names[3]: AIM_LAMBDA}
    results: list[dict[str, Any]] = []
    #: Which plain loop each engine variant is compared with for its per-batch overhead.
    matching_loop = {names[2]: names[0], names[3]: names[1]}
    for batch in args.batch_sizes:
        loop_us: dict[str, float] = {}
        for name in names:
            timings, sizes = samples[(name, batch)], counts[(name, batch)]
            rates = [n / t.wall for n, t in zip(sizes, timings, strict=True)]
            wall_us = [t.wall / n * 1e6 for n, t in zip(sizes, timings, strict=True)]
            cpu_us = [t.cpu / n * 1e6 for n, t in zip(sizes, timings, strict=True)]
            rate = median(rates)
            loop_us[name] = median(cpu_us)
            per_record = share = overhead = None
            if name in matching_loop:
                per_record = median(cpu_us) - loop_us[matching_loop[name]]
                share = per_record / median(cpu_us)
                overhead = per_record * batch
            # BatchSize 10 shows the per-batch cost; the aims are for the usual sizes.
            aim = aims.get(name) if batch >= 100 else None
            results.append(
                {
                    "variant": name,
                    "batch_size": batch,
                    "records": sizes[0],
                    "records_per_s": rate,
                    "wall_us_per_record": median(wall_us),
                    "cpu_us_per_record": median(cpu_us),
                    "cpu_over_wall": median([t.cpu / t.wall for t in timings]),
                    "engine_cpu_us_per_record_over_loop": per_record,
                    "engine_share_of_cpu": share,
                    "engine_cpu_us_per_batch_over_loop": overhead,
                    "aim_records_per_s": aim,
                    "meets_aim": None if aim is None else rate >= aim,
                    "runs_records_per_s": rates,
                }
            )

    print(
        f"Engine throughput: {args.shards} in-memory shards x {args.records_per_shard:,} records "
        f"of {RECORD_BYTES} B = {total:,} records, MemoryStore, no-op handler; "
        f"median of {args.repeats} alternating runs."
    )
    print(
        "One asyncio event loop = at most one core (CPU/wall <= 1). "
        "'engine us/rec' = the engine run's CPU per record minus the matching plain loop's "
        "(typed: plain loop; Lambda-style: plain loop + render), measured in the same run; "
        "'engine share' = that part of the run's CPU per record; 'us/batch over loop' = the "
        "same cost per batch."
    )
    print_table(
        "Throughput",
        [
            "variant",
            "batch",
            "records/s",
            "wall us/rec",
            "CPU us/rec",
            "CPU/wall",
            "engine us/rec",
            "engine share",
            "us/batch over loop",
            "aim",
        ],
        [
            [
                r["variant"],
                r["batch_size"],
                r["records_per_s"],
                r["wall_us_per_record"],
                r["cpu_us_per_record"],
                r["cpu_over_wall"],
                r["engine_cpu_us_per_record_over_loop"],
                "-" if r["engine_share_of_cpu"] is None else f"{r['engine_share_of_cpu']:.0%}",
                r["engine_cpu_us_per_batch_over_loop"],
                "-"
                if r["aim_records_per_s"] is None
                else f"{r['aim_records_per_s']:,} {'met' if r['meets_aim'] else 'MISSED'}",
            ]
            for r in results
        ],
    )
    print_table(
        f"Idle shards: {idle['shards']:,} empty shards, caught up, idle poll {IDLE_POLL_IDLE} s",
        ["measure", "value"],
        [
            ["start-up until all idle (s)", idle["startup_s"]],
            ["RSS growth per shard (KiB)", idle["rss_per_shard_kib"]],
            ["peak RSS growth per shard (KiB)", idle["peak_rss_growth_per_shard_kib"]],
            ["idle CPU, fraction of one core", idle["idle_cpu_fraction_of_core"]],
            ["idle CPU per shard (us per s)", idle["idle_cpu_us_per_shard_per_s"]],
        ],
    )

    profiles: dict[str, Any] = {}
    if args.profile:
        batch = args.batch_sizes[0]
        for key, handler, label in (
            ("typed", typed_noop, "typed"),
            ("lambda", lambda_noop, "Lambda-style"),
        ):
            run = functools.partial(anyio.run, run_engine, partitions, handler, batch, False)
            profiles[key] = profile_call(f"{label}, batch {batch}", run)

    path = write_results(
        "engine",
        {
            "config": {
                "shards": args.shards,
                "records_per_shard": args.records_per_shard,
                "record_bytes": RECORD_BYTES,
                "batch_sizes": args.batch_sizes,
                "repeats": args.repeats,
                "idle_shards": args.idle_shards,
                "idle_poll_busy_s": IDLE_POLL_BUSY,
                "note": "single asyncio event loop: at most one core",
            },
            "throughput": results,
            "idle_shards": idle,
            "profiles": profiles,
        },
    )
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
