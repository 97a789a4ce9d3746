"""Leases: how long a stream's shards wait after a worker dies, and how long a joining worker
waits for its share.

What runs: a moto server started for the run, a Kinesis stream of 4 shards, and ``poller run``
processes sharing a DynamoDB table (``[store] url = "dynamodb://..."``) as workers on several
hosts would, each with its own ``worker_id``. A writer puts a record on every shard every 50 ms;
each handler logs the time it saw each record.

1. **Failover**: two workers hold two shards each; one is killed with SIGKILL. The figure is the
   time from the kill to the first record of one of its shards handled by the survivor, for
   ``lease_duration_seconds`` 10 (the default, KCL's) and 3. The bound by design is the duration
   (the counter must stay still that long on the survivor's clock) plus the half duration between
   two looks; aim with 3: under 5 s.
2. **Rebalance**: a worker holds all four shards; a second one starts. The figure is the time
   from its start until it holds two (it steals one lease per look, every half duration).

Lease and checkpoint writes per shard are not counted on moto; by construction a held lease is
renewed three times per duration (18 writes a minute per shard at 10 s, 60 at 3 s), plus one
checkpoint write per batch. Medians of ``--repeats`` runs.

Run ``python benchmarks/leases.py`` (about 2 minutes); JSON goes to benchmarks/results/leases.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from _common import ACCESS_KEY, REGION, SECRET_KEY, median, moto_server, print_table, write_results
from aiobotocore.session import get_session

HANDLER = """
import json, os, time

def handle(event, context):
    with open(os.environ["SEEN_LOG"], "a") as log:
        for record in event["Records"]:
            shard = record["eventID"].split(":")[0]
            log.write(json.dumps({"at": time.time(), "shard": shard}) + "\\n")
"""


def config(endpoint: str, stream_arn: str, table: str, worker: str, duration: float) -> str:
    return textwrap.dedent(
        f"""
        [aws]
        region = "{REGION}"
        endpoint_url = "{endpoint}"
        access_key_id = "{ACCESS_KEY}"
        secret_access_key = "{SECRET_KEY}"
        [store]
        url = "dynamodb://{table}"
        [worker]
        worker_id = "{worker}"
        lease_duration_seconds = {duration}
        idle_poll_seconds = 0.2
        [logging]
        format = "json"
        [[functions]]
        FunctionName = "seen"
        Handler = "seen_handler.handle"
        Isolation = "thread"
        [[mappings]]
        UUID = "bench"
        EventSourceArn = "{stream_arn}"
        FunctionName = "seen"
        StartingPosition = "LATEST"
        """
    )


class Bench:
    """One run's directory, workers and record writer."""

    def __init__(self, endpoint: str, stream: str, arn: str, duration: float) -> None:
        self.endpoint, self.stream, self.arn, self.duration = endpoint, stream, arn, duration
        self.root = Path(tempfile.mkdtemp(prefix="poller-leases-"))
        (self.root / "seen_handler.py").write_text(HANDLER)
        self.table = f"leases-{uuid.uuid4().hex[:8]}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        (self.root / f"{name}.toml").write_text(
            config(self.endpoint, self.arn, self.table, name, self.duration)
        )
        env = {**os.environ, "SEEN_LOG": str(self.root / f"{name}.jsonl")}
        with (self.root / f"{name}.log").open("wb") as out:
            self.workers[name] = subprocess.Popen(
                [sys.executable, "-m", "poller.cli", "run", f"{name}.toml"],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def held(self, name: str) -> set[str]:
        """The shards ``name`` holds, from its log (taken minus lost and released)."""
        shards: set[str] = set()
        path = self.root / f"{name}.log"
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("event") == "lease taken":
                shards.add(entry["shard"])
            elif entry.get("event") in ("lease lost", "lease released"):
                shards.discard(entry["shard"])
        return shards

    def seen_after(self, name: str, shards: set[str], after: float) -> float | None:
        path = self.root / f"{name}.jsonl"
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["shard"] in shards and entry["at"] > after:
                return float(entry["at"])
        return None

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def wait_for(condition: Any, within: float, what: str) -> None:
    with anyio.fail_after(within):
        while not condition():
            await anyio.sleep(0.05)


async def writer(kinesis: Any, stream: str, keys: list[str], stop: anyio.Event) -> None:
    """A record on every shard every 50 ms (``keys`` reach one shard each)."""
    while not stop.is_set():
        await kinesis.put_records(
            StreamName=stream, Records=[{"PartitionKey": k, "Data": b"x"} for k in keys]
        )
        await anyio.sleep(0.05)


async def one_run(endpoint: str, kinesis: Any, duration: float) -> dict[str, float]:
    stream = f"leases-{uuid.uuid4().hex[:8]}"
    await kinesis.create_stream(StreamName=stream, ShardCount=4)
    await wait_for_active(kinesis, stream)
    description = await kinesis.describe_stream(StreamName=stream)
    arn = description["StreamDescription"]["StreamARN"]
    keys = keys_per_shard(description["StreamDescription"]["Shards"])
    bench = Bench(endpoint, stream, arn, duration)
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer, kinesis, stream, keys, stop)
            bench.start("a")
            await wait_for(lambda: len(bench.held("a")) == 4, 60, "a holding all shards")
            joined = time.time()
            bench.start("b")
            await wait_for(lambda: len(bench.held("b")) == 2, 120, "b holding its share")
            rebalance = time.time() - joined
            await anyio.sleep(duration)  # a learns of the steals; both are steady
            victim = bench.held("a")
            bench.workers["a"].send_signal(signal.SIGKILL)
            killed = time.time()
            await wait_for(
                lambda: bench.seen_after("b", victim, killed) is not None, 120, "failover"
            )
            failover = (bench.seen_after("b", victim, killed) or killed) - killed
            stop.set()
    finally:
        bench.stop()
    return {"failover_s": failover, "rebalance_s": rebalance}


