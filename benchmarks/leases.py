"""Leases: how fast shards move between workers, what keeping them costs in DynamoDB, and
what more workers buy in throughput.

What runs: a moto server started for the run, Kinesis streams on it, and real ``poller run``
processes sharing a DynamoDB table (``[store] url = "dynamodb://..."``) as workers on several
hosts would, each with its own ``worker_id``. The handler (``Isolation = "thread"``) appends one
line per batch to its worker's file: when, which shard, how many records, the last sequence
number. Every figure is read from outside the workers: their logs, those files, the requests
they send, and ``/proc``. ``--only`` picks the parts to run.

1. **Failover and rebalance** (``failover``): a 4-shard stream gets a record on every shard every
   50 ms. One worker holds all four shards and a second one starts: *rebalance* is the time from
   its start until it holds two (it steals one lease per look, every half duration). Once both
   are steady, the first is killed with SIGKILL: *failover* is the time from the kill to the
   first batch of one of its shards handled by the survivor. Both for ``lease_duration_seconds``
   10 (the default, KCL's) and 3. The bound by design is the duration (the counter must stay
   still that long on the survivor's clock) plus the half duration between two looks; the aim
   with 3 is under 5 s. Medians of ``--repeats``.
2. **DynamoDB cost at steady state** (``cost``): the same two workers with two leases each, a
   record on every shard every ``--put-interval`` (0.2 s) so batches keep checkpointing, and the
   workers' ``endpoint_url`` pointing at a counting reverse proxy run by this script. The proxy
   passes every request to moto and every answer back unchanged, and names each request by its
   ``X-Amz-Target`` and the item it touches (the ``pk`` in the JSON body starts with ``lease#``,
   ``checkpoint#`` or ``done#``). From one lease duration after the second worker holds its
   share, requests are counted for ``--window`` seconds (30) and reported per shard per minute:
   lease writes (renewals: a steady state moves no lease, which the logs confirm), checkpoint
   writes (a fenced checkpoint is one ``TransactWriteItems``, a condition on the lease and the
   checkpoint put), idempotency writes (none unless ``--idempotency`` sets ``Idempotency = true``
   on the mapping), other writes, reads, writes DynamoDB refused (a condition did not hold; billed
   all the same) and moto's own 5xx failures (left out of the other figures: the client retries
   them, and DynamoDB would not fail so). The batches the handlers saw in the window are counted
   too, since one checkpoint per batch is expected. "Documented" is the rate poller documents, a
   renewal every third of the duration. For comparison, KCL's defaults (from its source): a 10 s
   failover time, a renewal of each held lease every failover time / 3 less 25 ms (about 18 a
   minute), a scan of the lease table every twice the failover time, and one checkpoint write
   each time the application checkpoints, which KCL leaves to the application.
3. **Throughput, 1 worker against ``--workers`` (3)** (``throughput``): one stream of
   ``--shards`` (6) filled once with ``--records`` (24,000) records of 100 bytes, the same number
   on every shard; each run has a fresh table, ``StartingPosition = "TRIM_HORIZON"``, and its
   workers started together. A run is done when every shard's last sequence number has been
   handled (a count of records would be fooled by the batches a moved lease repeats). The figure
   is records / (last batch handled - workers started), which includes starting Python processes;
   "reading" is records / (last batch - first batch). Runs alternate (1, 3, 1, 3, ...); medians of
   ``--repeats`` and the ratio are reported, and each run's split between workers is kept (workers
   start with no leases: the first to look takes every free one it sees, the others steal one per
   half duration).
   What bounds it is measured, not assumed: this machine has 2 cores, shared by the workers, moto
   and this script, and moto serves every worker from one Python process (one core at most). The
   CPU seconds of each, sampled from ``/proc`` while the run waits, are reported as a share of
   the wall time (1.0 = one core busy throughout), over the whole run and over the reading span.

Run ``python benchmarks/leases.py`` (about 5 minutes; ``--quick``: failover and rebalance at
``lease_duration_seconds`` 3 only, one run); JSON goes to benchmarks/results/leases.json
(only the parts that ran).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import anyio
from _common import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    median,
    moto_process,
    parse_args_quick,
    print_table,
    write_results,
)
from aiobotocore.session import get_session
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

PARTS = ("failover", "cost", "throughput")

HANDLER = """
import json, os, time

