"""Helpers for the Kinesis conformance tests: a real moto server over HTTP, one worker per test.

Streams and queues are created with plain aiobotocore clients (not poller's own), so the setup does
not depend on the code under test. A test builds a one-mapping (or two-mapping) config with
:func:`kinesis_mapping` and :func:`poller_config`, hands the worker :class:`LambdaRecorder`
handlers, and runs it with :func:`run_until_idle`; afterwards it reads the on-failure queue with
:func:`drain_queue`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import pytest
from aiobotocore.session import get_session

from poller.config import PollerConfig, parse_config
from poller.runtime.worker import Worker
from tests.faults import FaultyClient, Rewriter, arrived_at

__all__ = [
    "ACCOUNT",
    "REGION",
    "SHARD0",
    "AwsSetup",
    "LambdaRecorder",
    "Queue",
    "Seen",
    "always_fail",
    "arrived_at_for",
    "aws_setup",
    "drain_queue",
    "fail_items",
    "faulty_kinesis",
    "kinesis_mapping",
    "poller_config",
    "run_until_idle",
    "wait_until",
]

REGION = "us-east-1"
#: The account moto puts in every ARN.
ACCOUNT = "123456789012"
SHARD0 = "shardId-000000000000"
_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


# --- AWS resources -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queue:
    """An SQS queue used as on-failure destination."""

    url: str
    arn: str


@dataclass(slots=True)
class AwsSetup:
    """Kinesis and SQS clients on the moto endpoint, for creating and inspecting resources."""

    endpoint: str
    kinesis: Any
    sqs: Any

    async def create_stream(self, name: str, shards: int = 1) -> str:
        """Create a stream, wait until it is ACTIVE and return its ARN."""
        await self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        with anyio.fail_after(10):
            while True:
                summary = await self.kinesis.describe_stream_summary(StreamName=name)
                description = summary["StreamDescriptionSummary"]
                if description["StreamStatus"] == "ACTIVE":
                    return str(description["StreamARN"])
                await anyio.sleep(0.05)

    async def put_records(
        self, stream_arn: str, payloads: Sequence[bytes], *, key: str = "pk"
    ) -> list[str]:
        """Write ``payloads`` one by one, in order; return their sequence numbers."""
        numbers = []
        for payload in payloads:
            response = await self.kinesis.put_record(
                StreamARN=stream_arn, Data=payload, PartitionKey=key
            )
            numbers.append(str(response["SequenceNumber"]))
        return numbers

    async def create_queue(self, name: str) -> Queue:
        """Create a standard queue for on-failure records."""
        url = (await self.sqs.create_queue(QueueName=name[:80]))["QueueUrl"]
        attributes = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return Queue(url=str(url), arn=str(attributes["Attributes"]["QueueArn"]))


@contextlib.asynccontextmanager
async def aws_setup(endpoint: str) -> AsyncIterator[AwsSetup]:
    """Kinesis and SQS clients on ``endpoint``, closed on exit."""
    session = get_session()
    create_client: Any = session.create_client
    options: dict[str, Any] = {"region_name": REGION, "endpoint_url": endpoint, **_CREDENTIALS}
    async with (
        create_client("kinesis", **options) as kinesis,
        create_client("sqs", **options) as sqs,
    ):
        yield AwsSetup(endpoint=endpoint, kinesis=kinesis, sqs=sqs)


async def drain_queue(sqs: Any, queue: Queue) -> list[dict[str, Any]]:
    """Every message visible on ``queue`` now, JSON-decoded (each hidden for 5 minutes after)."""
    messages: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        while True:
            response = await sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=300,
                WaitTimeSeconds=0,
            )
            batch = response.get("Messages") or []
            if not batch:
                return messages
            messages.extend(json.loads(message["Body"]) for message in batch)


# --- config and running --------------------------------------------------------------------------


def kinesis_mapping(
    stream_arn: str,
    *,
    uuid: str,
    on_failure: Queue | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One Kinesis mapping under AWS field names: TRIM_HORIZON and quick retry backoff by default.

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


def poller_config(
    endpoint: str, *mappings: Mapping[str, Any], store_url: str = "memory://"
) -> PollerConfig:
    """A validated config for ``mappings`` against ``endpoint``, with fast polling."""
    return parse_config(
        {
            "aws": {
                "region": REGION,
                "endpoint_url": endpoint,
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
            "store": {"url": store_url},
            "worker": {
                "idle_poll_seconds": 0.05,
                "shard_discovery_seconds": 0.5,
                "shutdown_grace_seconds": 5,
            },
            "mappings": [dict(m) for m in mappings],
        }
    )


async def run_until_idle(worker: Worker, *, within: float = 20.0, idle_for: float = 0.3) -> None:
    """Run ``worker`` until every mapping has been idle for ``idle_for`` seconds.

    Fails the test with the worker's status when that does not happen within ``within`` seconds.
    """
    try:
        with anyio.fail_after(within):
            await worker.run(exit_when_idle=idle_for)
    except TimeoutError:
        pytest.fail(
            f"the worker did not become idle for {idle_for} s within {within} s; "
            f"status: {worker.status()}"
        )
    assert worker.stopped_by_idle, "the worker stopped, but not because it was idle"


async def wait_until(
    condition: Callable[[], bool], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``within`` seconds."""
    try:
        with anyio.fail_after(within):
            while not condition():
                await anyio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out after {within} s waiting for: {what}")


