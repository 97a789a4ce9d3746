"""Smoke tests of the test RabbitMQ itself: the broker behaviour the RabbitMQ source relies on.

Each test talks to the broker with plain aio-pika, never through poller. If one fails, the
broker (or its version) behaves differently from what ``poller.sources.rabbitmq`` assumes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aio_pika
import anyio
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tests.kit import wait_for_event

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def channel_on(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def take(queue: aio_pika.abc.AbstractQueue, count: int) -> list[AbstractIncomingMessage]:
    """``count`` deliveries of ``queue`` (not acked), failing after 10 s."""
    taken: list[AbstractIncomingMessage] = []
    enough = anyio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        taken.append(message)
        if len(taken) >= count:
            enough.set()

    tag = await queue.consume(on_message)
    await wait_for_event(
        enough, within=10, failing=lambda: f"only {len(taken)} of {count} deliveries"
    )
    await queue.cancel(tag)
    return taken


async def test_nacked_messages_come_back_at_their_place_marked_redelivered(
    rabbitmq_url: str, unique_name: str
) -> None:
    """Failed batch plus buffered messages, nacked after a consumer cancel, keep queue order."""
    async with channel_on(rabbitmq_url) as channel:
        await channel.set_qos(prefetch_count=4)
        queue = await channel.declare_queue(unique_name, durable=True)
        for index in range(6):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{index}".encode()), routing_key=unique_name
            )
        first = await take(queue, 4)
        assert [m.body for m in first] == [b"m0", b"m1", b"m2", b"m3"]
        # Nacked newest first: RabbitMQ still puts them back at their original places.
        for message in reversed(first):
            await message.nack(requeue=True)
        await channel.set_qos(prefetch_count=10)
        again = await take(queue, 6)
        assert [m.body for m in again] == [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"]
        assert [m.redelivered for m in again] == [True] * 4 + [False] * 2
        # Classic queues carry no delivery count: poller counts redeliveries itself.
        assert "x-delivery-count" not in (again[0].headers or {})
        for message in again:
            await message.ack()


async def test_a_rejected_message_goes_to_the_dead_letter_exchange_with_x_death(
    rabbitmq_url: str, unique_name: str
) -> None:
    async with channel_on(rabbitmq_url) as channel:
        dead = await channel.declare_queue(f"{unique_name}.dlq", durable=True)
        queue = await channel.declare_queue(
            unique_name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{unique_name}.dlq",
            },
        )
        await channel.default_exchange.publish(aio_pika.Message(b"poison"), routing_key=unique_name)
        (message,) = await take(queue, 1)
        await message.reject(requeue=False)
        (dead_letter,) = await take(dead, 1)
        assert dead_letter.body == b"poison"
        deaths = (dead_letter.headers or {})["x-death"]
        assert isinstance(deaths, list)
        assert deaths[0]["reason"] == "rejected"
        assert deaths[0]["queue"] == unique_name
        await dead_letter.ack()


async def test_unacked_messages_return_when_the_channel_closes(
    rabbitmq_url: str, unique_name: str
) -> None:
    async with channel_on(rabbitmq_url) as channel:
        queue = await channel.declare_queue(unique_name, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"kept"), routing_key=unique_name)
        await take(queue, 1)
    async with channel_on(rabbitmq_url) as channel:
        queue = await channel.declare_queue(unique_name, durable=True)
        (message,) = await take(queue, 1)
        assert (message.body, message.redelivered) == (b"kept", True)
        await message.ack()
