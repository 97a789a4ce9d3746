"""The test kit shared by every suite: names, waits, builders, clients, recorders, runners.

User-facing doubles (in-memory sources, recording handlers, waits) live in :mod:`poller.testing`;
this module adds what only poller's own tests need, once, so that no source's tests import another
source's helpers:

* **waits** that fail with a message naming what they waited for (:func:`wait_until`, re-exported
  from :mod:`poller.testing`, and the waits built on it or beside it);
* **builders** of mappings and configs under AWS field names, with test-friendly defaults;
* **clients and resources** on the moto server, set up with plain aiobotocore clients (not
  poller's own), so the setup does not depend on the code under test;
* **recorders**: Lambda-style and typed handlers that keep what they were handed, and the sinks
  and stores that log what the engine did;
* **runners** built straight on the engine, and ``poller run`` child processes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import inspect
import itertools
import json
import os
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiobotocore.session import get_session
from anyio.abc import Process

from poller.aws import AwsClients
from poller.config import AwsConfig, PollerConfig, ResolvedMapping, parse_config
from poller.engine.discard import Discard, DiscardSink, DroppingSink
from poller.engine.invocation import InvocationContext, Target
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import EventCodec, PartitionReader, PartitionSource, QueueSource
from poller.engine.queues import QueueMappingRunner
from poller.engine.state import Checkpoint, IdempotencyStore, Store
from poller.engine.streams import StreamMappingRunner
from poller.records import Record
from poller.runtime.worker import Worker
from poller.stores.memory import MemoryStore
from poller.targets import target_for
from poller.testing import RecordingHandler, wait_until
from tests.faults import FaultyClient

__all__ = [
    "ACCOUNT",
    "CREDENTIALS",
    "KINESIS_ARN",
    "REGION",
    "AsyncLambdaRecorder",
    "LambdaRecorder",
    "MotoSetup",
    "Queue",
    "RecordingSink",
    "RecordingStore",
    "Respond",
    "Seen",
    "Sqs",
    "TypedRecorder",
    "always_fail",
    "create_stream",
    "drain_queue",
    "each_success_response",
    "fail_items",
    "faulty",
    "handler_module",
    "json_lines",
    "logged",
    "mapping",
    "moto_aws",
    "moto_clients",
    "new_id",
    "poller_client",
    "poller_config",
    "queue_runner",
    "read_until",
    "records_of",
    "run_until",
    "run_until_idle",
    "sqs_config",
    "sqs_mapping",
    "start_poller",
    "stream_mapping",
    "stream_runner",
    "tick",
    "wait_for_event",
    "wait_until",
    "worker_config",
]

REGION = "us-east-1"
#: The account moto puts in every ARN.
ACCOUNT = "123456789012"
#: The stream of :func:`mapping`'s default Kinesis mapping (in-memory sources take any ARN).
KINESIS_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/harness"
#: Static dummy credentials for plain aiobotocore clients on moto (never real AWS).
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_clock = itertools.count()


def tick() -> int:
    """A strictly increasing logical time shared by every log of the kit."""
    return next(_clock)


def new_id() -> str:
    """A fresh mapping UUID, so tests sharing one server never meet."""
    return str(uuid.uuid4())


# --- waits ---------------------------------------------------------------------------------------


async def wait_for_event(event: anyio.Event, *, within: float, failing: Callable[[], str]) -> None:
    """Await ``event`` for at most ``within`` seconds; else AssertionError with ``failing()``,
    which says what had happened by then (how many messages came, ...)."""
    with anyio.move_on_after(within):
        await event.wait()
        return
    raise AssertionError(failing())


async def run_until_idle(worker: Worker, *, within: float = 20.0, idle_for: float = 0.3) -> None:
    """Run ``worker`` until every mapping has been idle for ``idle_for`` seconds.

    Fails the test with the worker's status when that does not happen within ``within`` seconds.
    """
    try:
        with anyio.fail_after(within):
            await worker.run(exit_when_idle=idle_for)
    except TimeoutError:
        raise AssertionError(
            f"the worker did not become idle for {idle_for} s within {within} s; "
            f"status: {worker.status()}"
        ) from None
    assert worker.stopped_by_idle, "the worker stopped, but not because it was idle"


async def run_until(
    runner: StreamMappingRunner | QueueMappingRunner,
    condition: Callable[[], bool],
    *,
    within: float = 15.0,
    every: float = 0.01,
    during: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Run an engine runner until ``condition()`` holds, then stop it gracefully.

    TimeoutError when the whole run, the graceful stop included, takes more than ``within``
    seconds. ``during`` (a test's own step, such as publishing late) runs before each look.
    """
    with anyio.fail_after(within):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while not condition():
                if during is not None:
                    await during()
                await anyio.sleep(every)
            runner.stop()


