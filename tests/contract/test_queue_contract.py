"""The queue-source contract, run against the in-memory doubles, SQS, RabbitMQ and ActiveMQ.

Each harness here is what the contract needs of one source and nothing more: make a queue, send
messages, read a message's body and delivery count back, name a mapping of it, and say whether
the queue is drained.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from poller import BrokerRecord, Record, SqsRecord
from poller.testing import MemoryBroker, MemoryQueue
from tests.contract.aws import Clients, sqs_destination
from tests.contract.queue_contract import QueueContract
from tests.contract.stream_contract import Destination
from tests.kit import ACCOUNT, REGION, ActiveAdmin, Admin, RabbitAdmin, assert_drained, moto_aws

pytestmark = pytest.mark.integration


def _body(record: Record) -> str:
    return record.data.decode()


class _Harness:
    """What every harness shares: moto for the destinations."""

    batch_info_key = "SQSBatchInfo"

    def __init__(self, endpoint: str, aws: Clients) -> None:
        self.aws = moto_aws(endpoint)
        self._clients = aws

    def retry_limit(self, retries: int) -> dict[str, Any]:
        return {"MaximumRetryAttempts": retries}

    async def destination(self, name: str) -> Destination:
        return await sqs_destination(self._clients, name)


# --- the in-memory doubles -----------------------------------------------------------------------


@dataclass
class MemoryQueueUnderTest:
    queue: MemoryQueue

    async def send(self, bodies: Iterable[str]) -> None:
        for body in bodies:
            self.queue.send(body)

    def value(self, record: Record) -> str:
        return _body(record)

    def deliveries(self, record: Record) -> int:
        assert isinstance(record, SqsRecord)
        return record.receive_count

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        return {"UUID": uuid, "EventSourceArn": self.queue.arn, **fields}

    def sources(self, uuid: str) -> Mapping[str, Any]:
        return {uuid: self.queue}

    async def assert_drained(self) -> None:
        assert not self.queue.remaining, [m.body for m in self.queue.remaining]


class MemoryQueueHarness(_Harness):
    async def create(self, name: str) -> MemoryQueueUnderTest:
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        return MemoryQueueUnderTest(MemoryQueue(visibility_timeout=1.0, arn=arn))


@dataclass
class MemoryBrokerUnderTest:
    broker: MemoryBroker

    async def send(self, bodies: Iterable[str]) -> None:
        for body in bodies:
            self.broker.publish(body)

    def value(self, record: Record) -> str:
        return _body(record)

    def deliveries(self, record: Record) -> int:
        assert isinstance(record, BrokerRecord)
        return record.delivery_count

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        endpoints = {"MQ_BROKER_URLS": ["stomp://127.0.0.1:61613"]}
        return {
            "UUID": uuid,
            "SelfManagedEventSource": {"Endpoints": endpoints},
            "Queues": [self.broker.queue],
            **fields,
        }

    def sources(self, uuid: str) -> Mapping[str, Any]:
        return {uuid: self.broker}

    async def assert_drained(self) -> None:
        assert not self.broker.ready, list(self.broker.ready)


class MemoryBrokerHarness(_Harness):
    batch_info_key = "ActiveMQBatchInfo"

    def retry_limit(self, retries: int) -> dict[str, Any]:
        return {"MaximumRedeliveries": retries}

    async def create(self, name: str) -> MemoryBrokerUnderTest:
        return MemoryBrokerUnderTest(MemoryBroker(name))


# --- SQS -----------------------------------------------------------------------------------------


@dataclass
class SqsQueue:
    arn: str
    url: str
    sqs: Any

    async def send(self, bodies: Iterable[str]) -> None:
        for body in bodies:
            await self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def value(self, record: Record) -> str:
        return _body(record)

    def deliveries(self, record: Record) -> int:
        assert isinstance(record, SqsRecord)
        return record.receive_count

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        # Two batches in flight at most: moto mishandles many concurrent receives (SERVERS.md).
        return {
            "UUID": uuid,
            "EventSourceArn": self.arn,
            "ScalingConfig": {"MaximumConcurrency": 2},
            **fields,
        }

    def sources(self, uuid: str) -> None:
        return None

    async def assert_drained(self) -> None:
        """No message visible or in flight, twice in a row (moto counts the two a moment apart)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        empty_answers = 0
        counts: tuple[int, ...] = ()
        with anyio.move_on_after(10):
            while empty_answers < 2:
                response = await self.sqs.get_queue_attributes(
                    QueueUrl=self.url, AttributeNames=names
                )
                counts = tuple(int(response["Attributes"][n]) for n in names)
                empty_answers = empty_answers + 1 if counts == (0, 0) else 0
                await anyio.sleep(0.1)
        assert empty_answers >= 2, f"{self.arn} still holds (visible, in flight) = {counts}"


class SqsHarness(_Harness):
    async def create(self, name: str) -> SqsQueue:
        sqs = self._clients["sqs"]
        # 2 s, not 1: on a busy 2-core machine moto can answer the heartbeat late enough for a
        # 1 s timeout to run out, and the message is then handed over twice (as SQS would).
        attributes = {"VisibilityTimeout": "2"}
        url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        return SqsQueue(f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", url, sqs)


# --- RabbitMQ and ActiveMQ -----------------------------------------------------------------------


@dataclass
class BrokerQueue:
    url: str
    name: str
    admin: Admin

    async def send(self, bodies: Iterable[str]) -> None:
        await self.admin.publish(self.name, list(bodies))

    def value(self, record: Record) -> str:
        return _body(record)

    def deliveries(self, record: Record) -> int:
        assert isinstance(record, BrokerRecord)
        return record.delivery_count

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        return {
            "UUID": uuid,
            "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [self.url]}},
            "Queues": [self.name],
            **fields,
        }

    def sources(self, uuid: str) -> None:
        return None

    async def assert_drained(self) -> None:
        await assert_drained(self.admin, self.name)


class BrokerHarness(_Harness):
    def __init__(self, endpoint: str, aws: Clients, url: str, admin: Admin, key: str) -> None:
        super().__init__(endpoint, aws)
        self._url = url
        self._admin = admin
        self.batch_info_key = key

    def retry_limit(self, retries: int) -> dict[str, Any]:
        return {"MaximumRedeliveries": retries}

    async def create(self, name: str) -> BrokerQueue:
        await self._admin.create_queue(name)
        return BrokerQueue(self._url, name, self._admin)


# --- the suite, once per source ------------------------------------------------------------------


class TestMemoryQueue(QueueContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients) -> MemoryQueueHarness:
        return MemoryQueueHarness(moto_endpoint, clients)


class TestMemoryBroker(QueueContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients) -> MemoryBrokerHarness:
        return MemoryBrokerHarness(moto_endpoint, clients)


class TestSqs(QueueContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients) -> SqsHarness:
        return SqsHarness(moto_endpoint, clients)


class TestRabbitMq(QueueContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients, rabbitmq_url: str) -> BrokerHarness:
        admin = RabbitAdmin(rabbitmq_url)
        return BrokerHarness(moto_endpoint, clients, rabbitmq_url, admin, "RabbitMQBatchInfo")


class TestActiveMq(QueueContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients, activemq_url: str) -> BrokerHarness:
        admin = ActiveAdmin(activemq_url)
        return BrokerHarness(moto_endpoint, clients, activemq_url, admin, "ActiveMQBatchInfo")
