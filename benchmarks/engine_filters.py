"""What FilterCriteria cost the engine: records per second with a filter that keeps half the
records, against the same records with no filter, in the same run.

What runs: 64 in-memory shards of 5,000 JSON records of about 100 bytes each (320,000 records;
every other record has ``"kind": "keep"``), read by a StreamMappingRunner with a MemoryStore,
BatchSize 100 and a typed no-op handler, until every shard's checkpoint reaches its last record
(filtered records settle too, so the checkpoint moves past them). Variants, alternating:

* *no filter*: every record handed over;
* *filter keeps half*: ``{"data": {"kind": ["keep"]}}``: each record's data decoded as JSON and
  matched; half the records handed over, half settled as filtered;
* *filter keeps all*: ``{"data": {"kind": ["keep", "drop"]}}``: the matching cost with the same
  hand-overs as *no filter*, so the difference between the two is the filter's own price.

Records per second count every record read (handed over or filtered). Medians of ``--repeats``.
Run ``python benchmarks/engine_filters.py`` (``--quick``: 16 shards x 2,000, one run); JSON goes to
benchmarks/results/engine_filters.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from _common import (
    StampingStore,
    Timing,
    median,
    parse_args_quick,
    print_table,
    timed,
    write_results,
)
from engine import (
    IDLE_POLL_BUSY,
    SETTLE_TIMEOUT,
    STREAM_ARN,
    mapping_for,
    stop_runner,
    typed_noop,
    wait_until,
)

from poller.engine.discard import DroppingSink
from poller.engine.invocation import InvocationContext
from poller.engine.metrics import MappingCounters
from poller.engine.streams import StreamMappingRunner
from poller.filtering import compile_filters, decode_payload
from poller.filtering.records import MappingFilter
from poller.functions import target_for
from poller.observability import configure_logging
from poller.records import Record
from poller.testing import MemoryPartition, MemorySource

PATTERNS = {
    "no filter": None,
    "filter keeps half": '{"data": {"kind": ["keep"]}}',
    "filter keeps all": '{"data": {"kind": ["keep", "drop"]}}',
}


def make_partitions(shards: int, per_shard: int) -> list[MemoryPartition]:
    """JSON records, alternately of kind "keep" and "drop", about 100 bytes each."""
    partitions = []
    for index in range(shards):
        partition = MemoryPartition(f"shardId-{index:012d}")
        for n in range(per_shard):
            kind = "keep" if n % 2 == 0 else "drop"
            body = {"kind": kind, "shard": index, "n": n, "pad": "x" * 40}
            partition.put(json.dumps(body).encode(), key=f"key-{n % 97}", arrival=1.7e9)
        partitions.append(partition)
    return partitions


def _data_document(record: Record) -> dict[str, Any]:
    return {"data": decode_payload(record.data)}


async def run(partitions: Sequence[MemoryPartition], pattern: str | None) -> tuple[Timing, int]:
    """Time one mapping until every checkpoint is at its last record; the records handed over."""
    source = MemorySource(partitions, arn=STREAM_ARN)
    store = StampingStore()
    counters = MappingCounters()
    mapping = mapping_for(100)
    filters = (
        MappingFilter(compile_filters([pattern]), _data_document) if pattern is not None else None
    )
    context = InvocationContext(
        mapping,
        target_for(typed_noop, source, report_batch_item_failures=False),
        source,
        counters,
        DroppingSink(counters),
        store=store,
        filters=filters,
    )
    runner = StreamMappingRunner(
        context, source, store, discovery_interval=3600.0, idle_poll=IDLE_POLL_BUSY
    )
    last = {p.id: p.records[-1].ordinal for p in partitions}

    def settled() -> bool:
        running = runner.partitions
        return len(running) == len(last) and all(
            p.checkpoint is not None and p.checkpoint.ordinal >= last[shard]
            for shard, p in running.items()
        )

    gc.collect()
    async with anyio.create_task_group() as group:
        with timed() as timing:
            group.start_soon(runner.run)
            await wait_until(settled, SETTLE_TIMEOUT, "settling every record")
        timing.wall = store.last_write - timing.started
        timing.cpu = store.last_write_cpu - timing.cpu_started
        await stop_runner(runner)
    return timing, counters.invoked_events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--records-per-shard", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    quick = {"shards": 16, "records_per_shard": 2000, "repeats": 1}
    args = parse_args_quick(parser, argv, quick)
    configure_logging(level="warning", stream=sys.stderr)
    partitions = make_partitions(args.shards, args.records_per_shard)
    total = args.shards * args.records_per_shard
    samples: dict[str, list[tuple[Timing, int]]] = {name: [] for name in PATTERNS}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits every variant
        for name, pattern in PATTERNS.items():
            samples[name].append(anyio.run(run, partitions, pattern))
    baseline = median([total / t.wall for t, _ in samples["no filter"]])
    results = []
    for name, runs in samples.items():
        rates = [total / t.wall for t, _ in runs]
        handed = runs[0][1]
        expected = total // 2 if name == "filter keeps half" else total
        if any(count != expected for _, count in runs):
            raise RuntimeError(f"{name}: handed over {handed}, expected {expected}")
        results.append(
            {
                "variant": name,
                "records_read": total,
                "handed_over": handed,
                "records_per_s": median(rates),
                "cpu_us_per_record": median([t.cpu / total * 1e6 for t, _ in runs]),
                "vs_no_filter": median(rates) / baseline,
                "runs_records_per_s": rates,
            }
        )
    print(
        f"Engine with FilterCriteria: {args.shards} in-memory shards x "
        f"{args.records_per_shard:,} JSON records = {total:,} records read, BatchSize 100, "
        f"typed no-op handler; median of {args.repeats} alternating runs."
    )
    print_table(
        "Records read per second",
        ["variant", "handed over", "records/s", "CPU us/rec", "vs no filter"],
        [
            [
                r["variant"],
                r["handed_over"],
                r["records_per_s"],
                r["cpu_us_per_record"],
                r["vs_no_filter"],
            ]
            for r in results
        ],
    )
    path = write_results(
        "engine_filters",
        {
            "config": {
                "shards": args.shards,
                "records_per_shard": args.records_per_shard,
                "repeats": args.repeats,
            },
            "results": results,
        },
    )
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
