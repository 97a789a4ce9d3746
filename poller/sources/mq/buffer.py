"""Where a broker consumer's deliveries wait, and how failed deliveries are counted.

Both broker sources keep one consumer whose broker-side prefetch holds a batch per poller plus one
batch ahead. The consumer's callback drops each delivery into a :class:`DeliveryBuffer`;
``receive`` takes from it, waiting only for the first message. Nothing is acknowledged before the
handler succeeded, so a lost connection loses nothing: the broker hands every unacknowledged
message out again, marked redelivered.

Redeliveries are counted by message id in a :class:`RedeliveryCounter` where the broker gives no
delivery count (RabbitMQ classic queues; ActiveMQ over STOMP). The count lives in the worker's
memory, so it has limits: it starts again at zero when the worker restarts, it is not shared
between workers reading the same queue, it holds the most recent 100,000 failing ids, and
messages without an id are counted by a digest of their content (identical messages share one
count).
"""

from __future__ import annotations

import collections
from typing import Final, Generic, TypeVar

import anyio

__all__ = ["DeliveryBuffer", "RedeliveryCounter"]

T = TypeVar("T")

#: Failing message ids a counter remembers; the oldest are forgotten first.
_COUNTER_LIMIT: Final = 100_000


class DeliveryBuffer(Generic[T]):
    """Deliveries a consumer received and no poller took yet, in arrival order."""

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._arrived = anyio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Add a delivery (called from the client library's consumer callback)."""
        self._items.append(item)
        self._arrived.set()

    async def take(self, max_items: int, wait: float) -> list[T]:
        """Up to ``max_items`` deliveries, waiting up to ``wait`` seconds for the first one."""
        if not self._items and wait > 0:
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            with anyio.move_on_after(wait):
                await self._arrived.wait()
        count = min(max_items, len(self._items))
        return [self._items.popleft() for _ in range(count)]

    def wake(self) -> None:
        """End a waiting :meth:`take` early (the connection was lost)."""
        self._arrived.set()

    def drain(self) -> list[T]:
        """Every buffered delivery, oldest first; the buffer is empty afterwards."""
        items = list(self._items)
        self._items.clear()
        return items


class RedeliveryCounter:
    """Failed deliveries per message id, in memory and bounded (see the module docstring)."""

    def __init__(self, limit: int = _COUNTER_LIMIT) -> None:
        self._failures: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._failures)

    def failures(self, message_id: str) -> int:
        """How many deliveries of this message failed so far."""
        return self._failures.get(message_id, 0)

    def failed(self, message_id: str) -> None:
        """Count one more failed delivery."""
        self._failures[message_id] = self._failures.get(message_id, 0) + 1
        self._failures.move_to_end(message_id)
        while len(self._failures) > self._limit:
            self._failures.popitem(last=False)

    def forget(self, message_id: str) -> None:
        """The message is settled for good (acknowledged or dead-lettered)."""
        self._failures.pop(message_id, None)
