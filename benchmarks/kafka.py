"""poller consuming a Kafka topic (tansu) next to a raw aiokafka ``getmany`` + ``commit`` loop.

Why: a Kafka consumer's throughput is set by the client library, the broker and the commits; the
engine on top should cost little. The aim is poller within 20% of a hand-written loop that does
the same work (read, hand over, commit after every batch), i.e. a poller/raw ratio >= 0.8.

What runs, in one process, against one broker: tansu (a Kafka-protocol broker, in memory) started
for the run and stopped at the end, or the broker given with ``--bootstrap`` /
``POLLER_BENCH_KAFKA_BOOTSTRAP``.

* A topic with 8 partitions is created with the admin client, and 200,000 records of 100 bytes
  are produced to it round-robin over the partitions, every acknowledgement awaited. Producing
  is timed and reported on its own; every measurement then reads this same topic in a fresh
  consumer group from the beginning.
* (a) raw: one ``AIOKafkaConsumer`` in a new group, subscribed to the topic; a loop of
  ``getmany(timeout_ms=500, max_records=100)`` that, for each partition's records, calls a no-op
  handler and then ``commit({tp: last + 1})``, until every record was handled and committed.
* (b) poller: a :class:`poller.runtime.Worker` with one self-managed Kafka mapping (store
  ``memory://``, new group, StartingPosition TRIM_HORIZON, BatchSize 100,
  MaximumBatchingWindowInSeconds 0 unless ``--window`` says otherwise: AWS's Kafka default is
  0.5 s, which would pace a partition to two batches a second) and an ``async def handle(batch)``
  that counts records. Done means every record was handed over *and* the group's committed offsets
  (read back from the broker with an admin client) reached the end of every partition.
* (c) poller, Lambda style: the same with ``def handler(event, context)`` (runs in a worker thread
  and gets AWS's Kafka event, base64 values included).

Both sides use the same group timings (session 2 s, heartbeat 0.3 s for raw / session/3 for
poller, rebalance 2 s). tansu holds a join for about half the session timeout, so the clock runs
from the first record received (raw) or handed over (poller) to the end; the time from start to
the first record is reported as "join s". CPU is ``process_time`` of this process over the same
interval (the broker runs in its own), per 100,000 records. Variants alternate (raw, poller,
poller lambda, raw, ...), ``--repeats`` times (3); best and median are reported, and the ratios
are taken within this run. ``--profile`` adds one more typed poller run under cProfile and prints
where its time went.

Run ``python benchmarks/kafka.py`` (``--quick``: 20,000 records, one run); results also go to
``benchmarks/results/kafka.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from _common import kafka_server, median, parse_args_quick, print_table, write_results
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from poller.config import parse_config
from poller.observability import configure_logging
from poller.records import Batch
from poller.runtime.worker import Worker

RECORD_BYTES = 100
BATCH_SIZE = 100
#: Aim: poller's records/s at least this share of the raw loop's.
AIM_RATIO = 0.8
#: Group timings of both sides (tansu holds a join for about half the session timeout).
SESSION_TIMEOUT_MS = 2000
HEARTBEAT_INTERVAL_MS = 300
REBALANCE_TIMEOUT_MS = 2000
#: The raw loop's longest wait in one getmany.
RAW_WAIT_MS = 500
#: A measurement that has not consumed and committed everything after this long has failed.
CONSUME_TIMEOUT = 600.0
#: How often the poller measurement looks at its counters and at the committed offsets.
CHECK_EVERY = 0.002
#: Produced records awaited in chunks of this many futures.
PRODUCE_CHUNK = 10_000
ENV_BOOTSTRAP = "POLLER_BENCH_KAFKA_BOOTSTRAP"


@dataclass(slots=True)
class Run:
    """One measurement: start, first record, end (perf_counter and process_time), batches."""

    started: float = 0.0
    first: float | None = None
    first_cpu: float = 0.0
    ended: float = 0.0
    ended_cpu: float = 0.0
    #: When the last record was handed over (poller: the commits may still be on their way).
    handed: float = 0.0
    batches: int = 0
    records: int = 0

    def mark_first(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()

    def mark_end(self) -> None:
        self.ended = time.perf_counter()
        self.ended_cpu = time.process_time()

    @property
    def join(self) -> float:
        assert self.first is not None
        return self.first - self.started

    @property
    def wall(self) -> float:
        assert self.first is not None
        return self.ended - self.first

    @property
    def cpu(self) -> float:
        return self.ended_cpu - self.first_cpu

    @property
    def commit_tail(self) -> float:
        """Seconds from the last hand-over until every offset was committed (poller only)."""
        return max(0.0, self.ended - self.handed) if self.handed else 0.0


# --- the topic ------------------------------------------------------------------------------------


def value_of(n: int) -> bytes:
    return f"{n:010d}:".encode().ljust(RECORD_BYTES, b"x")


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` with ``partitions`` partitions (never rely on auto-creation)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, partitions: int, count: int) -> dict[int, int]:
    """Produce ``count`` records round-robin; return each partition's end offset."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks=1
    )
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for first in range(0, count, PRODUCE_CHUNK):
            futures = [
                await producer.send(topic, value=value_of(n), partition=n % partitions)
                for n in range(first, min(first + PRODUCE_CHUNK, count))
            ]
            for future in futures:
                metadata = await future
                ends[metadata.partition] = max(ends.get(metadata.partition, 0), metadata.offset + 1)
    finally:
        await producer.stop()
    return ends


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """The group's committed offsets per partition number, as the broker has them.

    The partitions are named: tansu closes the connection on an OffsetFetch for "all topics".
    """
    wanted = [TopicPartition(topic, p) for p in partitions]
    found = await admin.list_consumer_group_offsets(group, partitions=wanted)
    return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}