async def read_until(reader: PartitionReader, count: int, within: float = 10.0) -> list[Any]:
    """Read until ``count`` records arrived (fails after ``within`` seconds)."""
    records: list[Record] = []
    with anyio.fail_after(within):
        while len(records) < count:
            result = await reader.read()
            records.extend(result.records)
    return records


def logged(logs: Iterable[Mapping[str, Any]], **fields: Any) -> list[Mapping[str, Any]]:
    """The captured log entries (structlog's ``capture_logs``) that carry all of ``fields``."""
    return [entry for entry in logs if all(entry.get(k) == v for k, v in fields.items())]


# --- mappings and configs ------------------------------------------------------------------------


def mapping(**fields: Any) -> ResolvedMapping:
    """A resolved mapping from AWS field names: a Kinesis mapping with test-friendly defaults
    (no backoff) unless ``EventSourceArn`` or ``SelfManagedEventSource`` names another source."""
    base: dict[str, Any] = {}
    if "EventSourceArn" not in fields and "SelfManagedEventSource" not in fields:
        base = {
            "EventSourceArn": KINESIS_ARN,
            "StartingPosition": "TRIM_HORIZON",
            "RetryBackoffSeconds": 0,
            "RetryBackoffMaxSeconds": 0,
        }
    base.update(fields)
    return parse_config({"mappings": [base]}).mappings[0].resolved()


def stream_mapping(
    stream_arn: str, *, uuid: str, on_failure: Queue | None = None, **fields: Any
) -> dict[str, Any]:
    """One Kinesis or DynamoDB Streams mapping under AWS field names: TRIM_HORIZON and quick
    retry backoff by default.

    ``fields`` are further mapping fields (``BatchSize=3``, ``MaximumRetryAttempts=2`` ...) and
    override the defaults.
    """
    mapping: dict[str, Any] = {
        "UUID": uuid,
        "EventSourceArn": stream_arn,
        "StartingPosition": "TRIM_HORIZON",
        "RetryBackoffSeconds": 0.02,
        "RetryBackoffMaxSeconds": 0.05,
        "FunctionTimeout": 10,
    }
    if on_failure is not None:
        mapping["DestinationConfig"] = {"OnFailure": {"Destination": on_failure.arn}}
    mapping.update(fields)
    return mapping


def sqs_mapping(queue: Queue | str, *, uuid: str, **fields: Any) -> dict[str, Any]:
    """One SQS mapping under AWS field names; ``fields`` add to or override the defaults."""
    arn = queue if isinstance(queue, str) else queue.arn
    return {"UUID": uuid, "EventSourceArn": arn, "FunctionTimeout": 10, **fields}


def moto_aws(endpoint: str | None = None) -> dict[str, Any]:
    """A config's ``aws`` table: the test region and credentials, on ``endpoint`` when given."""
    aws: dict[str, Any] = {
        "region": REGION,
        "access_key_id": "testing",
        "secret_access_key": "testing",
    }
    if endpoint is not None:
        aws["endpoint_url"] = endpoint
    return aws