async def wait_for_active(kinesis: Any, stream: str) -> None:
    with anyio.fail_after(30):
        while True:
            summary = await kinesis.describe_stream_summary(StreamName=stream)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            await anyio.sleep(0.1)


def keys_per_shard(shards: list[dict[str, Any]]) -> list[str]:
    """One partition key per shard, found by hashing candidates as Kinesis does."""
    import hashlib

    found: dict[str, str] = {}
    for n in range(10_000):
        key = f"k{n}"
        value = int(hashlib.md5(key.encode()).hexdigest(), 16)
        for shard in shards:
            low = int(shard["HashKeyRange"]["StartingHashKey"])
            high = int(shard["HashKeyRange"]["EndingHashKey"])
            if low <= value <= high:
                found.setdefault(shard["ShardId"], key)
        if len(found) == len(shards):
            return list(found.values())
    raise RuntimeError("no key for some shard")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with moto_server() as endpoint:
        session = get_session()
        async with session.create_client(
            "kinesis",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ) as kinesis:
            for duration in args.durations:
                runs = [await one_run(endpoint, kinesis, duration) for _ in range(args.repeats)]
                results[str(duration)] = {
                    "failover_s": median([r["failover_s"] for r in runs]),
                    "rebalance_s": median([r["rebalance_s"] for r in runs]),
                    "runs": runs,
                }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 3.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = anyio.run(main_async, args)
    rows = [
        [
            f"{float(duration):g} s",
            f"{r['failover_s']:.2f}",
            f"{float(duration) * 1.5:.1f}",
            f"{r['rebalance_s']:.2f}",
        ]
        for duration, r in results.items()
    ]
    print_table(
        "Leases on DynamoDB (moto), 2 workers, 4 shards; medians",
        ["lease_duration_seconds", "failover s", "bound s", "rebalance s"],
        rows,
    )
    path = write_results("leases", {"durations": results})
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
