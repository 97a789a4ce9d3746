"""An in-memory queue with SQS's semantics, for tests and benchmarks of queue mappings.

It renders events with the SQS codec, exactly as an SQS mapping does (it is its own
``EventCodec``), so ``Worker(sources={uuid: queue})`` runs a mapping on it as it is.


It behaves like SQS where poller relies on it: a received message is invisible for the visibility
timeout, then comes back with a higher receive count; delete and visibility changes need the
current receipt handle; a redrive policy moves a message to the dead-letter list once its receive
count passes ``max_receive_count``; on a FIFO queue a message group is never handed out while one of
its messages is in flight, and its messages come in send order.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from poller.engine.protocols import QueueInfo
from poller.records import Record
from poller.sources.sqs.codec import SqsCodec
from poller.sources.sqs.records import SqsRecord
from poller.testing.rendering import RendersWithCodec

__all__ = ["MemoryQueue", "QueuedMessage"]

_ENVELOPE_BYTES = 600


@dataclass(slots=True)
class QueuedMessage:
    """One message in the queue."""

    message_id: str
    body: str
    group: str | None
    sequence: int
    sent: float
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None
    deleted: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


class MemoryQueue(RendersWithCodec):
    """A visibility-timeout queue (the engine's ``VisibilityQueue``) over an in-memory list."""

    kind = "memory-queue"
    max_receive = 10

    def __init__(
        self,
        *,
        fifo: bool = False,
        visibility_timeout: float = 30.0,
        max_receive_count: int | None = None,
        arn: str = "arn:aws:sqs:us-east-1:000000000000:memory",
        region: str = "us-east-1",
    ) -> None:
        self.fifo = fifo
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.arn = arn + (".fifo" if fifo and not arn.endswith(".fifo") else "")
        self.region = region
        #: Renders events as an SQS mapping of queue ``arn`` does.
        self.codec = SqsCodec(self.arn, region)
        self.messages: list[QueuedMessage] = []
        self.dead_letters: list[QueuedMessage] = []
        self.receive_calls = 0
        self._ids = itertools.count(1)
        self._receipts = itertools.count(1)
        self._changed = anyio.Event()

    # --- producing and inspecting ------------------------------------------------------------------

    def send(self, body: str, *, group: str | None = None) -> str:
        """Add a message; returns its id."""
        if self.fifo and group is None:
            raise ValueError("a FIFO queue needs a message group")
        sequence = next(self._ids)
        message = QueuedMessage(f"m-{sequence}", body, group, sequence, time.time())
        self.messages.append(message)
        self._notify()
        return message.message_id

    @property
    def remaining(self) -> list[QueuedMessage]:
        """Messages neither deleted nor dead-lettered."""
        return [m for m in self.messages if not m.deleted]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- QueueSource -------------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        return QueueInfo(
            fifo=self.fifo,
            visibility_timeout=self.visibility_timeout,
            max_receive_count=self.max_receive_count,
        )

    def _take(self, limit: int) -> list[QueuedMessage]:
        now = anyio.current_time()
        busy_groups: set[str] = set()
        taken: list[QueuedMessage] = []
        for message in self.messages:
            if message.deleted:
                continue
            in_flight = message.visible_at > now
            if self.fifo:
                group = message.group or ""
                if group in busy_groups:
                    continue
                if in_flight:
                    busy_groups.add(group)
                    continue
            elif in_flight:
                continue
            if len(taken) >= limit:
                break
            if (
                self.max_receive_count is not None
                and message.receive_count >= self.max_receive_count
            ):
                message.deleted = True  # the redrive policy moves it instead of handing it out
                self.dead_letters.append(message)
                continue
            taken.append(message)
        return taken

    async def receive(self, max_messages: int, wait_seconds: float) -> Sequence[Record]:
        self.receive_calls += 1
        deadline = anyio.current_time() + wait_seconds
        while True:
            taken = self._take(min(max_messages, self.max_receive))
            if taken or anyio.current_time() >= deadline:
                break
            now = anyio.current_time()
            next_visible = min(
                (m.visible_at for m in self.messages if not m.deleted and m.visible_at > now),
                default=deadline,
            )
            with anyio.move_on_after(max(0.0, min(deadline, next_visible) - now) + 0.001):
                await self._changed.wait()
        now = anyio.current_time()
        records = []
        for message in taken:
            message.receive_count += 1
            message.visible_at = now + self.visibility_timeout
            message.receipt = f"r-{next(self._receipts)}"
            records.append(self._record(message))
        return records

    def _record(self, message: QueuedMessage) -> SqsRecord:
        attributes = {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(int(message.sent * 1000)),
            "SenderId": "AIDAMEMORY",
            "ApproximateFirstReceiveTimestamp": str(int(message.sent * 1000)),
        }
        if message.group is not None:
            attributes["MessageGroupId"] = message.group
            attributes["MessageDeduplicationId"] = message.message_id
            attributes["SequenceNumber"] = str(message.sequence)
        native = {
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt,
            "Body": message.body,
            "Attributes": attributes,
        }
        data = message.body.encode()
        return SqsRecord(
            partition=message.group or "",
            position=message.message_id,
            ordinal=message.sequence,
            key=message.group or message.message_id,
            data=data,
            arrival=message.sent,
            size=len(data) + _ENVELOPE_BYTES,
            native=native,
        )

    def _current(self, record: Record) -> QueuedMessage | None:
        for message in self.messages:
            if message.message_id == record.position:
                if message.deleted or message.receipt != record.native["ReceiptHandle"]:
                    return None
                return message
        return None

    async def delete(self, records: Sequence[Record]) -> Sequence[Record]:
        failed = []
        for record in records:
            message = self._current(record)
            if message is None:
                failed.append(record)
            else:
                message.deleted = True
        self._notify()
        return failed

    async def change_visibility(
        self, records: Sequence[Record], seconds: float
    ) -> Sequence[Record]:
        failed = []
        now = anyio.current_time()
        for record in records:
            message = self._current(record)
            if message is None:
                failed.append(record)
            else:
                message.visible_at = now + seconds
        self._notify()
        return failed

    def receive_count(self, record: Record) -> int:
        return int(record.native["Attributes"]["ApproximateReceiveCount"])

    async def aclose(self) -> None:
        return None
