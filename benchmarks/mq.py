"""poller consuming RabbitMQ and ActiveMQ queues next to hand-written consume/ack loops.

Why: an MQ mapping with one poller (the default: order kept) is as fast as its consumer loop. The
broker pushes messages up to the prefetch, so poller's engine (batching, settlement, records,
events) sits between the socket and the handler; it should cost little on top of a plain loop that
does the same consume, batch and ack (aim: poller/raw >= 0.8 per broker).

What runs, in one process, against a RabbitMQ and an ActiveMQ started for the run (their data in a
temporary directory) and stopped at the end. Each measurement fills a fresh queue with N messages
of 100 bytes before the clock starts, then consumes them in batches of 100 with a typed handler
that does nothing. Variants, per broker:

* raw aio-pika (RabbitMQ): prefetch 200, a consumer callback that buffers, a loop that takes 100,
  calls the handler and acks the batch with one ``basic.ack multiple``;
* raw stompman (ActiveMQ): ``client-individual`` subscription, ``activemq.prefetchSize`` 200, a
  handler that buffers, a loop that takes 100, calls the handler and ACKs each message (STOMP
  1.2 has no cumulative ack in that mode); stompman's own frame parser and ``ack()``;
* poller: a :class:`poller.runtime.Worker` from ``parse_config`` (memory store, BatchSize 100,
  one poller, the default 0.5 s window that a full queue never waits for).

Each is timed from connecting (``worker.start()`` for poller) until every message was acked.
Each measurement runs 3 times, alternating, and the medians are reported, with the CPU per
message of this process and of the broker (read from ``/proc``; the broker's includes whatever
it does in the background meanwhile).

Run ``python benchmarks/mq.py``; results also go to ``benchmarks/results/mq.json``. ``--quick``
is a smoke run (1,000 messages, one round); the brokers' start-up takes most of it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import stompman
from _common import Timing, _load_servers, median, print_table, timed, write_results

from poller.config import parse_config
from poller.observability import configure_logging
from poller.records import Record
from poller.runtime.worker import Worker

MESSAGE_BYTES = 100
BATCH_SIZE = 100
PREFETCH = 2 * BATCH_SIZE
#: Aim: poller's messages/s at least this share of the raw loop's on the same broker.
AIM_RATIO = 0.8
#: A measurement that has not acked every message after this long has failed.
CONSUME_TIMEOUT = 300.0
BODY = b"x" * MESSAGE_BYTES


#: ``--quick``: messages and rounds of a smoke run.
QUICK_MESSAGES = 1_000
QUICK_REPEATS = 1


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of the broker process ``pid`` and its descendants (a start script
    runs the broker as its child), from /proc; 0 without /proc."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue  # gone meanwhile: its time is in its parent's cutime now
        # utime, stime and the reaped children's cutime, cstime: a child's time moves into
        # its parent's when it exits, so the sum never goes backwards.
        total += sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        for task in tasks:  # threads come and go (a JVM's): one gone is no reason to skip
            with contextlib.suppress(OSError):
                pending.extend(int(child) for child in (task / "children").read_text().split())
    return total


@contextlib.contextmanager
def brokers() -> Iterator[tuple[str, str, dict[str, int]]]:
    """A RabbitMQ and an ActiveMQ for one run; yields their URLs and process ids (by URL), and
    stops them at the end."""
    servers = _load_servers()
    state_dir = Path(tempfile.mkdtemp(prefix="poller-benchmark-"))
    servers.STATE_DIR = state_dir
    started = []
    try:
        rabbit = servers.start_rabbitmq()
        started.append(rabbit)
        active = servers.start_activemq()
        started.append(active)
        print(f"rabbitmq on port {rabbit.port}, activemq on port {active.port}")
        rabbit_url = f"amqp://127.0.0.1:{rabbit.port}"
        active_url = f"stomp://127.0.0.1:{active.port}"
        yield rabbit_url, active_url, {rabbit_url: rabbit.pid, active_url: active.pid}
    finally:
        for server in started:
            servers.stop(server)
        shutil.rmtree(state_dir, ignore_errors=True)


def noop(batch: Sequence[Any]) -> None:
    """The handler: does nothing, so the numbers are the consumers' own cost."""


# --- RabbitMQ ------------------------------------------------------------------------------------


