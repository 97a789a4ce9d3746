"""poller reading Kinesis (moto over HTTP) next to the plainest aiobotocore loop that reads the same.

Why: against a real endpoint the engine should cost next to nothing: the time goes to HTTP and the
server. The aim is poller within 10% of a hand-written reader, i.e. a poller/raw ratio >= 0.9.

What runs, in one process, against one moto server started for the run and stopped at the end:

* a stream with 4 shards and 20,000 records of 100 bytes, written with PutRecords in chunks
  of 500 (the shard of every record is noted from the responses);
* (a) raw: create a client, ListShards, then for every shard at once GetShardIterator
  TRIM_HORIZON and GetRecords (Limit 10000) until that shard has handed over all its records,
  touching each record with a no-op;
* (b) poller: a :class:`poller.runtime.Worker` built from ``parse_config`` (endpoint = the moto
  server, store ``memory://``, StartingPosition TRIM_HORIZON, BatchSize 100 or 1000) with a
  typed no-op handler that only counts, from ``start()`` until the handler has seen every
  record; then it is stopped (not timed).

Both sides build their own client inside the timed part and use the same client settings
(``poller.aws.AwsClients``). Each measurement runs 3 times, alternating, and the medians are
reported; the ratio is taken within this run, so the machine's load cancels out as far as it can.
Besides records/s, each variant's CPU per record is reported for this process and for the moto
server (read from ``/proc``): moto spends several times the client's CPU per record, so on a
machine with few cores its share decides the wall time, and the client's CPU is the steadier
figure for poller's own cost.

Run ``python benchmarks/kinesis.py``; results also go to ``benchmarks/results/kinesis.json``.
``--quick`` is a smoke run (4,000 records, 2 rounds) of well under half a minute.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from _common import (
    Timing,
    aws_config,
    median,
    moto_process,
    print_rows_against_raw,
    read_poller,
    rows_against_raw,
    timed,
    write_results,
)

from poller.aws import AwsClients
from poller.observability import configure_logging

RECORD_BYTES = 100
PUT_CHUNK = 500
READ_LIMIT = 10_000
#: Aim: poller's records/s at least this share of the raw loop's.
AIM_RATIO = 0.9
#: A measurement that has not seen every record after this long has failed.
READ_TIMEOUT = 300.0
#: ``--quick``: records and rounds of a smoke run.
QUICK_RECORDS = 4_000
QUICK_REPEATS = 2


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the server process ``pid`` so far, from /proc (0 without)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_stream(endpoint: str, name: str, shards: int) -> str:
    """Create ``name`` with ``shards`` shards and wait until it is ACTIVE; return its ARN."""
    clients = AwsClients(aws_config(endpoint))
    try:
        kinesis = await clients.client("kinesis")
        await kinesis.create_stream(StreamName=name, ShardCount=shards)
        with anyio.fail_after(30):
            while True:
                summary = await kinesis.describe_stream_summary(StreamName=name)
                description = summary["StreamDescriptionSummary"]
                if description["StreamStatus"] == "ACTIVE":
                    return str(description["StreamARN"])
                await anyio.sleep(0.05)
    finally:
        await clients.aclose()


async def fill_stream(endpoint: str, arn: str, count: int) -> tuple[Counter[str], Timing]:
    """Write ``count`` records of RECORD_BYTES; return how many landed on each shard."""
    clients = AwsClients(aws_config(endpoint))
    per_shard: Counter[str] = Counter()
    try:
        kinesis = await clients.client("kinesis")
        with timed() as timing:
            for first in range(0, count, PUT_CHUNK):
                entries = [
                    {
                        "Data": f"{n:010d}:".encode().ljust(RECORD_BYTES, b"x"),
                        "PartitionKey": f"key-{n}",
                    }
                    for n in range(first, min(first + PUT_CHUNK, count))
                ]
                response = await kinesis.put_records(StreamARN=arn, Records=entries)
                if response.get("FailedRecordCount"):
                    raise RuntimeError(f"PutRecords failed for {response['FailedRecordCount']}")
                per_shard.update(entry["ShardId"] for entry in response["Records"])
    finally:
        await clients.aclose()
    return per_shard, timing


def consume(record: Any) -> None:
    """The raw loop's per-record work: none."""