# --- the raw loop ---------------------------------------------------------------------------------


def handle_raw(messages: list[Any]) -> None:
    """The raw loop's per-batch work: none."""


async def consume_raw(
    bootstrap: str, topic: str, ends: dict[int, int], admin: AIOKafkaAdminClient
) -> Run:
    """getmany(max_records=100); per partition: handle, commit last + 1; until all committed."""
    total = sum(ends.values())
    group = f"raw-benchmark-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="raw-benchmark",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
    )
    run = Run(started=time.perf_counter())
    await consumer.start()
    try:
        with anyio.fail_after(CONSUME_TIMEOUT):
            while run.records < total:
                fetched = await consumer.getmany(timeout_ms=RAW_WAIT_MS, max_records=BATCH_SIZE)
                for tp, messages in fetched.items():
                    if not messages:
                        continue
                    run.mark_first()
                    handle_raw(messages)
                    await consumer.commit({tp: messages[-1].offset + 1})
                    run.records += len(messages)
                    run.batches += 1
        run.mark_end()
    finally:
        await consumer.stop()
    await _check_committed(admin, group, topic, ends, run, "raw loop")
    return run


async def _check_committed(
    admin: AIOKafkaAdminClient, group: str, topic: str, ends: dict[int, int], run: Run, label: str
) -> None:
    if run.records != sum(ends.values()):
        raise RuntimeError(f"{label} handled {run.records} records, expected {sum(ends.values())}")
    committed = await committed_offsets(admin, group, topic, ends)
    if committed != ends:
        raise RuntimeError(f"{label}: group {group} committed {committed}, expected {ends}")


# --- poller ---------------------------------------------------------------------------------------


def poller_config(bootstrap: str, topic: str, group: str, window: float) -> Any:
    return parse_config(
        {
            "store": {"url": "memory://"},
            "worker": {
                "shutdown_grace_seconds": 10,
                "kafka_session_timeout_seconds": SESSION_TIMEOUT_MS / 1000,
                "kafka_revoke_grace_seconds": 5,
            },
            "mappings": [
                {
                    "UUID": group,
                    "SelfManagedEventSource": {
                        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}
                    },
                    "Topics": [topic],
                    "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group},
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": BATCH_SIZE,
                    "MaximumBatchingWindowInSeconds": window,
                }
            ],
        }
    )


def _handlers(run: Run, style: str) -> Callable[..., Any]:
    """A handler that counts what it was handed: typed (async) or Lambda style (sync, a thread)."""
    if style == "typed":

        async def handle(batch: Batch) -> None:
            run.mark_first()
            run.records += len(batch)
            run.batches += 1

        return handle

    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> None:
        count = sum(len(records) for records in event["records"].values())
        with lock:
            run.mark_first()
            run.records += count
            run.batches += 1

    return handler