# --- fault seams ---------------------------------------------------------------------------------


def faulty_kinesis(setup: Callable[[FaultyClient], None]) -> Callable[[str, Any], Any]:
    """A ``wrap_client`` that puts the worker's Kinesis client in a scripted FaultyClient."""

    def wrap(service: str, client: Any) -> Any:
        if service != "kinesis":
            return client
        faulty = FaultyClient(client)
        setup(faulty)
        return faulty

    return wrap


def arrived_at_for(sequence_numbers: Sequence[str], moment: datetime) -> Rewriter:
    """A GetRecords rewriter that stamps only the named records as arrived at ``moment``."""
    stamp = arrived_at(moment)
    chosen = set(sequence_numbers)

    def rewrite(kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        records = [
            stamp(kwargs, {"Records": [record]})["Records"][0]
            if record["SequenceNumber"] in chosen
            else record
            for record in response.get("Records", [])
        ]
        return {**response, "Records": records}

    return rewrite


# --- Lambda-style handlers -----------------------------------------------------------------------


@dataclass(slots=True)
class Seen:
    """One invocation as the handler saw it."""

    event: dict[str, Any]
    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    remaining_ms: int
    #: ``time.monotonic()`` when the handler started and returned (or raised).
    started: float
    ended: float | None = None
    sequence_numbers: list[str] = field(default_factory=list)


#: Decides what an invocation returns (or raises), given what the handler saw.
Respond = Callable[[Seen], Any]


class LambdaRecorder:
    """A ``handler(event, context)`` that records every invocation, then answers via ``respond``.

    It is a plain (synchronous) function as far as poller is concerned, so it runs in a worker
    thread as a Python Lambda handler would; ``work_seconds`` simulates a slow function.
    """

    def __init__(self, respond: Respond | None = None, *, work_seconds: float = 0.0) -> None:
        self._respond = respond
        self._work_seconds = work_seconds
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        seen = Seen(
            event=copy.deepcopy(event),
            function_name=context.function_name,
            aws_request_id=context.aws_request_id,
            invoked_function_arn=context.invoked_function_arn,
            remaining_ms=context.get_remaining_time_in_millis(),
            started=time.monotonic(),
            sequence_numbers=[self.sequence_number(r) for r in event["Records"]],
        )
        with self._lock:
            self._seen.append(seen)
        try:
            if self._work_seconds:
                time.sleep(self._work_seconds)  # the function's own work, not a synchronisation
            return self._respond(seen) if self._respond is not None else None
        finally:
            seen.ended = time.monotonic()

    @staticmethod
    def sequence_number(record: dict[str, Any]) -> str:
        """Where a record of this source's event carries its sequence number."""
        return str(record["kinesis"]["sequenceNumber"])

    @property
    def invocations(self) -> list[Seen]:
        """Every invocation so far, in the order they started."""
        with self._lock:
            return list(self._seen)

    @property
    def batches(self) -> list[list[str]]:
        """The sequence numbers of each invocation's records."""
        return [seen.sequence_numbers for seen in self.invocations]

    def delivered(self) -> list[str]:
        """Every sequence number handed to the handler, in order, repeats included."""
        return [number for batch in self.batches for number in batch]


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