def worker_config(
    *mappings: Mapping[str, Any],
    aws: Mapping[str, Any] | None = None,
    store: str = "memory://",
    **worker: Any,
) -> PollerConfig:
    """A validated config for ``mappings``: ``aws`` when given, a memory store unless ``store``,
    and worker settings (``worker`` overrides a 5 s shutdown grace, so a failing test ends soon).
    """
    data: dict[str, Any] = {
        "store": {"url": store},
        "worker": {"shutdown_grace_seconds": 5, **worker},
        "mappings": [dict(m) for m in mappings],
    }
    if aws is not None:
        data["aws"] = dict(aws)
    return parse_config(data)


def poller_config(
    endpoint: str, *mappings: Mapping[str, Any], store_url: str = "memory://"
) -> PollerConfig:
    """A validated config for stream ``mappings`` against ``endpoint``, with fast polling."""
    return worker_config(
        *mappings,
        aws=moto_aws(endpoint),
        store=store_url,
        idle_poll_seconds=0.05,
        shard_discovery_seconds=0.5,
    )


def sqs_config(endpoint: str, *mappings: Mapping[str, Any], grace: float = 5) -> PollerConfig:
    """A validated config for SQS ``mappings`` against ``endpoint``."""
    return worker_config(*mappings, aws=moto_aws(endpoint), shutdown_grace_seconds=grace)


# --- clients and resources on the moto server ----------------------------------------------------


@contextlib.asynccontextmanager
async def moto_clients(endpoint: str, *services: str) -> AsyncIterator[list[Any]]:
    """Plain aiobotocore clients for ``services`` on ``endpoint``, in that order, closed on exit.

    Not poller's own clients, so setting resources up does not depend on the code under test.
    """
    session = get_session()
    options: dict[str, Any] = {"region_name": REGION, "endpoint_url": endpoint, **CREDENTIALS}
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(session.create_client(service, **options))
            for service in services
        ]


@contextlib.asynccontextmanager
async def poller_client(endpoint: str, service: str) -> AsyncIterator[Any]:
    """The client poller itself would use for ``service`` on ``endpoint`` (its session, retries
    and parsing: timestamps as epoch floats), for tests of a source on its own."""
    clients = AwsClients(AwsConfig(region=REGION, endpoint_url=endpoint))
    try:
        yield await clients.client(service)
    finally:
        await clients.aclose()


async def create_stream(kinesis: Any, name: str, shards: int = 1) -> str:
    """Create a Kinesis stream, wait until it is ACTIVE and return its ARN."""
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    with anyio.move_on_after(10):
        while True:
            summary = (await kinesis.describe_stream_summary(StreamName=name))[
                "StreamDescriptionSummary"
            ]
            if summary["StreamStatus"] == "ACTIVE":
                return str(summary["StreamARN"])
            await anyio.sleep(0.05)
    raise AssertionError(f"stream {name} not ACTIVE after 10 s")


def faulty(service: str, setup: Callable[[FaultyClient], None]) -> Callable[[str, Any], Any]:
    """A ``wrap_client`` that puts the worker's ``service`` client in a FaultyClient, scripted by
    ``setup``; other services' clients go through untouched."""

    def wrap(name: str, client: Any) -> Any:
        if name != service:
            return client
        faults = FaultyClient(client)
        setup(faults)
        return faults

    return wrap


@dataclass(frozen=True, slots=True)
class Queue:
    """An SQS queue: a mapping's source or an on-failure destination."""

    name: str
    url: str
    arn: str