async def consume_poller(
    bootstrap: str,
    topic: str,
    ends: dict[int, int],
    admin: AIOKafkaAdminClient,
    *,
    window: float,
    style: str,
) -> Run:
    """A Worker until every record was handed over and the group committed every end offset."""
    total = sum(ends.values())
    group = f"poller-benchmark-{uuid.uuid4().hex[:8]}"
    run = Run()
    worker = Worker(
        poller_config(bootstrap, topic, group, window), handlers={group: _handlers(run, style)}
    )
    last_positions = {f"{topic}-{p}": str(end - 1) for p, end in ends.items()}
    run.started = time.perf_counter()
    try:
        await worker.start()
        [runner] = worker.runners
        with anyio.fail_after(CONSUME_TIMEOUT):
            while run.records < total:
                await anyio.sleep(CHECK_EVERY)
            run.handed = time.perf_counter()
            # Settled in the engine (checkpoint moved past the last record)...
            while True:
                partitions = runner.status()["partitions"]
                positions = {pid: (p["checkpoint"] if p else None) for pid, p in partitions.items()}
                if all(positions.get(pid) == last for pid, last in last_positions.items()):
                    break
                await anyio.sleep(CHECK_EVERY)
            # ...and committed, as the broker says.
            while await committed_offsets(admin, group, topic, ends) != ends:
                await anyio.sleep(CHECK_EVERY)
        run.mark_end()
        metrics = runner.status()["metrics"]
    finally:
        await worker.stop_and_wait()
    await _check_committed(admin, group, topic, ends, run, f"poller ({style})")
    committed_count = metrics.get("CommittedEventCount")
    if committed_count is not None and committed_count != total:
        print(
            f"  note: CommittedEventCount says {committed_count:,}, the broker has all "
            f"{total:,} committed",
            flush=True,
        )
    return run


# --- measuring ------------------------------------------------------------------------------------


Consume = Callable[[str, str, dict[int, int], AIOKafkaAdminClient], Awaitable[Run]]


def variants(window: float, lambda_style: bool) -> list[tuple[str, str, Consume]]:
    """(key, description, consumer) for one repetition, in the order they alternate."""

    def typed(b: str, t: str, e: dict[int, int], a: AIOKafkaAdminClient) -> Awaitable[Run]:
        return consume_poller(b, t, e, a, window=window, style="typed")

    def lambda_(b: str, t: str, e: dict[int, int], a: AIOKafkaAdminClient) -> Awaitable[Run]:
        return consume_poller(b, t, e, a, window=window, style="lambda")

    found: list[tuple[str, str, Consume]] = [
        ("raw", "raw aiokafka getmany + commit", consume_raw),
        ("poller-typed", "poller Worker, async handle(batch)", typed),
    ]
    if lambda_style:
        found.append(("poller-lambda", "poller Worker, handler(event, context)", lambda_))
    return found


