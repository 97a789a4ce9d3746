"""poller consuming an SQS queue (moto over HTTP) next to hand-written aiobotocore consumers.

Why: with I/O-bound handlers an SQS consumer is as fast as the number of batches it keeps in flight,
until the server saturates. poller should cost next to nothing on top of a plain loop that keeps
the same number of batches in flight (aim: poller/raw >= 0.9 at each concurrency), and its
throughput should grow close to linearly with ``ScalingConfig.MaximumConcurrency`` until then.

What runs, in one process, against one moto server started for the run and stopped at the end.
Each measurement consumes 2,000 messages of 100 bytes from a fresh standard queue. moto's SQS
calls cost O(messages in the queue) (a ReceiveMessage of k messages scans the queue about 3k
times), so the queue is never filled with all 2,000 at once: a feeder task in the same process
keeps ``concurrency x 10 + 20`` messages not yet deleted in it (enough for every consumer to get
a full batch, plus two batches waiting), sending as the consumer deletes. The first window is
sent before the clock starts. The queue is fresh each time because a long poll cancelled on the
client goes on inside moto for up to 20 s and would hide messages from the next variant; queues
and feeding are otherwise identical. Each batch is handled by a coroutine that sleeps 20 ms
(I/O-bound work). Variants:

* one at a time: ReceiveMessage of one message, handle it, DeleteMessage, repeat;
* raw loop xN: N tasks, each ReceiveMessage (10 messages, long poll, every attribute, as poller
  asks), handle the batch, DeleteMessageBatch, repeat;
* poller xN: a :class:`poller.runtime.Worker` from ``parse_config`` (store ``memory://``,
  BatchSize 10, ``ScalingConfig.MaximumConcurrency`` N) with a typed handler.

Each is timed from creating its client (``worker.start()`` for poller) until every message was
deleted (successful delete entries counted). AWS's smallest MaximumConcurrency is 2, so poller has
no "concurrency 1": its x2 is compared with the raw loop x2, and the raw loop x1 is shown next to
it. poller starts 5 pollers (fewer if MaximumConcurrency is lower) and adds one every 0.2 s while
receives come back full, as Lambda does; the raw loop runs all N tasks from the start. Each
measurement runs 3 times, alternating, and the medians are reported.

Run ``python benchmarks/sqs.py`` (about 10 minutes; ``--quick``: 60 messages, one run); results
also go to ``benchmarks/results/sqs.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from _common import (
    REGION,
    Timing,
    aws_config,
    median,
    moto_server,
    parse_args_quick,
    print_table,
    timed,
    write_results,
)

from poller.aws import AwsClients
from poller.config import parse_config
from poller.observability import configure_logging
from poller.records import Record
from poller.runtime.worker import Worker

MESSAGE_BYTES = 100
#: What the handler does per batch: wait 20 ms, as an I/O-bound function would.
WORK_SECONDS = 0.02
BATCH_SIZE = 10
#: Aim: poller's messages/s at least this share of the raw loop's at the same concurrency.
AIM_RATIO = 0.9
#: A measurement that has not deleted every message after this long has failed.
CONSUME_TIMEOUT = 600.0
#: How often the poller measurement looks at the delete counter.
CHECK_EVERY = 0.005
#: Messages kept in the queue beyond one batch per consumer.
SPARE_MESSAGES = 20
#: How often a feeder with a full window looks again.
FEED_CHECK_EVERY = 0.005


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    url: str
    arn: str


def body(n: int) -> str:
    return f"{n:010d}:".ljust(MESSAGE_BYTES, "x")


class Feeder:
    """Keeps ``window`` messages not yet deleted in the queue until ``total`` were sent."""

    def __init__(self, sqs: Any, queue: Queue, total: int, window: int) -> None:
        self._sqs = sqs
        self._total = total
        self._window = window
        self.queue = queue
        self.sent = 0

    async def _send(self, count: int) -> None:
        entries = [
            {"Id": str(n), "MessageBody": body(n)} for n in range(self.sent, self.sent + count)
        ]
        response = await self._sqs.send_message_batch(QueueUrl=self.queue.url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")
        self.sent += count

    async def top_up(self, deleted: int) -> bool:
        """Send until the window is full (or everything was sent); False when nothing was due."""
        sent_any = False
        while self.sent < self._total and self.sent - deleted < self._window:
            await self._send(min(10, self._total - self.sent, self._window - (self.sent - deleted)))
            sent_any = True
        return sent_any

    async def run(self, deleted: Callable[[], int]) -> None:
        """Top the queue up as the consumer deletes, until every message was sent."""
        while self.sent < self._total:
            if not await self.top_up(deleted()):
                await anyio.sleep(FEED_CHECK_EVERY)


@contextlib.asynccontextmanager
async def fed_queue(endpoint: str, total: int, concurrency: int) -> AsyncIterator[Feeder]:
    """A new standard queue with its first window of messages, and the feeder for the rest."""
    name = f"benchmark-{uuid.uuid4().hex[:12]}"
    clients = AwsClients(aws_config(endpoint))
    try:
        sqs = await clients.client("sqs")
        url = str((await sqs.create_queue(QueueName=name))["QueueUrl"])
        queue = Queue(name, url, f"arn:aws:sqs:{REGION}:123456789012:{name}")
        feeder = Feeder(sqs, queue, total, concurrency * BATCH_SIZE + SPARE_MESSAGES)
        await feeder.top_up(0)
        yield feeder
    finally:
        await clients.aclose()


async def handle(messages: Sequence[Any]) -> None:
    """The raw loops' handler: the same 20 ms of I/O-bound work per batch as poller's."""
    await anyio.sleep(WORK_SECONDS)


async def consume_one_at_a_time(endpoint: str, feeder: Feeder, total: int) -> tuple[Timing, int]:
    """Receive one message, handle it, delete it; until ``total`` were deleted."""
    deleted = 0
    with timed() as timing:
        clients = AwsClients(aws_config(endpoint))
        try:
            sqs = await clients.client("sqs")
            url = str((await sqs.get_queue_url(QueueName=feeder.queue.name))["QueueUrl"])
            with anyio.fail_after(CONSUME_TIMEOUT):
                async with anyio.create_task_group() as group:
                    group.start_soon(feeder.run, lambda: deleted)
                    while deleted < total:
                        response = await sqs.receive_message(
                            QueueUrl=url,
                            MaxNumberOfMessages=1,
                            WaitTimeSeconds=20,
                            MessageSystemAttributeNames=["All"],
                            MessageAttributeNames=["All"],
                        )
                        for message in response.get("Messages") or ():
                            await handle([message])
                            await sqs.delete_message(
                                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                            )
                            deleted += 1
        finally:
            await clients.aclose()
    return timing, 1


async def consume_raw(
    endpoint: str, feeder: Feeder, total: int, concurrency: int
) -> tuple[Timing, int]:
    """``concurrency`` tasks, each receive 10 / handle / delete-batch, until all are deleted."""
    deleted = 0
    done = anyio.Event()

    async def consumer(sqs: Any, url: str) -> None:
        nonlocal deleted
        while True:
            response = await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=BATCH_SIZE,
                WaitTimeSeconds=20,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages") or []
            if not messages:
                continue
            await handle(messages)
            result = await sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            deleted += len(result.get("Successful") or ())
            if deleted >= total:
                done.set()

    with timed() as timing:
        clients = AwsClients(aws_config(endpoint))
        try:
            sqs = await clients.client("sqs")
            url = str((await sqs.get_queue_url(QueueName=feeder.queue.name))["QueueUrl"])
            with anyio.fail_after(CONSUME_TIMEOUT):
                async with anyio.create_task_group() as group:
                    group.start_soon(feeder.run, lambda: deleted)
                    for _ in range(concurrency):
                        group.start_soon(consumer, sqs, url)
                    await done.wait()
                    group.cancel_scope.cancel()
        finally:
            await clients.aclose()
    return timing, concurrency


async def consume_poller(
    endpoint: str, feeder: Feeder, total: int, concurrency: int
) -> tuple[Timing, int]:
    """A Worker from start() until it has deleted every message; returns the most pollers seen."""
    mapping_id = f"sqs-benchmark-{uuid.uuid4().hex[:8]}"
    config = parse_config(
        {
            "aws": aws_config(endpoint).model_dump(exclude_none=True),
            "store": {"url": "memory://"},
            "worker": {"shutdown_grace_seconds": 10},
            "mappings": [
                {
                    "UUID": mapping_id,
                    "EventSourceArn": feeder.queue.arn,
                    "BatchSize": BATCH_SIZE,
                    "ScalingConfig": {"MaximumConcurrency": concurrency},
                }
            ],
        }
    )

    async def handler(batch: Sequence[Record]) -> None:
        await anyio.sleep(WORK_SECONDS)

    worker = Worker(config, handlers={mapping_id: handler})
    most_pollers = 0
    deleted = 0
    try:
        with timed() as timing:
            await worker.start()
            [runner] = worker.runners
            counters = runner.counters
            with anyio.move_on_after(CONSUME_TIMEOUT):
                async with anyio.create_task_group() as group:
                    group.start_soon(feeder.run, lambda: counters.deleted_events)
                    while counters.deleted_events < total:
                        most_pollers = max(most_pollers, getattr(runner, "pollers", 0))
                        await anyio.sleep(CHECK_EVERY)
            deleted = counters.deleted_events
    finally:
        await worker.stop_and_wait()
    if deleted < total:
        raise RuntimeError(f"poller deleted {deleted} messages, expected {total}")
    return timing, most_pollers


Consume = Callable[[str, Feeder, int], Awaitable[tuple[Timing, int]]]


def variants(concurrencies: Sequence[int]) -> list[tuple[str, str, int, Consume]]:
    """(key, kind, concurrency, consumer) for every measurement of one repetition."""
    found: list[tuple[str, str, int, Consume]] = [
        ("one-at-a-time", "one at a time", 1, consume_one_at_a_time)
    ]
    raw_levels = sorted({1, *concurrencies})
    for level in raw_levels:

        def raw(endpoint: str, feeder: Feeder, total: int, n: int = level) -> Any:
            return consume_raw(endpoint, feeder, total, n)

        found.append((f"raw-{level}", "raw loop", level, raw))
    for level in concurrencies:

        def pooled(endpoint: str, feeder: Feeder, total: int, n: int = level) -> Any:
            return consume_poller(endpoint, feeder, total, n)

        found.append((f"poller-{level}", "poller", level, pooled))
    return found


async def measure(
    endpoint: str, count: int, repeats: int, concurrencies: Sequence[int]
) -> dict[str, Any]:
    plan = variants(concurrencies)
    samples: dict[str, list[Timing]] = {key: [] for key, *_ in plan}
    pollers_seen: dict[str, list[int]] = {key: [] for key, *_ in plan}
    for repeat in range(repeats):  # alternate, so drift in machine load hits every variant
        for key, _kind, level, consume in plan:
            async with fed_queue(endpoint, count, level) as feeder:
                timing, pollers = await consume(endpoint, feeder, count)
            samples[key].append(timing)
            pollers_seen[key].append(pollers)
            print(
                f"  run {repeat + 1}/{repeats} {key:>14}: {count / timing.wall:8.1f} msg/s "
                f"({timing.wall:.2f} s)",
                flush=True,
            )

    rates = {key: median([count / t.wall for t in timings]) for key, timings in samples.items()}
    baseline = rates["one-at-a-time"]
    rows: list[dict[str, Any]] = []
    for key, kind, level, _ in plan:
        timings = samples[key]
        rate = rates[key]
        raw_rate = rates.get(f"raw-{level}")
        is_poller = kind == "poller"
        ratio = rate / raw_rate if is_poller and raw_rate else None
        rows.append(
            {
                "variant": kind,
                "concurrency": level,
                "messages_per_s": rate,
                "wall_s": median([t.wall for t in timings]),
                "cpu_s": median([t.cpu for t in timings]),
                "cpu_us_per_message": median([t.cpu / count * 1e6 for t in timings]),
                "ratio_to_raw": ratio,
                "ratio_to_one_at_a_time": rate / baseline,
                "per_unit_of_concurrency": rate / level,
                "most_pollers": max(pollers_seen[key]) if is_poller else None,
                "meets_aim": None if ratio is None else ratio >= AIM_RATIO,
                "runs_messages_per_s": [count / t.wall for t in timings],
            }
        )
    return {
        "messages": count,
        "message_bytes": MESSAGE_BYTES,
        "batch_size": BATCH_SIZE,
        "work_seconds_per_batch": WORK_SECONDS,
        "repeats": repeats,
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 5, 20])
    args = parse_args_quick(parser, argv, {"messages": 60, "repeats": 1})
    if min(args.concurrency) < 2:
        parser.error("--concurrency: ScalingConfig.MaximumConcurrency is at least 2")
    configure_logging(level="warning", stream=sys.stderr)

    with moto_server() as endpoint:
        report = anyio.run(measure, endpoint, args.messages, args.repeats, args.concurrency)

    rows = report["results"]
    print(
        f"\nMedian of {args.repeats} alternating runs, {args.messages:,} messages of "
        f"{MESSAGE_BYTES} B per run, a 20 ms handler per batch. 'vs raw' = messages/s over the "
        f"raw loop's at the same concurrency (aim >= {AIM_RATIO}); poller's smallest "
        "MaximumConcurrency is 2 (AWS's minimum), so raw x1 has no poller row. 'per conc.' = "
        "messages/s per unit of concurrency (flat = linear scaling). CPU us/msg counts this "
        "process only (moto runs in its own), the feeder's sends and checks included."
    )
    print_table(
        "Consuming SQS from moto over HTTP",
        [
            "variant",
            "conc.",
            "msg/s",
            "wall s",
            "CPU us/msg",
            "per conc.",
            "vs 1-at-a-time",
            "pollers",
            "vs raw",
            "aim",
        ],
        [
            [
                r["variant"],
                r["concurrency"],
                r["messages_per_s"],
                r["wall_s"],
                r["cpu_us_per_message"],
                r["per_unit_of_concurrency"],
                r["ratio_to_one_at_a_time"],
                r["most_pollers"],
                r["ratio_to_raw"],
                "-" if r["meets_aim"] is None else ("met" if r["meets_aim"] else "MISSED"),
            ]
            for r in rows
        ],
    )
    path = write_results("sqs", {**report, "aim_ratio": AIM_RATIO})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