async def fill_rabbitmq(url: str, queue: str, count: int) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        await channel.declare_queue(queue, durable=True)
        for index in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(BODY, message_id=f"{queue}-{index}"), routing_key=queue
            )
        with anyio.fail_after(60):  # publishes without confirms: wait until all are queued
            while await _depth(channel, queue) < count:
                await anyio.sleep(0.05)
    finally:
        await connection.close()


async def _depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def raw_rabbitmq(url: str, queue: str, count: int) -> Timing:
    acked = 0
    with timed() as timing:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            source = await channel.declare_queue(queue, passive=True)
            buffered: collections.deque[aio_pika.abc.AbstractIncomingMessage] = collections.deque()
            arrived = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                buffered.append(message)
                arrived.set()

            await source.consume(on_message)
            with anyio.fail_after(CONSUME_TIMEOUT):
                while acked < count:
                    if not buffered:
                        arrived.clear()
                        await arrived.wait()
                        continue
                    batch = [buffered.popleft() for _ in range(min(BATCH_SIZE, len(buffered)))]
                    noop([m.body for m in batch])
                    await batch[-1].ack(multiple=True)
                    acked += len(batch)
        finally:
            await connection.close()
    return timing


# --- ActiveMQ ------------------------------------------------------------------------------------


def stomp_client(url: str) -> stompman.Client:
    host, port = url.removeprefix("stomp://").split(":")
    return stompman.Client(
        [stompman.ConnectionParameters(host, int(port), "", "")], max_concurrent_handlers=None
    )


async def fill_activemq(url: str, queue: str, count: int) -> None:
    async with stomp_client(url) as client:
        for _ in range(count):
            await client.send(BODY, f"/queue/{queue}", headers={"persistent": "false"})


async def raw_activemq(url: str, queue: str, count: int) -> Timing:
    acked = 0
    with timed() as timing:
        async with stomp_client(url) as client:
            buffered: collections.deque[stompman.AckableMessageFrame] = collections.deque()
            arrived = asyncio.Event()

            async def on_frame(frame: stompman.AckableMessageFrame) -> None:
                buffered.append(frame)
                arrived.set()

            subscription = await client.subscribe_with_manual_ack(
                f"/queue/{queue}", on_frame, headers={"activemq.prefetchSize": str(PREFETCH)}
            )
            with anyio.fail_after(CONSUME_TIMEOUT):
                while acked < count:
                    if not buffered:
                        arrived.clear()
                        await arrived.wait()
                        continue
                    batch = [buffered.popleft() for _ in range(min(BATCH_SIZE, len(buffered)))]
                    noop([f.body for f in batch])
                    for frame in batch:
                        await frame.ack()
                    acked += len(batch)
            await subscription.unsubscribe()
    return timing


# --- poller --------------------------------------------------------------------------------------


async def poller_consume(url: str, queue: str, count: int) -> Timing:
    mapping_id = f"mq-benchmark-{uuid.uuid4().hex[:8]}"
    config = parse_config(
        {
            "aws": {"region": "us-east-1"},
            "store": {"url": "memory://"},
            "worker": {"shutdown_grace_seconds": 10},
            "mappings": [
                {
                    "UUID": mapping_id,
                    "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}},
                    "Queues": [queue],
                    "BatchSize": BATCH_SIZE,
                }
            ],
        }
    )

    async def handler(batch: Sequence[Record]) -> None:
        noop(batch)

    worker = Worker(config, handlers={mapping_id: handler})
    deleted = 0
    try:
        with timed() as timing:
            await worker.start()
            [runner] = worker.runners
            counters = runner.counters
            with anyio.move_on_after(CONSUME_TIMEOUT):
                while counters.deleted_events < count:
                    await anyio.sleep(0.002)
            deleted = counters.deleted_events
    finally:
        await worker.stop_and_wait()
    if deleted < count:
        raise RuntimeError(f"poller acked {deleted} messages, expected {count}")
    return timing


Consume = Callable[[str, str, int], Awaitable[Timing]]
Fill = Callable[[str, str, int], Awaitable[None]]


