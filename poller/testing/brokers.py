"""An in-memory message broker queue, for tests and benchmarks of MQ mappings.

It behaves like the real broker sources where the engine can tell: one consumer reads the queue in
order; a failed batch goes back to the head of the queue with everything behind it and comes again
before anything later; deliveries are counted per message; dead letters are kept aside. Events are
rendered in ActiveMQ's ``aws:mq`` shape by the ActiveMQ codec.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Sequence

import anyio

from poller.engine.protocols import QueueInfo
from poller.records import Record
from poller.sources.activemq.codec import ActiveMqCodec
from poller.sources.activemq.records import ActiveMqDelivery, ActiveMqRecord
from poller.testing.rendering import RendersWithCodec

__all__ = ["MemoryBroker"]

_ENVELOPE_BYTES = 400


class MemoryBroker(RendersWithCodec):
    """A broker queue in memory (the engine's ``AckQueue``), which renders its own events.

    Inspect what happened with :attr:`acked`, :attr:`dead`, :attr:`given_back` and
    :attr:`released` (message ids, in order), and :attr:`failures` (failed deliveries per id).
    """

    kind = "memory-broker"
    max_receive = 10_000

    def __init__(
        self,
        queue: str = "memory",
        *,
        arn: str = "arn:aws:mq:us-east-1:000000000000:broker:memory:b-memory",
    ) -> None:
        self.queue = queue
        #: Messages waiting to be delivered, in order: (message id, body).
        self.ready: collections.deque[tuple[str, bytes]] = collections.deque()
        #: Failed deliveries per message id (what a broker source counts).
        self.failures: collections.Counter[str] = collections.Counter()
        #: Deliveries the broker itself counted (a quorum queue's ``x-delivery-count``).
        self.broker_counts: dict[str, int] = {}
        self.acked: list[str] = []
        self.dead: list[str] = []
        self.given_back: list[list[str]] = []
        self.released: list[str] = []
        #: Renders events as an ActiveMQ mapping of broker ``arn`` does.
        self.codec = ActiveMqCodec(arn, queue)
        self._arrived = anyio.Event()
        self._ids = itertools.count(1)
        self._received = 0

    def publish(self, body: str | bytes, *, message_id: str | None = None) -> str:
        """Add a message at the tail of the queue; returns its id (the body's text by default)."""
        if message_id is None:
            message_id = body if isinstance(body, str) else f"ID:memory-{next(self._ids)}"
        self.ready.append((message_id, body.encode() if isinstance(body, str) else body))
        self._arrived.set()
        return message_id

    # --- AckQueue -----------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        return QueueInfo()

    async def receive(self, max_messages: int, wait_seconds: float) -> list[Record]:
        if not self.ready and wait_seconds > 0:
            self._arrived = anyio.Event()
            with anyio.move_on_after(wait_seconds):
                await self._arrived.wait()
        records: list[Record] = []
        while self.ready and len(records) < max_messages:
            message_id, body = self.ready.popleft()
            records.append(self._record(message_id, body))
        return records

    def _record(self, message_id: str, body: bytes) -> ActiveMqRecord:
        failed = self.failures[message_id]
        deliveries = max(1 + failed, self.broker_counts.get(message_id, 0))
        now_ms = int(time.time() * 1000)
        self._received += 1
        native = ActiveMqDelivery(
            headers={"message-id": message_id, "persistent": "true", "timestamp": str(now_ms)},
            redelivered=deliveries > 1,
            deliveries=deliveries,
            ack_id=message_id,
            subscription_id="memory",
            epoch=0,
            received_ms=now_ms,
            queue=self.queue,
        )
        size = _ENVELOPE_BYTES + (len(body) + 2) // 3 * 4
        return ActiveMqRecord(
            self.queue, message_id, self._received, message_id, body, now_ms / 1000, size, native
        )

    def receive_count(self, record: Record) -> int:
        return int(record.native.deliveries)

    async def ack(self, records: Sequence[Record]) -> list[Record]:
        self.acked.extend(r.position for r in records)
        return []

    async def give_back(self, records: Sequence[Record]) -> None:
        self.failures.update(r.position for r in records)
        self.given_back.append([r.position for r in records])
        self.ready.extendleft((r.position, r.data) for r in reversed(records))

    async def release(self, records: Sequence[Record]) -> None:
        self.released.extend(r.position for r in records)
        self.ready.extendleft((r.position, r.data) for r in reversed(records))

    async def dead_letter(self, records: Sequence[Record]) -> list[Record]:
        self.dead.extend(r.position for r in records)
        return []

    async def aclose(self) -> None:
        return None