def handle(event, context):
    records = event["Records"]
    line = {
        "at": time.time(),
        "shard": records[0]["eventID"].split(":")[0],
        "n": len(records),
        "last": max(int(r["kinesis"]["sequenceNumber"]) for r in records),
    }
    with open(os.environ["SEEN_LOG"], "a") as log:
        log.write(json.dumps(line) + "\\n")
"""

#: DynamoDB operations that write (and are billed as writes even when their condition fails).
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
#: Headers that describe one hop, not the request: the proxy's own connections set them.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
#: KCL's defaults, from its source (LeaseManagementConfig, DynamoDBLeaseCoordinator).
KCL_FAILOVER_MS = 10_000
KCL_EPSILON_MS = 25


# --- workers -------------------------------------------------------------------------------------


class Bench:
    """One run's directory, table and worker processes (all sharing the table)."""

    def __init__(
        self,
        endpoint: str,
        arn: str,
        duration: float,
        start: str = "LATEST",
        idempotency: bool = False,
    ) -> None:
        self.endpoint, self.arn, self.duration, self.start_at = endpoint, arn, duration, start
        self.idempotency = idempotency
        self.root = Path(tempfile.mkdtemp(prefix="poller-leases-"))
        (self.root / "seen_handler.py").write_text(HANDLER)
        self.table = f"leases-{uuid.uuid4().hex[:8]}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, worker: str) -> str:
        """A worker's config file: the shared DynamoDB table, its own worker_id, one mapping."""
        return textwrap.dedent(
            f"""
            [aws]
            region = "{REGION}"
            endpoint_url = "{self.endpoint}"
            access_key_id = "{ACCESS_KEY}"
            secret_access_key = "{SECRET_KEY}"
            [store]
            url = "dynamodb://{self.table}"
            [worker]
            worker_id = "{worker}"
            lease_duration_seconds = {self.duration}
            idle_poll_seconds = 0.2
            [logging]
            format = "json"
            [[functions]]
            FunctionName = "seen"
            Handler = "seen_handler.handle"
            Isolation = "thread"
            [[mappings]]
            UUID = "bench"
            EventSourceArn = "{self.arn}"
            FunctionName = "seen"
            StartingPosition = "{self.start_at}"
            Idempotency = {str(self.idempotency).lower()}
            """
        )

    def start(self, name: str) -> None:
        """Start worker ``name`` (``poller run``), its log and handler file in the run's directory."""
        (self.root / f"{name}.toml").write_text(self.config(name))
        env = {**os.environ, "SEEN_LOG": str(self.root / f"{name}.jsonl")}
        with (self.root / f"{name}.log").open("wb") as out:
            self.workers[name] = subprocess.Popen(
                [sys.executable, "-m", "poller.cli", "run", f"{name}.toml"],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log_events(self, name: str) -> Iterator[dict[str, Any]]:
        """The JSON entries of ``name``'s log (lines that are not JSON are skipped)."""
        path = self.root / f"{name}.log"
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and line.endswith("}"):  # not a line still being written
                yield json.loads(line)

    def held(self, name: str) -> set[str]:
        """The shards ``name`` holds, from its log (taken minus lost and released)."""
        shards: set[str] = set()
        for entry in self.log_events(name):
            if entry.get("event") == "lease taken":
                shards.add(entry["shard"])
            elif entry.get("event") in ("lease lost", "lease released"):
                shards.discard(entry["shard"])
        return shards

    def moves(self) -> int:
        """Leases taken so far by every worker: a steady state adds none."""
        return sum(
            entry.get("event") == "lease taken"
            for name in self.workers
            for entry in self.log_events(name)
        )

    def batches(self, name: str) -> list[dict[str, Any]]:
        """The batches ``name``'s handler saw (one dict per batch, in order)."""
        path = self.root / f"{name}.jsonl"
        if not path.exists():
            return []
        # The last line may be half written while the handler appends it.
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def seen_after(self, name: str, shards: set[str], after: float) -> float | None:
        """When ``name`` first handled a batch of one of ``shards`` after ``after``."""
        for entry in self.batches(name):
            if entry["shard"] in shards and entry["at"] > after:
                return float(entry["at"])
        return None

    def cpu_seconds(self) -> float:
        """CPU seconds the workers used so far (read before they are stopped)."""
        return sum(cpu_seconds(process.pid) or 0.0 for process in self.workers.values())

    async def stop(self) -> None:
        """SIGTERM every worker and wait for it without blocking the event loop: the counting
        proxy runs on it, and the workers release their leases through the proxy."""
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        with anyio.CancelScope(shield=True), anyio.move_on_after(20):
            while any(process.poll() is None for process in self.workers.values()):
                await anyio.sleep(0.05)
        for process in self.workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc (None when it cannot be read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) in ")"; utime, stime are 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for(condition: Any, within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``within`` seconds."""
    try:
        with anyio.fail_after(within):
            while not condition():
                await anyio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"no {what} within {within:g} s") from None


async def settle_two_workers(bench: Bench) -> float:
    """Worker a takes all four shards, then b starts and steals its two; b's wait is returned."""
    bench.start("a")
    await wait_for(lambda: len(bench.held("a")) == 4, 60, "a holding all shards")
    joined = time.time()
    bench.start("b")
    await wait_for(lambda: len(bench.held("b")) == 2, 120, "b holding its share")
    return time.time() - joined


# --- streams -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream made for one measurement, and one partition key that lands on each shard."""

    name: str
    arn: str
    keys: list[str]


async def new_stream(kinesis: Any, shards: int) -> Stream:
    """Create a stream of ``shards`` shards and wait until it can be written."""
    name = f"leases-{uuid.uuid4().hex[:8]}"
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    with anyio.fail_after(30):
        while True:
            summary = await kinesis.describe_stream_summary(StreamName=name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                break
            await anyio.sleep(0.1)
    description = (await kinesis.describe_stream(StreamName=name))["StreamDescription"]
    return Stream(name, description["StreamARN"], keys_per_shard(description["Shards"]))


def keys_per_shard(shards: list[dict[str, Any]]) -> list[str]:
    """One partition key per shard, found by hashing candidates as Kinesis does."""
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


async def writer(kinesis: Any, stream: Stream, interval: float, stop: anyio.Event) -> None:
    """A record on every shard every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        await kinesis.put_records(
            StreamName=stream.name,
            Records=[{"PartitionKey": key, "Data": b"x"} for key in stream.keys],
        )
        await anyio.sleep(interval)


# --- 1. failover and rebalance -------------------------------------------------------------------


async def failover_run(endpoint: str, kinesis: Any, duration: float) -> dict[str, float]:
    """One rebalance and one failover (see the module docstring)."""
    stream = await new_stream(kinesis, 4)
    bench = Bench(endpoint, stream.arn, duration)
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer, kinesis, stream, 0.05, stop)
            rebalance = await settle_two_workers(bench)
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
        await bench.stop()
    return {"failover_s": failover, "rebalance_s": rebalance}


async def measure_failover(endpoint: str, kinesis: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Failover and rebalance medians for each lease duration."""
    results: dict[str, Any] = {}
    for duration in args.durations:
        runs = [await failover_run(endpoint, kinesis, duration) for _ in range(args.repeats)]
        results[str(duration)] = {
            "failover_s": median([r["failover_s"] for r in runs]),
            "rebalance_s": median([r["rebalance_s"] for r in runs]),
            "runs": runs,
        }
    return results


# --- 2. DynamoDB cost ----------------------------------------------------------------------------


class Call(NamedTuple):
    """What one proxied request was: service, operation, the kind of item, and its outcome."""

    service: str
    operation: str
    #: "lease", "checkpoint", "done" (idempotency) or "" (no item: DescribeTable, Kinesis).
    item: str
    #: "ok"; "refused" (4xx: a condition did not hold; DynamoDB bills the write all the same);
    #: "error" (5xx: the emulator failed; the client retries, DynamoDB would not have failed).
    outcome: str


def classify(target: str, body: bytes, status: int) -> Call:
    """Name a request from its ``X-Amz-Target`` and, for DynamoDB, the ``pk`` it touches."""
    service, _, operation = target.partition(".")
    item = ""
    if service.startswith("DynamoDB") and body:
        pks = list(written_or_read_pks(operation, json.loads(body)))
        item = pks[0].split("#", 1)[0] if pks else ""
    outcome = "error" if status >= 500 else "refused" if status >= 400 else "ok"
    return Call(service.split("_", 1)[0], operation, item, outcome)


def written_or_read_pks(operation: str, request: dict[str, Any]) -> Iterator[str]:
    """The partition keys a DynamoDB request writes (or reads, for reads); a transaction's
    condition check is left out: it guards the write, it is not what is written."""
    if operation == "TransactWriteItems":
        for action in request.get("TransactItems", []):
            for verb in ("Put", "Update", "Delete"):
                if verb in action:
                    yield item_pk(action[verb])
    elif operation == "BatchWriteItem":
        for requests in request.get("RequestItems", {}).values():
            for one in requests:
                yield item_pk(one.get("PutRequest") or one.get("DeleteRequest") or {})
    elif operation == "Query":
        yield request.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S", "")
    else:
        yield item_pk(request)


def item_pk(part: dict[str, Any]) -> str:
    """The ``pk`` of the item (``Item``) or key (``Key``) of one request part."""
    item = part.get("Item") or part.get("Key") or {}
    return str(item.get("pk", {}).get("S", ""))


class CountingProxy:
    """A reverse proxy in front of moto: every request goes through unchanged (method, path and
    query, headers, body; the answer likewise), and is counted by :func:`classify`. It sees the
    workers' store traffic from outside, as a DynamoDB bill would, with no hook in poller."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.counts: Counter[Call] = Counter()
        self.endpoint = ""
        self._session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[CountingProxy]:
        """Listen on a free loopback port (``self.endpoint``) until the block ends."""
        # No header added (Accept-Encoding, User-Agent...), no body decoded: pass-through.
        auto = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            async with aiohttp.ClientSession(
                auto_decompress=False, skip_auto_headers=auto
            ) as self._session:
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                host, port = runner.addresses[0][:2]
                self.endpoint = f"http://{host}:{port}"
                yield self
        finally:
            await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        async with self._session.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=end_to_end(request.headers),
            data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            status, headers = upstream.status, end_to_end(upstream.headers)
        self.counts[classify(request.headers.get("X-Amz-Target", ""), body, status)] += 1
        return web.Response(status=status, body=payload, headers=headers)


def end_to_end(headers: Any) -> CIMultiDict[str]:
    """The headers without the hop-by-hop ones (each side of the proxy sets its own)."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


async def cost_run(
    endpoint: str, kinesis: Any, duration: float, args: argparse.Namespace
) -> dict[str, Any]:
    """Two workers at steady state behind the counting proxy; the requests of one window."""
    stream = await new_stream(kinesis, 4)
    proxy = CountingProxy(endpoint)
    stop = anyio.Event()
    async with proxy.serving():
        bench = Bench(proxy.endpoint, stream.arn, duration, idempotency=args.idempotency)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(writer, kinesis, stream, args.put_interval, stop)
                await settle_two_workers(bench)
                await anyio.sleep(duration)  # a learns of the steal; both are steady
                moves, before, opened = bench.moves(), Counter(proxy.counts), time.time()
                await anyio.sleep(args.window)
                counted, closed = proxy.counts - before, time.time()
                held = {name: sorted(bench.held(name)) for name in ("a", "b")}
                moves = bench.moves() - moves
                batches = sum(
                    opened <= entry["at"] < closed
                    for name in ("a", "b")
                    for entry in bench.batches(name)
                )
                stop.set()
        finally:
            await bench.stop()
    return cost_summary(counted, closed - opened, len(stream.keys), batches, moves, held)


def cost_summary(
    counted: Counter[Call],
    seconds: float,
    shards: int,
    batches: int,
    moves: int,
    held: dict[str, list[str]],
) -> dict[str, Any]:
    """Requests of the window per shard per minute, by what they touch, and every count."""
    scale = 60.0 / seconds / shards
    dynamodb = Counter(
        {c: n for c, n in counted.items() if c.service == "DynamoDB" and c.outcome != "error"}
    )

    def writes(*items: str) -> float:
        return scale * sum(
            n for c, n in dynamodb.items() if c.operation in WRITES and c.item in items
        )

    return {
        "window_s": seconds,
        "lease_writes": writes("lease"),
        "checkpoint_writes": writes("checkpoint"),
        "idempotency_writes": writes("done"),
        "other_writes": writes(*{c.item for c in dynamodb} - {"lease", "checkpoint", "done"}),
        "reads": scale * sum(n for c, n in dynamodb.items() if c.operation not in WRITES),
        "refused_writes": scale
        * sum(n for c, n in dynamodb.items() if c.operation in WRITES and c.outcome == "refused"),
        "emulator_errors": scale * sum(n for c, n in counted.items() if c.outcome == "error"),
        "batches": scale * batches,
        "lease_moves_in_window": moves,
        "held_at_end": held,
        "requests_in_window": {
            f"{c.service}.{c.operation} {c.item or '-'} {c.outcome}": n
            for c, n in sorted(counted.items())
        },
    }


def kcl_reference() -> dict[str, Any]:
    """KCL's defaults as figures comparable with the cost rows (per lease, per minute)."""
    renew_every_ms = KCL_FAILOVER_MS / 3 - KCL_EPSILON_MS
    return {
        "failover_time_ms": KCL_FAILOVER_MS,
        "renew_every_ms": renew_every_ms,
        "lease_writes_per_shard_per_minute": 60_000 / renew_every_ms,
        "lease_table_scan_every_ms": (KCL_FAILOVER_MS + KCL_EPSILON_MS) * 2,
        "checkpoint_writes": "one UpdateItem per checkpoint call; the application decides how often",
    }


async def measure_cost(endpoint: str, kinesis: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The cost rows, one per lease duration, and what poller's design predicts for renewals."""
    rows: dict[str, Any] = {}
    for duration in args.durations:
        row = await cost_run(endpoint, kinesis, duration, args)
        row["designed_lease_writes"] = 3 * 60 / duration  # "a renewal every third of it"
        row["renewals_per_duration"] = row["lease_writes"] * duration / 60
        rows[str(duration)] = row
    return {
        "shards": 4,
        "workers": 2,
        "put_interval_s": args.put_interval,
        "idempotency": args.idempotency,
        "per": "shard per minute",
        "durations": rows,
        "kcl_defaults": kcl_reference(),
    }


# --- 3. throughput -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filled:
    """A stream filled once: its ARN, record count and every shard's last sequence number."""

    arn: str
    records: int
    last: dict[str, int]

    def done(self, batches: Sequence[dict[str, Any]]) -> bool:
        """Whether every shard's last record was handled (repeats after a lease moved, which
        would inflate a count of records, do not fool this)."""
        seen: dict[str, int] = {}
        for batch in batches:
            seen[batch["shard"]] = max(seen.get(batch["shard"], 0), batch["last"])
        return all(seen.get(shard, 0) >= last for shard, last in self.last.items())


async def fill(kinesis: Any, shards: int, records: int) -> Filled:
    """A new stream with ``records`` records of 100 bytes, the same number on every shard."""
    stream = await new_stream(kinesis, shards)
    last: dict[str, int] = {}
    for start in range(0, records, 500):
        entries = [
            {"PartitionKey": stream.keys[i % shards], "Data": b"x" * 100}
            for i in range(start, min(records, start + 500))
        ]
        response = await kinesis.put_records(StreamName=stream.name, Records=entries)
        if response.get("FailedRecordCount"):
            raise RuntimeError(f"put_records failed for {response['FailedRecordCount']} records")
        for put in response["Records"]:
            last[put["ShardId"]] = max(last.get(put["ShardId"], 0), int(put["SequenceNumber"]))
    return Filled(stream.arn, records, last)


class CpuSamples:
    """CPU seconds of moto, of the workers and of this script, sampled while a run waits: the
    CPU each used between two moments (the first and the last batch) is read from the samples
    around them. On 2 cores they all compete; the shares say which one was the limit."""

    def __init__(self, moto_pid: int, bench: Bench) -> None:
        self.moto_pid, self.bench = moto_pid, bench
        self.samples: list[tuple[float, ...]] = []

    def sample(self) -> None:
        moto = cpu_seconds(self.moto_pid) or 0.0
        self.samples.append((time.time(), moto, self.bench.cpu_seconds(), time.process_time()))

    def shares(self, start: float, end: float) -> dict[str, float]:
        """From the last sample at or before ``start`` to the first at or after ``end`` (a span
        a little wider than asked, never narrower): its wall seconds, and the CPU seconds of
        each side divided by them (1.0 = one core busy all along)."""
        before = max((s for s in self.samples if s[0] <= start), default=self.samples[0])
        after = min((s for s in self.samples if s[0] >= end), default=self.samples[-1])
        wall = after[0] - before[0]
        used = [a - b for a, b in zip(after, before, strict=True)]
        return {
            "wall_s": wall,
            "moto": used[1] / wall,
            "workers": used[2] / wall,
            "script": used[3] / wall,
        }


async def throughput_run(
    endpoint: str, filled: Filled, workers: int, moto_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    """``workers`` workers on a fresh table read the filled stream from its start."""
    bench = Bench(endpoint, filled.arn, args.throughput_duration, start="TRIM_HORIZON")
    names = [f"w{i}" for i in range(workers)]
    cpu = CpuSamples(moto_pid, bench)
    cpu.sample()
    started = time.time()
    try:
        for name in names:
            bench.start(name)

        def finished() -> bool:
            cpu.sample()
            return filled.done([b for name in names for b in bench.batches(name)])

        await wait_for(finished, args.time_limit, "every record handled")
        by_worker = {name: bench.batches(name) for name in names}
    finally:
        await bench.stop()
    batches = [b for seen in by_worker.values() for b in seen]
    first, last = min(b["at"] for b in batches), max(b["at"] for b in batches)
    handled = {name: sum(b["n"] for b in seen) for name, seen in by_worker.items()}
    whole, reading = cpu.shares(started, last), cpu.shares(first, last)
    return {
        "workers": workers,
        "records_per_s": filled.records / (last - started),
        "wall_s": last - started,
        "first_batch_s": first - started,
        "reading_records_per_s": filled.records / (last - first),
        "handled_by_worker": handled,
        "repeated_records": sum(handled.values()) - filled.records,
        "largest_share": max(handled.values()) / sum(handled.values()),
        "moto_cpu_s": whole["moto"] * whole["wall_s"],
        "moto_cpu_share": whole["moto"],
        "workers_cpu_share": whole["workers"],
        "script_cpu_share": whole["script"],
        "reading_moto_cpu_share": reading["moto"],
        "reading_workers_cpu_share": reading["workers"],
        "reading_script_cpu_share": reading["script"],
    }


async def measure_throughput(
    endpoint: str, kinesis: Any, moto_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    """1 worker and ``--workers`` workers, alternating, on one filled stream; medians."""
    filled = await fill(kinesis, args.shards, args.records)
    runs: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        for workers in (1, args.workers):
            runs.append(await throughput_run(endpoint, filled, workers, moto_pid, args))
    summary: dict[str, Any] = {}
    for workers in (1, args.workers):
        mine = [r for r in runs if r["workers"] == workers]
        summary[str(workers)] = {
            key: median([r[key] for r in mine])
            for key in mine[0]
            if isinstance(mine[0][key], float)
        }
    many, one = summary[str(args.workers)], summary["1"]
    return {
        "shards": args.shards,
        "records": args.records,
        "lease_duration_seconds": args.throughput_duration,
        "medians": summary,
        "ratio": many["records_per_s"] / one["records_per_s"],
        "reading_ratio": many["reading_records_per_s"] / one["reading_records_per_s"],
        "runs": runs,
    }


# --- main ----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen parts against one moto server."""
    results: dict[str, Any] = {"parts": list(args.only)}
    with moto_process() as (endpoint, moto_pid):
        async with get_session().create_client(
            "kinesis",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ) as kinesis:
            if "failover" in args.only:
                results["durations"] = await measure_failover(endpoint, kinesis, args)
            if "cost" in args.only:
                results["cost"] = await measure_cost(endpoint, kinesis, args)
            if "throughput" in args.only:
                results["throughput"] = await measure_throughput(endpoint, kinesis, moto_pid, args)
    return results


def print_failover(results: dict[str, Any]) -> None:
    print_table(
        "Failover and rebalance, 2 workers, 4 shards (DynamoDB store on moto); medians",
        ["lease_duration_seconds", "failover s", "bound s", "rebalance s"],
        [
            [
                f"{float(duration):g} s",
                r["failover_s"],
                float(duration) * 1.5,
                r["rebalance_s"],
            ]
            for duration, r in results.items()
        ],
    )


def print_cost(cost: dict[str, Any]) -> None:
    print_table(
        f"DynamoDB requests per shard per minute at steady state: 2 workers, 4 shards, a record "
        f"per shard every {cost['put_interval_s']:g} s",
        [
            "lease_duration_seconds",
            "lease writes",
            "documented",
            "checkpoint writes",
            "batches",
            "idempotency",
            "other writes",
            "reads",
            "refused",
            "moto 5xx",
            "moves",
        ],
        [
            [
                f"{float(duration):g} s",
                r["lease_writes"],
                r["designed_lease_writes"],
                r["checkpoint_writes"],
                r["batches"],
                r["idempotency_writes"],
                r["other_writes"],
                r["reads"],
                r["refused_writes"],
                r["emulator_errors"],
                r["lease_moves_in_window"],
            ]
            for duration, r in cost["durations"].items()
        ],
    )
    kcl = cost["kcl_defaults"]
    print(
        f"KCL defaults: failover time {kcl['failover_time_ms']:,} ms, a renewal every "
        f"{kcl['renew_every_ms']:,.0f} ms = {kcl['lease_writes_per_shard_per_minute']:.1f} lease "
        f"writes per shard per minute; checkpoints: {kcl['checkpoint_writes']}"
    )


def print_throughput(throughput: dict[str, Any]) -> None:
    print_table(
        f"Throughput: {throughput['records']:,} records on {throughput['shards']} shards from "
        f"TRIM_HORIZON, fresh table per run; medians",
        [
            "workers",
            "records/s",
            "wall s",
            "first batch s",
            "reading rec/s",
            "largest share",
            "moto CPU s",
            "moto CPU/wall",
            "reading: moto",
            "workers",
            "script",
        ],
        [
            [
                int(workers),
                m["records_per_s"],
                m["wall_s"],
                m["first_batch_s"],
                m["reading_records_per_s"],
                m["largest_share"],
                m["moto_cpu_s"],
                m["moto_cpu_share"],
                m["reading_moto_cpu_share"],
                m["reading_workers_cpu_share"],
                m["reading_script_cpu_share"],
            ]
            for workers, m in throughput["medians"].items()
        ],
    )
    print(
        f"ratio {max(throughput['medians'], key=int)} workers / 1: {throughput['ratio']:.2f} "
        f"from the workers' start, {throughput['reading_ratio']:.2f} while reading"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 3.0])
    parser.add_argument("--repeats", type=int, default=3, help="failover and throughput runs")
    parser.add_argument("--window", type=float, default=30.0, help="cost: seconds counted")
    parser.add_argument("--put-interval", type=float, default=0.2, help="cost: s between puts")
    parser.add_argument(
        "--idempotency", action="store_true", help="cost: the mapping sets Idempotency = true"
    )
    parser.add_argument("--shards", type=int, default=6, help="throughput: stream shards")
    parser.add_argument("--records", type=int, default=24_000, help="throughput: records")
    parser.add_argument("--workers", type=int, default=3, help="throughput: against 1")
    parser.add_argument("--throughput-duration", type=float, default=10.0)
    parser.add_argument("--time-limit", type=float, default=120.0, help="throughput: per run")
    return parse_args_quick(parser, argv, {"only": ["failover"], "durations": [3.0], "repeats": 1})


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    results = anyio.run(main_async, args)
    results["run_s"] = time.perf_counter() - started
    results["repeats"] = args.repeats
    if "durations" in results:
        print_failover(results["durations"])
    if "cost" in results:
        print_cost(results["cost"])
    if "throughput" in results:
        print_throughput(results["throughput"])
    path = write_results("leases", results)
    print(f"\nwhole run {results['run_s']:.0f} s; written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