async def measure(
    urls: tuple[str, str, dict[str, int]], count: int, repeats: int
) -> dict[str, Any]:
    rabbit_url, active_url, pids = urls
    plan: list[tuple[str, str, str, str, Fill, Consume]] = [
        ("rabbitmq-raw", "RabbitMQ", "raw aio-pika", rabbit_url, fill_rabbitmq, raw_rabbitmq),
        ("rabbitmq-poller", "RabbitMQ", "poller", rabbit_url, fill_rabbitmq, poller_consume),
        ("activemq-raw", "ActiveMQ", "raw stompman", active_url, fill_activemq, raw_activemq),
        ("activemq-poller", "ActiveMQ", "poller", active_url, fill_activemq, poller_consume),
    ]
    samples: dict[str, list[Timing]] = {key: [] for key, *_ in plan}
    broker_us: dict[str, list[float]] = {key: [] for key, *_ in plan}
    for repeat in range(repeats):  # alternate, so drift in machine load hits every variant
        for key, _broker, _variant, url, fill, consume in plan:
            queue = f"bench-{key}-{uuid.uuid4().hex[:8]}"
            await fill(url, queue, count)
            gc.collect()  # no variant pays for a full collection of what an earlier one left
            broker_before = server_cpu_seconds(pids[url])
            timing = await consume(url, queue, count)
            broker_us[key].append((server_cpu_seconds(pids[url]) - broker_before) / count * 1e6)
            samples[key].append(timing)
            print(
                f"  run {repeat + 1}/{repeats} {key:>16}: {count / timing.wall:9.1f} msg/s "
                f"({timing.wall:.2f} s), CPU {timing.cpu / count * 1e6:6.1f} us/msg here, "
                f"{broker_us[key][-1]:6.1f} in the broker",
                flush=True,
            )
    rates = {key: median([count / t.wall for t in timings]) for key, timings in samples.items()}
    cpus = {key: median([t.cpu / count * 1e6 for t in timings]) for key, timings in samples.items()}
    rows: list[dict[str, Any]] = []
    for key, broker, variant, *_ in plan:
        timings = samples[key]
        raw_key = key.replace("poller", "raw")
        ratio = rates[key] / rates[raw_key] if variant == "poller" else None
        cpu_ratio = cpus[key] / cpus[raw_key] if variant == "poller" else None
        rows.append(
            {
                "broker": broker,
                "variant": variant,
                "messages_per_s": rates[key],
                "wall_s": median([t.wall for t in timings]),
                "cpu_us_per_message": cpus[key],
                "broker_cpu_us_per_message": median(broker_us[key]),
                "ratio_to_raw": ratio,
                "cpu_ratio_to_raw": cpu_ratio,
                "meets_aim": None if ratio is None else ratio >= AIM_RATIO,
                "runs_messages_per_s": [count / t.wall for t in timings],
                "runs_cpu_us_per_message": [t.cpu / count * 1e6 for t in timings],
            }
        )
    return {
        "messages": count,
        "message_bytes": MESSAGE_BYTES,
        "batch_size": BATCH_SIZE,
        "prefetch": PREFETCH,
        "repeats": repeats,
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="messages (default 10,000)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_MESSAGES:,} messages, {QUICK_REPEATS} round (--messages and "
        "--repeats still win)",
    )
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else 10_000
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else 3
    configure_logging(level="warning", stream=sys.stderr)

    with brokers() as urls:
        report = anyio.run(measure, urls, args.messages, args.repeats)

    rows = report["results"]
    print(
        f"\nMedian of {args.repeats} alternating runs, {args.messages:,} messages of "
        f"{MESSAGE_BYTES} B per run, batches of {BATCH_SIZE}, a handler that does nothing. "
        f"'vs raw' = poller's messages/s over the raw loop's on the same broker (aim >= "
        f"{AIM_RATIO}). CPU us/msg counts this process; 'CPU vs raw' is that over the raw loop's; "
        f"'broker us/msg' is the broker process's CPU over the same interval."
    )
    print_table(
        "Consuming RabbitMQ (AMQP 0-9-1) and ActiveMQ (STOMP 1.2) on loopback",
        [
            "broker",
            "variant",
            "msg/s",
            "wall s",
            "CPU us/msg",
            "CPU vs raw",
            "broker us/msg",
            "vs raw",
            "aim",
        ],
        [
            [
                r["broker"],
                r["variant"],
                r["messages_per_s"],
                r["wall_s"],
                r["cpu_us_per_message"],
                r["cpu_ratio_to_raw"],
                r["broker_cpu_us_per_message"],
                r["ratio_to_raw"],
                "-" if r["meets_aim"] is None else ("met" if r["meets_aim"] else "MISSED"),
            ]
            for r in rows
        ],
    )
    path = write_results("mq", {**report, "aim_ratio": AIM_RATIO, "quick": args.quick})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
