"""The test brokers seen through their plain client libraries (not poller's sources): queues,
publishing, reading, and whether a queue is drained."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika
import anyio
import pytest
import stompman

from tests.kit.waits import wait_for_event

__all__ = ["ActiveAdmin", "Admin", "RabbitAdmin", "assert_drained"]


class RabbitAdmin:
    """aio-pika on the test broker: durable queues with a dead-letter queue, publishing, reading."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> RabbitAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        """A fresh connection per operation: the tests restart the broker under it."""
        connection = await aio_pika.connect(self.url)
        try:
            yield await connection.channel()
        finally:
            await connection.close()

    def dead_letter_queue(self, name: str) -> str:
        return f"{name}.dlq"

    async def create_queue(self, name: str) -> None:
        """A durable queue whose rejected messages go to ``<name>.dlq``."""
        async with self._channel() as channel:
            await channel.declare_queue(self.dead_letter_queue(name), durable=True)
            await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.dead_letter_queue(name),
                },
            )

    async def publish(self, name: str, bodies: Sequence[str | bytes]) -> None:
        """Persistent messages, each with a message id, in order."""
        async with self._channel() as channel:
            for body in bodies:
                data = body.encode() if isinstance(body, str) else body
                message = aio_pika.Message(
                    data,
                    message_id=str(uuid.uuid4()),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="text/plain",
                )
                await channel.default_exchange.publish(message, routing_key=name)

    async def consume(self, name: str, count: int, *, within: float) -> list[str]:
        """Take (and ack) ``count`` messages of queue ``name``; fail after ``within`` seconds."""
        bodies: list[str] = []
        async with self._channel() as channel:
            queue = await channel.declare_queue(name, passive=True)
            try:
                with anyio.fail_after(within):
                    async with queue.iterator() as messages:
                        async for message in messages:
                            await message.ack()
                            bodies.append(message.body.decode(errors="replace")[:50])
                            if len(bodies) >= count:
                                break
            except TimeoutError:
                pytest.fail(f"{name}: only {bodies} of {count} messages within {within} s")
        return bodies


class ActiveAdmin:
    """stompman on the test broker: queues appear on first use; DLQ.<name> takes dead letters.

    Each operation opens its own client: stompman's client must be entered and left in one task.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        host, port = url.removeprefix("stomp://").split(":")
        self._params = [stompman.ConnectionParameters(host, int(port), "", "")]

    async def __aenter__(self) -> ActiveAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def _client(self) -> stompman.Client:
        return stompman.Client(self._params, max_concurrent_handlers=None)

    def dead_letter_queue(self, name: str) -> str:
        return f"DLQ.{name}"

    async def create_queue(self, name: str) -> None:
        """Nothing to do: ActiveMQ creates a queue when it is first used."""

    async def publish(self, name: str, bodies: Sequence[str | bytes]) -> None:
        """Persistent messages in order: text messages for str, bytes messages for bytes."""
        async with self._client() as client:
            for body in bodies:
                data = body.encode() if isinstance(body, str) else body
                await client.send(
                    data,
                    f"/queue/{name}",
                    add_content_length=isinstance(body, bytes),
                    headers={"persistent": "true"},
                )

    async def consume(self, name: str, count: int, *, within: float) -> list[str]:
        """Take (and ack) ``count`` messages of queue ``name``; fail after ``within`` seconds."""
        bodies: list[str] = []
        enough = anyio.Event()

        async def handle(frame: stompman.AckableMessageFrame) -> None:
            if len(bodies) >= count:
                return  # not acked: it goes back when the subscription ends
            bodies.append(frame.body.decode(errors="replace")[:50])
            await frame.ack()
            if len(bodies) >= count:
                enough.set()

        async with self._client() as client:
            subscription = await client.subscribe_with_manual_ack(
                f"/queue/{name}", handle, headers={"activemq.prefetchSize": "1"}
            )
            try:
                await wait_for_event(
                    enough,
                    within=within,
                    failing=lambda: f"{name}: only {bodies} of {count} messages within {within} s",
                )
            finally:
                await subscription.unsubscribe()
        return bodies


Admin = RabbitAdmin | ActiveAdmin


async def assert_drained(admin: Admin, name: str) -> None:
    """Nothing is left on ``name``: a sentinel published now is the first message consumed."""
    await admin.publish(name, ["sentinel"])
    assert await admin.consume(name, 1, within=10) == ["sentinel"], f"{name} held messages"
