"""The broker sources of ``latency.py``: Kafka (tansu), RabbitMQ (AMQP) and ActiveMQ (STOMP).

Each phase gets a fresh topic or queue. Each source offers the resource, a hand-written consumer
on the raw client (the baseline) and the mapping poller runs, with a batching window given
explicitly (0: hand over what arrived at once) or left to AWS's default (0.5 s for both).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import anyio
import stompman
from _latency_kit import Probe, poller_running
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from poller.records import Record

#: Group timings of both Kafka consumers (tansu holds a join for about half the session).
SESSION_TIMEOUT_MS = 2000
HEARTBEAT_INTERVAL_MS = 300
#: The raw Kafka loop's longest getmany wait, as poller's ``read_wait_seconds``.
KAFKA_WAIT_MS = 500
#: Broker prefetch of the raw MQ consumers.
PREFETCH = 200


def _data(record: Record) -> bytes:
    return record.data


def _window(window: float | None) -> dict[str, Any]:
    return {} if window is None else {"MaximumBatchingWindowInSeconds": window}


# --- Kafka ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class KafkaTopic:
    bootstrap: str
    producer: AIOKafkaProducer
    name: str
    from_start: bool
    chunk: int = 100

    async def put(self, payloads: Sequence[bytes]) -> None:
        if len(payloads) == 1:
            await self.producer.send_and_wait(self.name, payloads[0], partition=0)
            return
        futures = [await self.producer.send(self.name, data, partition=0) for data in payloads]
        for future in futures:
            await future


@contextlib.asynccontextmanager
async def kafka_producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A producer that sends each record at once (linger 0) and waits for the leader's ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def kafka_topic(bootstrap: str, producer: AIOKafkaProducer, from_start: bool) -> KafkaTopic:
    """A new topic with one partition."""
    name = f"latency-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return KafkaTopic(bootstrap, producer, name, from_start)


def raw_kafka(fetch_wait_ms: int = 500) -> Any:
    """An aiokafka consumer in a new group: getmany (up to 500 ms), note, commit per batch;
    ``fetch_wait_ms`` is how long the broker may hold a fetch that found nothing (aiokafka's
    default 500 ms, as poller's consumer)."""

    @contextlib.asynccontextmanager
    async def consume(topic: KafkaTopic, probe: Probe) -> AsyncIterator[None]:
        consumer = AIOKafkaConsumer(
            topic.name,
            bootstrap_servers=topic.bootstrap,
            group_id=f"raw-latency-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest" if topic.from_start else "latest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms=SESSION_TIMEOUT_MS,
            fetch_max_wait_ms=fetch_wait_ms,
        )
        await consumer.start()

        async def loop() -> None:
            while True:
                fetched = await consumer.getmany(timeout_ms=KAFKA_WAIT_MS, max_records=100)
                for tp, messages in fetched.items():
                    for message in messages:
                        probe.note(message.value)
                    if messages:
                        await consumer.commit({tp: messages[-1].offset + 1})

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(loop)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            await consumer.stop()

    return consume


def poller_kafka(window: float | None) -> Any:
    """poller on the topic, in a new group; ``window`` None leaves AWS's 0.5 s default."""

    def consume(topic: KafkaTopic, probe: Probe) -> Any:
        group = f"poller-latency-{uuid.uuid4().hex[:8]}"
        document = {
            "worker": {
                "kafka_session_timeout_seconds": SESSION_TIMEOUT_MS / 1000,
                "kafka_revoke_grace_seconds": 2,
            },
            "mappings": [
                {
                    "SelfManagedEventSource": {
                        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [topic.bootstrap]}
                    },
                    "Topics": [topic.name],
                    "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group},
                    "StartingPosition": "TRIM_HORIZON" if topic.from_start else "LATEST",
                    "BatchSize": 100,
                    **_window(window),
                }
            ],
        }
        return poller_running(document, probe, _data)

    return consume


# --- RabbitMQ -------------------------------------------------------------------------------------


@dataclass(slots=True)
class RabbitQueue:
    url: str
    channel: aio_pika.abc.AbstractChannel
    name: str
    from_start: bool
    chunk: int = 100

    async def put(self, payloads: Sequence[bytes]) -> None:
        for data in payloads:
            await self.channel.default_exchange.publish(
                aio_pika.Message(data, message_id=uuid.uuid4().hex), routing_key=self.name
            )


@contextlib.asynccontextmanager
async def rabbit_channel(url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A publishing channel with publisher confirms: a put returns once the broker has it."""
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def rabbit_queue(
    url: str, channel: aio_pika.abc.AbstractChannel, from_start: bool
) -> RabbitQueue:
    """A new durable queue."""
    name = f"latency-{uuid.uuid4().hex[:12]}"
    await channel.declare_queue(name, durable=True)
    return RabbitQueue(url, channel, name, from_start)


def raw_rabbitmq() -> Any:
    """aio-pika: prefetch 200, a consumer callback that notes and acks each message."""

    @contextlib.asynccontextmanager
    async def consume(queue: RabbitQueue, probe: Probe) -> AsyncIterator[None]:
        connection = await aio_pika.connect(queue.url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            source = await channel.declare_queue(queue.name, passive=True)

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                probe.note(message.body)
                await message.ack()

            await source.consume(on_message)
            yield
        finally:
            await connection.close()

    return consume


def poller_mq(window: float | None) -> Any:
    """poller on the queue (either broker, by URL scheme); ``window`` None: AWS's 0.5 s."""

    def consume(queue: RabbitQueue | ActiveQueue, probe: Probe) -> Any:
        document = {
            "aws": {"region": "us-east-1"},
            "mappings": [
                {
                    "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [queue.url]}},
                    "Queues": [queue.name],
                    "BatchSize": 100,
                    **_window(window),
                }
            ],
        }
        return poller_running(document, probe, _data)

    return consume


# --- ActiveMQ -------------------------------------------------------------------------------------


def stomp_client(url: str) -> stompman.Client:
    host, port = url.removeprefix("stomp://").split(":")
    return stompman.Client(
        [stompman.ConnectionParameters(host, int(port), "", "")], max_concurrent_handlers=None
    )


@dataclass(slots=True)
class ActiveQueue:
    url: str
    client: stompman.Client
    name: str
    from_start: bool
    chunk: int = 100

    async def put(self, payloads: Sequence[bytes]) -> None:
        for data in payloads:
            await self.client.send(data, f"/queue/{self.name}", headers={"persistent": "false"})


def active_queue(url: str, client: stompman.Client, from_start: bool) -> ActiveQueue:
    """A new queue name (ActiveMQ creates a queue on its first message)."""
    return ActiveQueue(url, client, f"latency-{uuid.uuid4().hex[:12]}", from_start)


def raw_activemq() -> Any:
    """stompman: client-individual subscription, prefetch 200, note and ACK each frame."""

    @contextlib.asynccontextmanager
    async def consume(queue: ActiveQueue, probe: Probe) -> AsyncIterator[None]:
        async with stomp_client(queue.url) as client:

            async def on_frame(frame: stompman.AckableMessageFrame) -> None:
                probe.note(frame.body)
                await frame.ack()

            subscription = await client.subscribe_with_manual_ack(
                f"/queue/{queue.name}", on_frame, headers={"activemq.prefetchSize": str(PREFETCH)}
            )
            try:
                yield
            finally:
                await subscription.unsubscribe()

    return consume