async def read_raw(endpoint: str, arn: str, expected: Counter[str]) -> Timing:
    """Every shard read concurrently from TRIM_HORIZON until it gave all its records."""
    seen: Counter[str] = Counter()

    async def read_shard(kinesis: Any, shard_id: str) -> None:
        response = await kinesis.get_shard_iterator(
            StreamARN=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )
        iterator = response["ShardIterator"]
        while seen[shard_id] < expected[shard_id]:
            page = await kinesis.get_records(
                StreamARN=arn, ShardIterator=iterator, Limit=READ_LIMIT
            )
            records = page["Records"]
            for record in records:
                consume(record)
            seen[shard_id] += len(records)
            iterator = page["NextShardIterator"]

    with timed() as timing:
        clients = AwsClients(aws_config(endpoint))
        try:
            kinesis = await clients.client("kinesis")
            listing = await kinesis.list_shards(StreamARN=arn)
            shard_ids = [str(shard["ShardId"]) for shard in listing["Shards"]]
            with anyio.fail_after(READ_TIMEOUT):
                async with anyio.create_task_group() as group:
                    for shard_id in shard_ids:
                        group.start_soon(read_shard, kinesis, shard_id)
        finally:
            await clients.aclose()
    if seen != expected:
        raise RuntimeError(f"raw loop read {dict(seen)}, expected {dict(expected)}")
    return timing


async def measure(
    endpoint: str,
    server_pid: int,
    shards: int,
    count: int,
    repeats: int,
    batch_sizes: Sequence[int],
) -> dict[str, Any]:
    name = f"benchmark-{uuid.uuid4().hex[:12]}"
    arn = await create_stream(endpoint, name, shards)
    expected, writing = await fill_stream(endpoint, arn, count)
    print(
        f"stream {name}: {shards} shards, {count:,} records of {RECORD_BYTES} B written in "
        f"{writing.wall:.1f} s ({count / writing.wall:,.0f} records/s via PutRecords x{PUT_CHUNK}); "
        f"per shard: {', '.join(str(expected[s]) for s in sorted(expected))}"
    )
    samples: dict[str, list[Timing]] = {}
    server_us: dict[str, list[float]] = {}
    for _ in range(repeats):  # alternate, so drift in machine load hits every variant
        variants: list[tuple[str, Any]] = [("raw", lambda: read_raw(endpoint, arn, expected))]
        for batch in batch_sizes:
            variants.append(
                (
                    f"poller-{batch}",
                    lambda batch=batch: read_poller(
                        endpoint, arn, count, batch, label="kinesis", time_limit=READ_TIMEOUT
                    ),
                )
            )
        for key, run in variants:
            # A full garbage collection costs ~10 us per record of a run it lands in: start
            # every variant clean, so none pays for what an earlier one left behind.
            gc.collect()
            server_before = server_cpu_seconds(server_pid)
            timing = await run()
            server_us.setdefault(key, []).append(
                (server_cpu_seconds(server_pid) - server_before) / count * 1e6
            )
            samples.setdefault(key, []).append(timing)
            print(
                f"  {key:>12}: {count / timing.wall:9,.0f} records/s, CPU "
                f"{timing.cpu / count * 1e6:5.1f} us/record here, "
                f"{server_us[key][-1]:5.1f} in moto",
                flush=True,
            )

    rows = rows_against_raw(samples, count, AIM_RATIO)
    for row, key in zip(rows, samples, strict=True):
        row["server_cpu_us_per_record"] = median(server_us[key])
        row["runs_cpu_us_per_record"] = [t.cpu / count * 1e6 for t in samples[key]]
    return {
        "stream": name,
        "shards": shards,
        "records": count,
        "record_bytes": RECORD_BYTES,
        "records_per_shard": dict(sorted(expected.items())),
        "put_records_per_s": count / writing.wall,
        "repeats": repeats,
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--records", type=int, default=None, help="records (default 20,000)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_RECORDS:,} records, {QUICK_REPEATS} rounds (under half a "
        "minute; --records and --repeats still win)",
    )
    args = parser.parse_args(argv)
    if args.records is None:
        args.records = QUICK_RECORDS if args.quick else 20_000
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else 3
    configure_logging(level="warning", stream=sys.stderr)

    with moto_process() as (endpoint, pid):
        report = anyio.run(
            measure, endpoint, pid, args.shards, args.records, args.repeats, args.batch_sizes
        )

    rows = report["results"]
    print(
        f"Median of {args.repeats} alternating runs; 'vs raw' = records/s over the raw loop's in "
        f"this run (aim >= {AIM_RATIO}). CPU us/rec counts this process only (moto runs in its "
        "own), client creation and start-up included; 'CPU vs raw' is that over the raw loop's."
    )
    print_rows_against_raw("Reading Kinesis from moto over HTTP", rows)
    print("\nCPU per record of the moto server during each variant (median, us):")
    for row in rows:
        batch = f" BatchSize {row['batch_size']}" if row["batch_size"] else ""
        print(f"  {row['variant']}{batch}: {row['server_cpu_us_per_record']:.1f}")
    path = write_results("kinesis", {**report, "aim_ratio": AIM_RATIO, "quick": args.quick})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
