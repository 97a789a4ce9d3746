"""Smoke tests of the test ActiveMQ itself: the STOMP behaviour the ActiveMQ source relies on.

Each test talks to the broker with plain stompman, never through poller. If one fails, the
broker (or its configuration in scripts/servers.py) behaves differently from what
``poller.sources.activemq`` assumes.
"""

from __future__ import annotations

import anyio
import pytest
import stompman

from tests.kit import wait_for_event

pytestmark = pytest.mark.integration


def client_for(url: str) -> stompman.Client:
    host, port = url.removeprefix("stomp://").split(":")
    return stompman.Client(
        [stompman.ConnectionParameters(host, int(port), "", "")], max_concurrent_handlers=None
    )


class Taker:
    """A STOMP handler that keeps frames (without acking) and signals when it has ``count``."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.frames: list[stompman.AckableMessageFrame] = []
        self.enough = anyio.Event()

    async def __call__(self, frame: stompman.AckableMessageFrame) -> None:
        self.frames.append(frame)
        if len(self.frames) >= self.count:
            self.enough.set()

    async def wait(self) -> list[stompman.AckableMessageFrame]:
        await wait_for_event(
            self.enough,
            within=10,
            failing=lambda: f"only {len(self.frames)} of {self.count} messages",
        )
        return self.frames


async def test_unsubscribing_returns_unacked_messages_in_order_marked_redelivered(
    activemq_url: str, unique_name: str
) -> None:
    destination = f"/queue/{unique_name}"
    async with client_for(activemq_url) as client:
        for index in range(6):
            await client.send(f"m{index}".encode(), destination)
        first = Taker(4)
        subscription = await client.subscribe_with_manual_ack(
            destination, first, headers={"activemq.prefetchSize": "4"}
        )
        frames = await first.wait()
        assert [f.body for f in frames] == [b"m0", b"m1", b"m2", b"m3"]
        await subscription.unsubscribe()
        again = Taker(6)
        subscription = await client.subscribe_with_manual_ack(destination, again)
        frames = await again.wait()
        assert [f.body for f in frames] == [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"]
        assert [f.headers.get("redelivered") for f in frames] == ["true"] * 4 + [None] * 2
        # STOMP carries no delivery count: poller counts redeliveries itself.
        assert not any("count" in name.lower() for name in frames[0].headers)
        for frame in frames:
            await frame.ack()
        await subscription.unsubscribe()


async def test_a_nack_dead_letters_at_once_to_the_queue_s_own_dlq(
    activemq_url: str, unique_name: str
) -> None:
    """Also for a non-persistent message: the test broker sets processNonPersistent (ActiveMQ's
    default strategy would drop it)."""
    async with client_for(activemq_url) as client:
        await client.send(b"poison", f"/queue/{unique_name}")
        taker = Taker(1)
        subscription = await client.subscribe_with_manual_ack(f"/queue/{unique_name}", taker)
        (frame,) = await taker.wait()
        await frame.nack()
        dead = Taker(1)
        dead_subscription = await client.subscribe_with_manual_ack(
            f"/queue/DLQ.{unique_name}", dead
        )
        (dead_letter,) = await dead.wait()
        assert dead_letter.body == b"poison"
        assert dead_letter.headers["original-destination"] == f"/queue/{unique_name}"
        await dead_letter.ack()
        await dead_subscription.unsubscribe()
        await subscription.unsubscribe()


async def test_text_and_bytes_messages_differ_by_content_length(
    activemq_url: str, unique_name: str
) -> None:
    """A SEND without content-length is a JMS TextMessage; ActiveMQ sends it back without one."""
    async with client_for(activemq_url) as client:
        await client.send(b"text", f"/queue/{unique_name}", add_content_length=False)
        await client.send(b"bytes", f"/queue/{unique_name}")
        taker = Taker(2)
        subscription = await client.subscribe_with_manual_ack(f"/queue/{unique_name}", taker)
        text, data = await taker.wait()
        assert "content-length" not in text.headers
        assert data.headers["content-length"] == "5"
        assert text.headers["message-id"].startswith("ID:")
        assert text.headers["timestamp"].isdigit()
        for frame in (text, data):
            await frame.ack()
        await subscription.unsubscribe()
