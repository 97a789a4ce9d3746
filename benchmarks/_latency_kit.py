"""The source-neutral half of ``latency.py``: stamps, the probe that collects latencies, the two
regimes (caught up, backlog), poller's Worker around a probing handler, and the servers.

A record's payload is ``b"<n> <stamp>"``: ``n`` its number in the phase (-1 for a warm-up
record), ``stamp`` ``time.time()`` taken just before the call that writes it is made, so a
latency includes that call's own round trip (measured apart as ``put_p50_ms``). Producer and
consumers live in one process, on one clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
from _common import _load_servers

from poller.config import parse_config
from poller.records import Record
from poller.runtime.worker import Worker

#: Longest wait for the first warm-up record to reach a fresh consumer (group joins, LATEST).
WARM_TIMEOUT = 60.0
#: How often a warm-up record is written again while none has arrived.
WARM_EVERY = 0.5
#: Longest wait for the last record of a phase after the producer finished.
DRAIN_TIMEOUT = 120.0
#: Idle time between the warm-up record's arrival and the first measured record.
SETTLE_SECONDS = 0.3
#: Records written per call when filling a backlog.
BACKLOG_CHUNK = 100


def payload(n: int) -> bytes:
    """Record ``n`` of a phase, stamped now (call just before the write call is made)."""
    return b"%d %.6f" % (n, time.time())


@dataclass(slots=True)
class Probe:
    """Latency per record as consumers see them: now - stamp, first sighting of each ``n`` only."""

    samples_ms: list[float] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    #: When each record's write call returned (caught up), and when the consumer saw it.
    returned: dict[int, float] = field(default_factory=dict)
    arrived: dict[int, float] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float = 0.0
    warm: anyio.Event = field(default_factory=anyio.Event)
    _wanted: int = 0
    _all: anyio.Event = field(default_factory=anyio.Event)

    def note(self, data: bytes | str, seen_at: float | None = None) -> None:
        """Take one payload as the handler received it (``seen_at``: when, if not now)."""
        now = time.time() if seen_at is None else seen_at
        text = data.decode() if isinstance(data, bytes) else data
        number, stamp = text.split()
        n = int(number)
        if n < 0:
            self.warm.set()
            return
        if n in self.seen:  # at-least-once: a redelivery is not a new sample
            return
        self.seen.add(n)
        self.arrived[n] = now
        self.samples_ms.append((now - float(stamp)) * 1000.0)
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if self._wanted and len(self.seen) >= self._wanted:
            self._all.set()

    async def wait_for(self, count: int, limit: float, what: str) -> None:
        """Until ``count`` distinct records were seen; a clear error after ``limit`` seconds."""
        self._wanted = count
        if len(self.seen) >= count:
            return
        with anyio.move_on_after(limit):
            await self._all.wait()
        if len(self.seen) < count:
            raise RuntimeError(
                f"{what}: {len(self.seen)} of {count} records arrived within {limit:.0f} s"
            )


class Resource(Protocol):
    """A fresh stream, table, queue or topic for one phase, and how to write to it."""

    #: Most records one write call takes (a backlog is written in chunks of this many).
    chunk: int

    async def put(self, payloads: Sequence[bytes]) -> None:
        """Write ``payloads`` in one call (one record per call in the caught-up regime)."""


#: Runs a consumer of the resource that notes every payload in the probe while the body runs.
Consumer = Callable[[Any, Probe], contextlib.AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class PhaseResult:
    samples_ms: list[float]
    put_ms: list[float]
    #: Caught up: from the write call's return to the consumer (the put's own time left out;
    #: below 0 when the record arrived before the call's response was read).
    after_put_ms: list[float] = field(default_factory=list)
    #: Seconds the phase took, consumer start and stop included.
    wall_s: float = 0.0
    #: Backlog: records per second from the first hand-over to the last.
    drain_per_s: float | None = None
    #: Backlog: seconds from starting the consumer to its first record.
    first_after_s: float | None = None
    #: Backlog: records per second from starting the consumer to its last record.
    from_start_per_s: float | None = None


async def warm_up(resource: Resource, probe: Probe, what: str) -> None:
    """Write warm-up records until one arrives: the consumer is then joined and caught up."""
    with anyio.move_on_after(WARM_TIMEOUT):
        while not probe.warm.is_set():
            await resource.put([payload(-1)])
            with anyio.move_on_after(WARM_EVERY):
                await probe.warm.wait()
    if not probe.warm.is_set():
        raise RuntimeError(f"{what}: no warm-up record arrived within {WARM_TIMEOUT:.0f} s")


async def caught_up(
    resource: Resource, consumer: Consumer, rate: float, count: int, what: str
) -> PhaseResult:
    """``count`` records at ``rate`` per second, one write call each, to a warm, idle consumer."""
    began = time.time()
    probe = Probe()
    put_ms: list[float] = []
    async with consumer(resource, probe):
        await warm_up(resource, probe, what)
        # Let the consumer settle into its idle pace before the measured records.
        await anyio.sleep(SETTLE_SECONDS)
        start = anyio.current_time()
        for n in range(count):
            delay = start + n / rate - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            before = time.perf_counter()
            await resource.put([payload(n)])
            probe.returned[n] = time.time()
            put_ms.append((time.perf_counter() - before) * 1000.0)
        await probe.wait_for(count, DRAIN_TIMEOUT, what)
    after_put = [(probe.arrived[n] - probe.returned[n]) * 1000.0 for n in range(count)]
    return PhaseResult(probe.samples_ms, put_ms, after_put_ms=after_put, wall_s=time.time() - began)


async def backlog(resource: Resource, consumer: Consumer, count: int, what: str) -> PhaseResult:
    """``count`` records written in chunks before the consumer starts; then drained."""
    began = time.time()
    probe = Probe()
    put_ms: list[float] = []
    size = min(BACKLOG_CHUNK, resource.chunk)
    for first in range(0, count, size):
        chunk = [payload(n) for n in range(first, min(first + size, count))]
        before = time.perf_counter()
        await resource.put(chunk)
        put_ms.append((time.perf_counter() - before) * 1000.0)
    started = time.time()
    async with consumer(resource, probe):
        await probe.wait_for(count, DRAIN_TIMEOUT, what)
    assert probe.first_at is not None
    span = probe.last_at - probe.first_at
    return PhaseResult(
        probe.samples_ms,
        put_ms,
        drain_per_s=count / span if span > 0 else None,
        first_after_s=probe.first_at - started,
        from_start_per_s=count / (probe.last_at - started),
        wall_s=time.time() - began,
    )


#: Takes a Lambda-style event apart into its records' payloads.
EventPayloads = Callable[[Mapping[str, Any]], list[bytes | str]]


@contextlib.asynccontextmanager
async def poller_running(
    config: Mapping[str, Any],
    probe: Probe,
    payload_of: Callable[[Record], bytes | str],
    event_payloads: EventPayloads | None = None,
) -> AsyncIterator[None]:
    """A Worker for one mapping (``config``, without a UUID) whose handler notes every record's
    payload in ``probe``; stopped when the body ends.

    The handler is typed (``async def handle(batch)``) unless ``event_payloads`` is given: then
    it is Lambda-style (``def handler(event, context)``, run in a worker thread with the event
    rendered as AWS's), and hands its notes to the event loop with their time of arrival.
    """
    mapping_id = f"latency-{uuid.uuid4().hex[:8]}"
    document = dict(config)
    document["store"] = {"url": "memory://"}
    document["worker"] = {"shutdown_grace_seconds": 2, **document.get("worker", {})}
    document["mappings"] = [{"UUID": mapping_id, **document["mappings"][0]}]

    async def handle(batch: Sequence[Record]) -> None:
        for record in batch:
            probe.note(payload_of(record))

    handler: Callable[..., Any] = handle
    if event_payloads is not None:
        loop = asyncio.get_running_loop()
        split = event_payloads

        def handle_event(event: dict[str, Any], context: Any) -> None:
            now = time.time()
            for data in split(event):
                loop.call_soon_threadsafe(probe.note, data, now)

        handler = handle_event

    worker = Worker(parse_config(document), handlers={mapping_id: handler})
    try:
        await worker.start()
        yield
    finally:
        await worker.stop_and_wait()


@contextlib.asynccontextmanager
async def task_running(loop: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run ``loop`` in the background while the body runs; cancel it afterwards."""
    async with anyio.create_task_group() as group:
        group.start_soon(loop)
        try:
            yield
        finally:
            group.cancel_scope.cancel()


def percentile(samples: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0..1) of ``samples``."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds, rounded to 0.1 ms."""
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p90_ms": round(percentile(samples, 0.90), 1),
        "p99_ms": round(percentile(samples, 0.99), 1),
        "max_ms": round(max(samples), 1),
    }