@dataclass(slots=True)
class Sqs:
    """A plain aiobotocore SQS client for setting queues up and looking at them (not poller's)."""

    endpoint: str
    client: Any

    async def create_queue(
        self,
        name: str,
        *,
        fifo: bool = False,
        visibility_timeout: int | None = 1,
        dead_letter: Queue | None = None,
        max_receive_count: int = 0,
        **attributes: str,
    ) -> Queue:
        """A queue with a short visibility timeout (None: SQS's 30 s), so retries come quickly.

        ``fifo`` appends ``.fifo`` and turns on content-based deduplication; ``dead_letter``
        redrives to that queue after ``max_receive_count`` receives; ``attributes`` are further
        queue attributes.
        """
        if visibility_timeout is not None:
            attributes["VisibilityTimeout"] = str(visibility_timeout)
        if fifo:
            name += ".fifo"
            attributes |= {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        if dead_letter is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": max_receive_count}
            )
        url = (await self.client.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        return Queue(name, str(url), f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")

    async def send(self, queue: Queue, *bodies: str, **extra: Any) -> list[dict[str, Any]]:
        """Send ``bodies`` one by one (SendMessage), in order; return the responses."""
        return [
            await self.client.send_message(QueueUrl=queue.url, MessageBody=body, **extra)
            for body in bodies
        ]

    async def send_batches(
        self, queue: Queue, bodies: Iterable[str], *, group: str | None = None, **extra: Any
    ) -> list[str]:
        """Send ``bodies`` in order, ten per SendMessageBatch; return their message ids."""
        pending = list(bodies)
        ids: list[str] = []
        for first in range(0, len(pending), 10):
            entries = []
            for index, body in enumerate(pending[first : first + 10]):
                entry: dict[str, Any] = {"Id": str(index), "MessageBody": body, **extra}
                if group is not None:
                    entry["MessageGroupId"] = group
                entries.append(entry)
            response = await self.client.send_message_batch(QueueUrl=queue.url, Entries=entries)
            assert not response.get("Failed"), response.get("Failed")
            by_entry = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
            ids.extend(by_entry[str(index)] for index in range(len(entries)))
        return ids

    async def counts(self, queue: Queue) -> tuple[int, int]:
        """(visible, in flight) messages of ``queue``."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        response = await self.client.get_queue_attributes(QueueUrl=queue.url, AttributeNames=names)
        attributes = response["Attributes"]
        return int(attributes[names[0]]), int(attributes[names[1]])

    async def wait_empty(self, queue: Queue, *, within: float = 15.0, what: str = "") -> None:
        """Wait until ``queue`` holds no message, visible or in flight; AssertionError with the
        last counts (and ``what`` the test expected) after ``within`` seconds.

        moto counts visible messages a moment before in-flight ones, so a message whose visibility
        timeout ends in between is in neither count: only two empty answers in a row count.
        """
        counts = (-1, -1)
        with anyio.move_on_after(within):
            empty_answers = 0
            while empty_answers < 2:
                counts = await self.counts(queue)
                empty_answers = empty_answers + 1 if counts == (0, 0) else 0
                await anyio.sleep(0.05)
            return
        raise AssertionError(
            f"{queue.name} still holds (visible, in flight) = {counts} after {within} s"
            + (f": {what}" if what else "")
        )

    async def drain(self, queue: Queue) -> list[dict[str, Any]]:
        """Every message visible on ``queue`` now, with attributes (each hidden for 5 minutes)."""
        messages: list[dict[str, Any]] = []
        with anyio.fail_after(10):
            while True:
                response = await self.client.receive_message(
                    QueueUrl=queue.url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=300,
                    WaitTimeSeconds=0,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                batch = response.get("Messages") or []
                if not batch:
                    return messages
                messages.extend(batch)

    async def receive(self, queue: Queue, count: int, *, within: float) -> list[dict[str, Any]]:
        """At least ``count`` messages of ``queue``, long-polling for them for up to ``within``
        seconds (they arrive while the test runs); AssertionError saying how many came."""
        found: list[dict[str, Any]] = []
        with anyio.move_on_after(within):
            while len(found) < count:
                response = await self.client.receive_message(
                    QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                found.extend(response.get("Messages") or [])
        assert len(found) >= count, f"expected {count} messages on {queue.name}, got {len(found)}"
        return found


async def drain_queue(sqs: Sqs, queue: Queue) -> list[dict[str, Any]]:
    """Every message visible on ``queue`` now, JSON-decoded: the on-failure records sent there."""
    return [json.loads(message["Body"]) for message in await sqs.drain(queue)]


@dataclass(slots=True)
class MotoSetup:
    """Plain clients on the moto server for one source's tests: SQS here, for on-failure queues,
    and the source's own clients in a subclass."""

    endpoint: str
    sqs: Sqs

    async def create_queue(self, name: str) -> Queue:
        """Create a standard queue for on-failure records (SQS's own visibility timeout)."""
        return await self.sqs.create_queue(name[:80], visibility_timeout=None)


# --- Lambda-style recorders ----------------------------------------------------------------------


def records_of(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of a Lambda event, in order, whatever its source's shape."""
    if "Records" in event:  # Kinesis, DynamoDB Streams, SQS
        return list(event["Records"])
    if "records" in event:  # Kafka: lists by topic-partition
        return [record for records in event["records"].values() for record in records]
    if "rmqMessagesByQueue" in event:  # RabbitMQ: lists by queue
        return [m for messages in event["rmqMessagesByQueue"].values() for m in messages]
    return list(event["messages"])  # ActiveMQ


def _sequence_number(record: Mapping[str, Any]) -> str:
    """Where a stream record carries its sequence number (Kinesis, or else DynamoDB Streams)."""
    if "kinesis" in record:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


def _body(record: Mapping[str, Any]) -> str:
    """A queue message's body as text: an SQS ``body``, or an MQ message's base64 ``data``."""
    if "body" in record:
        return str(record["body"])
    return base64.b64decode(record["data"]).decode()


@dataclass(slots=True)
class Seen:
    """One invocation as a Lambda-style handler saw it (its event is a copy, taken on entry)."""

    event: dict[str, Any]
    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    remaining_ms: int
    #: ``time.monotonic()`` when the handler started and returned (or raised).
    started: float
    ended: float | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        """The event's records, in order."""
        return records_of(self.event)

    @property
    def sequence_numbers(self) -> list[str]:
        """The stream records' sequence numbers (the ``itemIdentifier`` of each)."""
        return [_sequence_number(record) for record in self.records]

    @property
    def message_ids(self) -> list[str]:
        """The SQS messages' ids (the ``itemIdentifier`` of each)."""
        return [record["messageId"] for record in self.records]

    @property
    def bodies(self) -> list[str]:
        """The queue messages' bodies."""
        return [_body(record) for record in self.records]

    @property
    def receive_counts(self) -> list[int]:
        """The SQS messages' ApproximateReceiveCount."""
        return [int(record["attributes"]["ApproximateReceiveCount"]) for record in self.records]


#: Decides what an invocation returns (or raises), given what the handler saw.
Respond = Callable[[Seen], Any]


class LambdaRecorder:
    """A ``handler(event, context)`` that records every invocation, then answers via ``respond``.

    It is a plain (synchronous) function as far as poller is concerned, so it runs in a worker
    thread as a Python Lambda handler would; ``work_seconds`` simulates a slow function. It reads
    every source's events; the views below are what a test of one source looks at.
    """

    def __init__(self, respond: Respond | None = None, *, work_seconds: float = 0.0) -> None:
        self._respond = respond
        self._work_seconds = work_seconds
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        seen = self._begin(event, context)
        try:
            if self._work_seconds:
                time.sleep(self._work_seconds)  # the function's own work, not a synchronisation
            return self._respond(seen) if self._respond is not None else None
        finally:
            seen.ended = time.monotonic()

    def _begin(self, event: dict[str, Any], context: Any) -> Seen:
        """Record the invocation as it starts."""
        seen = Seen(
            event=copy.deepcopy(event),
            function_name=context.function_name,
            aws_request_id=context.aws_request_id,
            invoked_function_arn=context.invoked_function_arn,
            remaining_ms=context.get_remaining_time_in_millis(),
            started=time.monotonic(),
        )
        with self._lock:
            self._seen.append(seen)
        return seen

    @property
    def invocations(self) -> list[Seen]:
        """Every invocation so far, in the order they started."""
        with self._lock:
            return list(self._seen)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event of every invocation so far, in order."""
        return [seen.event for seen in self.invocations]

    def finished(self) -> list[Seen]:
        """The invocations that returned (or raised)."""
        return [seen for seen in self.invocations if seen.ended is not None]

    def records(self) -> list[dict[str, Any]]:
        """Every record handed over, in invocation order, repeats included."""
        return [record for seen in self.invocations for record in seen.records]

    @property
    def batches(self) -> list[list[str]]:
        """The sequence numbers of each invocation's stream records."""
        return [seen.sequence_numbers for seen in self.invocations]

    def delivered(self) -> list[str]:
        """Every sequence number handed to the handler, in order, repeats included."""
        return [number for batch in self.batches for number in batch]

    def bodies(self) -> list[str]:
        """Every queue message body handed over, in invocation order, repeats included."""
        return [body for seen in self.invocations for body in seen.bodies]

    def deliveries(self, key: str, *, by_body: bool = False) -> list[tuple[Seen, int]]:
        """(invocation, ApproximateReceiveCount) of every time an SQS message was handed over:
        the one with message id ``key``, or with body ``key`` when ``by_body``."""
        return [
            (seen, count)
            for seen in self.invocations
            for handed, count in zip(
                seen.bodies if by_body else seen.message_ids, seen.receive_counts, strict=True
            )
            if handed == key
        ]

    def receive_counts(self, message_id: str) -> list[int]:
        """The ApproximateReceiveCount of each time the message was handed over."""
        return [count for _, count in self.deliveries(message_id)]

    def most_at_once(self) -> int:
        """The most invocations that ran at the same time."""
        edges: list[tuple[float, int]] = []
        for seen in self.finished():
            assert seen.ended is not None
            edges += [(seen.started, 1), (seen.ended, -1)]
        running = most = 0
        for _, step in sorted(edges):  # an end sorts before a start at the same instant
            running += step
            most = max(most, running)
        return most


class AsyncLambdaRecorder(LambdaRecorder):
    """The recorder as an ``async def handler(event, context)``: it runs on the worker's event
    loop, and ``respond`` may return an awaitable (a function that waits for the test)."""

    async def __call__(self, event: dict[str, Any], context: Any) -> Any:  # type: ignore[override]
        seen = self._begin(event, context)
        try:
            answer = self._respond(seen) if self._respond is not None else None
            if inspect.isawaitable(answer):
                answer = await answer
            return answer
        finally:
            seen.ended = time.monotonic()


#: Runs a test once for each answer that means success (SPEC 5, 18), whatever the source: a test
#: taking ``response`` has its function answer that.
each_success_response = pytest.mark.parametrize(
    "response",
    ["", [], None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}],
    ids=["empty string", "empty list", "null", "empty object", "no failures", "null failures"],
)


def always_fail(_seen: Seen) -> Any:
    """A function that raises on every invocation (an unhandled error)."""
    raise RuntimeError("the function always fails")


def fail_items(*sequence_numbers: str) -> Respond:
    """A function that reports the named records of its batch in ``batchItemFailures``."""
    failing = set(sequence_numbers)

    def respond(seen: Seen) -> Any:
        return {
            "batchItemFailures": [
                {"itemIdentifier": number} for number in seen.sequence_numbers if number in failing
            ]
        }

    return respond


class TypedRecorder(RecordingHandler):
    """poller.testing's typed recorder, failing record by record: ``fail(record, attempt)`` names
    the records of a batch that fail (the handler returns them), the others succeed."""

    def __init__(self, fail: Callable[[Record, int], bool] | None = None) -> None:
        super().__init__(
            None
            if fail is None
            else lambda batch: [r for r in batch if fail(r, batch.attempt)] or None
        )

    def seen(self, partition: str) -> list[str]:
        """The positions handed over from ``partition``, in order, repeats included."""
        return [r.position for b in self.batches if b.partition == partition for r in b]

    def count(self) -> int:
        """How many records were handed over, repeats included."""
        return len(self.records)

    def delivered(self) -> list[str]:
        """Every position handed over, in order, repeats included."""
        return [record.position for record in self.records]

    def partitions(self) -> list[str]:
        """Partitions in the order their batches came, each once."""
        return list(dict.fromkeys(batch.partition for batch in self.batches))


# --- what the engine did: sinks and stores that log ----------------------------------------------


class RecordingSink:
    """Records discards with the logical time they were delivered."""

    def __init__(self) -> None:
        self.discards: list[tuple[int, Discard]] = []

    async def deliver(self, discard: Discard) -> None:
        self.discards.append((tick(), discard))


class RecordingStore(MemoryStore):
    """A memory store that also logs every checkpoint write."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, Checkpoint]] = []

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        self.puts.append((partition, checkpoint))
        await super().put_checkpoint(mapping_id, partition, checkpoint)

    def succeeded_snapshot(self, mapping_id: str) -> set[tuple[str, str]]:
        """(partition, position) pairs remembered as succeeded and not expired."""
        now = self._clock()
        return {
            (partition, position)
            for (mid, partition), entries in self._succeeded.items()
            if mid == mapping_id
            for position, expires in entries.items()
            if expires > now
        }


# --- runners built straight on the engine --------------------------------------------------------


def _target(
    handler: Callable[..., Any] | Target, codec: EventCodec, mapping: ResolvedMapping
) -> Target:
    return target_for(handler, codec, report_batch_item_failures=mapping.report_batch_item_failures)


def stream_runner(
    mapping: ResolvedMapping,
    source: PartitionSource,
    handler: Callable[..., Any] | Target,
    *,
    store: Store | None = None,
    sink: DiscardSink | None = None,
    codec: EventCodec | None = None,
    discovery_interval: float = 30.0,
    idle_poll: float | None = 0.001,
) -> StreamMappingRunner:
    """A stream mapping runner on ``source`` (which renders its own events unless ``codec``)."""
    codec = codec or source  # type: ignore[assignment]
    assert codec is not None
    counters = MappingCounters()
    context = InvocationContext(
        mapping,
        _target(handler, codec, mapping),
        codec,
        counters,
        sink if sink is not None else DroppingSink(counters),
        store=store,
    )
    return StreamMappingRunner(
        context,
        source,
        store if store is not None else MemoryStore(),
        discovery_interval=discovery_interval,
        idle_poll=idle_poll,
    )


def queue_runner(
    mapping: ResolvedMapping,
    source: QueueSource,
    handler: Callable[..., Any] | Target,
    *,
    sink: DiscardSink | None = None,
    store: IdempotencyStore | None = None,
    codec: EventCodec | None = None,
    long_poll_seconds: int = 1,
) -> QueueMappingRunner:
    """A queue mapping runner on ``source`` (which renders its own events unless ``codec``)."""
    codec = codec or source  # type: ignore[assignment]
    assert codec is not None
    context = InvocationContext(
        mapping, _target(handler, codec, mapping), codec, sink=sink, store=store
    )
    return QueueMappingRunner(context, source, long_poll_seconds=long_poll_seconds)


# --- ``poller run`` child processes --------------------------------------------------------------

_HANDLER_PRELUDE = """
import json
import os
import time

_PATH = os.environ["SEEN_LOG"]
_DELAY = float(os.environ.get("HANDLER_DELAY", "0"))


def _log(entry):
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
"""


def handler_module(doc: str, handle: str) -> str:
    """The source of a handler module for ``poller run`` children, with docstring ``doc``.

    ``handle`` (its source) may call ``_log(entry)``, which appends ``entry`` to $SEEN_LOG as a
    JSON line and fsyncs it before the handler goes on, so a kill -9 cannot lose what the test
    reads back with :func:`json_lines`; and it may sleep ``_DELAY`` ($HANDLER_DELAY) seconds.
    """
    return f'"""{doc}"""\n{_HANDLER_PRELUDE}\n\n{textwrap.dedent(handle).lstrip()}'


async def start_poller(
    root: Path, *args: str, seen_log: Path, delay: float, output: Path
) -> Process:
    """Start ``poller run config.toml *args`` as a child process in ``root``.

    Its handler module is importable from ``root``; the handler logs to ``seen_log`` and works
    ``delay`` seconds a batch (see :func:`handler_module`); stdout and stderr go to ``output``.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "SEEN_LOG": str(seen_log),
        "HANDLER_DELAY": str(delay),
    }
    with output.open("wb") as out:
        return await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", "config.toml", *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=out,
        )


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The entries a child process appended to ``path`` as JSON lines (none before its first).

    A line cut short by a kill is not a complete entry, so it is left out.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