async def profile_poller(
    bootstrap: str, topic: str, ends: dict[int, int], admin: AIOKafkaAdminClient, window: float
) -> dict[str, str]:
    """One more typed poller run under cProfile; the top 25 by cumulative and by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run = await consume_poller(bootstrap, topic, ends, admin, window=window, style="typed")
    finally:
        profiler.disable()
    texts: dict[str, str] = {}
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(25)
        texts[key] = out.getvalue()
    print(
        f"\nprofiled poller run: {sum(ends.values()) / run.wall:,.0f} records/s under cProfile "
        f"(join {run.join:.2f} s); whole run profiled, start-up and join included"
    )
    for key, text in texts.items():
        print(f"\n--- top 25 by {key} ---{text}")
    return texts


async def measure(
    bootstrap: str,
    partitions: int,
    count: int,
    repeats: int,
    window: float,
    lambda_style: bool,
    profile: bool,
) -> dict[str, Any]:
    topic = f"benchmark-{uuid.uuid4().hex[:12]}"
    await create_topic(bootstrap, topic, partitions)
    producing_cpu = time.process_time()
    producing = time.perf_counter()
    ends = await produce(bootstrap, topic, partitions, count)
    producing = time.perf_counter() - producing
    producing_cpu = time.process_time() - producing_cpu
    if sum(ends.values()) != count:
        raise RuntimeError(f"the topic's end offsets {ends} do not add up to {count}")
    print(
        f"topic {topic}: {partitions} partitions, {count:,} records of {RECORD_BYTES} B produced "
        f"in {producing:.1f} s ({count / producing:,.0f} records/s, "
        f"CPU {producing_cpu / count * 1e5:.2f} s/100k); per partition: "
        f"{', '.join(str(ends[p]) for p in sorted(ends))}",
        flush=True,
    )
    plan = variants(window, lambda_style)
    samples: dict[str, list[Run]] = {key: [] for key, *_ in plan}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for repeat in range(repeats):  # alternate, so drift in machine load hits every variant
            for key, _description, consume in plan:
                run = await consume(bootstrap, topic, ends, admin)
                samples[key].append(run)
                print(
                    f"  run {repeat + 1}/{repeats} {key:>13}: {count / run.wall:9,.0f} records/s "
                    f"({run.wall:.2f} s, join {run.join:.2f} s, CPU {run.cpu:.2f} s, "
                    f"{run.batches:,} batches"
                    + (f", commit tail {run.commit_tail * 1000:.0f} ms" if run.handed else "")
                    + ")",
                    flush=True,
                )
        profiles = await profile_poller(bootstrap, topic, ends, admin, window) if profile else None
    finally:
        await admin.close()

    raw_rates = [count / r.wall for r in samples["raw"]]
    rows: list[dict[str, Any]] = []
    for key, description, _ in plan:
        runs = samples[key]
        rates = [count / r.wall for r in runs]
        is_raw = key == "raw"
        ratio = median(rates) / median(raw_rates)
        rows.append(
            {
                "variant": description,
                "key": key,
                "batching_window_s": None if is_raw else window,
                "records_per_s_best": max(rates),
                "records_per_s_median": median(rates),
                "wall_s_median": median([r.wall for r in runs]),
                "join_s_median": median([r.join for r in runs]),
                "cpu_s_per_100k_median": median([r.cpu / count * 1e5 for r in runs]),
                "records_per_batch": median([r.records / r.batches for r in runs]),
                "commit_tail_ms_median": None
                if is_raw
                else median([r.commit_tail * 1000 for r in runs]),
                "ratio_to_raw_median": ratio,
                "ratio_to_raw_best": max(rates) / max(raw_rates),
                "meets_aim": None if is_raw else ratio >= AIM_RATIO,
                "runs_records_per_s": rates,
                "runs_join_s": [r.join for r in runs],
                "runs_cpu_s": [r.cpu for r in runs],
            }
        )
    return {
        "topic": topic,
        "partitions": partitions,
        "records": count,
        "record_bytes": RECORD_BYTES,
        "batch_size": BATCH_SIZE,
        "batching_window_s": window,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "produce_records_per_s": count / producing,
        "produce_s": producing,
        "produce_cpu_s": producing_cpu,
        "repeats": repeats,
        "results": rows,
        **({"profile_top25": profiles} if profiles else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--window",
        type=float,
        default=0.0,
        help="poller's MaximumBatchingWindowInSeconds (AWS's Kafka default is 0.5)",
    )
    parser.add_argument(
        "--no-lambda", action="store_true", help="skip the Lambda-style handler variant"
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more poller run under cProfile, top 25 printed"
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get(ENV_BOOTSTRAP),
        help=f"use this broker (host:port) instead of starting tansu (env {ENV_BOOTSTRAP})",
    )
    args = parse_args_quick(parser, argv, {"records": 20_000, "repeats": 1})
    configure_logging(level="warning", stream=sys.stderr)

    with kafka_server(args.bootstrap) as bootstrap:
        report = anyio.run(
            measure,
            bootstrap,
            args.partitions,
            args.records,
            args.repeats,
            args.window,
            not args.no_lambda,
            args.profile,
        )

    rows = report["results"]
    print(
        f"\n{args.repeats} alternating runs each; {args.records:,} records of {RECORD_BYTES} B over "
        f"{args.partitions} partitions, BatchSize {BATCH_SIZE}, poller's "
        f"MaximumBatchingWindowInSeconds {args.window} (AWS's Kafka default: 0.5). Timed from the "
        "first record handed over until every record was handed over and committed; 'join s' "
        "(start to first record) is not in records/s. CPU counts this process only (the broker "
        f"runs in its own). 'vs raw' = poller's records/s over the raw loop's (aim >= {AIM_RATIO})."
    )
    print_table(
        "Consuming Kafka from tansu",
        [
            "variant",
            "rec/s best",
            "rec/s median",
            "wall s",
            "join s",
            "CPU s/100k",
            "rec/batch",
            "vs raw (median)",
            "vs raw (best)",
            "aim",
        ],
        [
            [
                r["variant"],
                r["records_per_s_best"],
                r["records_per_s_median"],
                r["wall_s_median"],
                r["join_s_median"],
                r["cpu_s_per_100k_median"],
                r["records_per_batch"],
                r["ratio_to_raw_median"],
                r["ratio_to_raw_best"],
                "-" if r["meets_aim"] is None else ("met" if r["meets_aim"] else "MISSED"),
            ]
            for r in rows
        ],
    )
    path = write_results("kafka", {**report, "aim_ratio": AIM_RATIO})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