class Servers:
    """The servers of a run, started side by side in threads; a source waits for its own."""

    def __init__(self, futures: Mapping[str, Future[Any]]) -> None:
        self._futures = futures
        self._announced: set[str] = set()

    async def endpoint(self, name: str) -> str:
        """Where ``name`` listens once it is up (moto's URL, Kafka's bootstrap, a broker URL)."""
        try:
            server = await anyio.to_thread.run_sync(self._futures[name].result)
        except Exception as error:
            raise RuntimeError(f"{name} could not start: {error}") from None
        if name not in self._announced:
            self._announced.add(name)
            print(f"{name}: {server.endpoint} (pid {server.pid})", flush=True)
        if name in ("rabbitmq", "activemq"):
            scheme = "amqp" if name == "rabbitmq" else "stomp"
            return f"{scheme}://127.0.0.1:{server.port}"
        return str(server.endpoint)


@contextlib.contextmanager
def servers(wanted: set[str], *, overlap: bool) -> Iterator[Servers]:
    """Start the servers ``wanted`` names (moto, kafka, rabbitmq, activemq) side by side, in a
    temporary directory; stop every one that started, whatever happens.

    With ``overlap`` the first sources are measured while slower servers are still starting (a
    quick run); otherwise every server is up before the first measurement, so no start-up
    competes with one for the CPU.
    """
    module = _load_servers()
    state_dir = Path(tempfile.mkdtemp(prefix="poller-latency-"))
    module.STATE_DIR = state_dir
    starters = {
        "moto": module.start_moto,
        "kafka": module.start_kafka,
        "rabbitmq": module.start_rabbitmq,
        "activemq": module.start_activemq,
    }
    pool = ThreadPoolExecutor(max_workers=max(1, len(wanted)))
    futures = {name: pool.submit(starters[name]) for name in sorted(wanted)}
    try:
        if not overlap:
            wait(futures.values())
        yield Servers(futures)
    finally:
        wait(futures.values())
        started = [f.result() for f in futures.values() if f.exception() is None]
        list(pool.map(_quietly(module.stop), started))  # RabbitMQ's stop takes seconds
        pool.shutdown()
        shutil.rmtree(state_dir, ignore_errors=True)


def _quietly(stop: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(server: Any) -> None:
        with contextlib.suppress(Exception):
            stop(server)

    return run
