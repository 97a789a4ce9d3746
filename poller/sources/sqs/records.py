"""The messages of an SQS queue, as typed handlers receive them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poller.records import Record

__all__ = ["SqsRecord"]


@dataclass(frozen=True, slots=True)
class SqsRecord(Record):
    """An SQS message, as typed handlers receive it.

    ``partition`` is the FIFO message group id ("" on a standard queue), ``position`` the message
    id, ``data`` the body's bytes; ``native`` holds the message as ReceiveMessage returned it.
    """

    @property
    def message_id(self) -> str:
        """The message id (what ``batchItemFailures`` names)."""
        return self.position

    @property
    def body(self) -> str:
        """The message body."""
        return self.data.decode("utf-8", errors="replace")

    @property
    def receipt_handle(self) -> str:
        """The receipt handle of this delivery."""
        return str(self.native["ReceiptHandle"])

    @property
    def attributes(self) -> dict[str, str]:
        """System attributes (ApproximateReceiveCount, SentTimestamp, MessageGroupId, ...)."""
        return dict(self.native.get("Attributes") or {})

    @property
    def message_attributes(self) -> dict[str, Any]:
        """User message attributes, as ReceiveMessage returned them."""
        return dict(self.native.get("MessageAttributes") or {})

    @property
    def group_id(self) -> str | None:
        """The FIFO message group id, or None on a standard queue."""
        return self.partition or None

    @property
    def receive_count(self) -> int:
        """How many times SQS has handed this message out (1 on the first delivery)."""
        return int(self.attributes.get("ApproximateReceiveCount", "1"))
