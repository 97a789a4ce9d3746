"""Resources on the moto server, set up with plain aiobotocore clients (not poller's own), so
the setup does not depend on the code under test."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from aiobotocore.session import get_session

from poller.aws import AwsClients
from poller.config import AwsConfig
from tests.faults import FaultyClient
from tests.kit.names import (
    ACCOUNT,
    CREDENTIALS,
    REGION,
)

__all__ = [
    "MotoSetup",
    "Queue",
    "Sqs",
    "create_stream",
    "create_table_with_stream",
    "drain_queue",
    "faulty",
    "moto_clients",
    "poller_client",
]

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


async def create_table_with_stream(
    dynamodb: Any, name: str, view_type: str = "NEW_AND_OLD_IMAGES"
) -> str:
    """A table keyed by ``pk`` (S) and ``sk`` (N) with a stream; return the stream ARN."""
    response = await dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )
    return str(response["TableDescription"]["LatestStreamArn"])


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
