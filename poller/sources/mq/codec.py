"""What the RabbitMQ and ActiveMQ codecs share: the broker, message ids, the on-failure batch info.

AWS leaves failing MQ messages to the broker's dead-lettering and has no on-failure record for
them. Sent to a destination, they are acknowledged on the broker, so poller's record carries them
whole::

    "RabbitMQBatchInfo": {                       # or "ActiveMQBatchInfo"
        "eventSourceArn": "...", "queue": "orders::/", "batchSize": 2,
        "firstMessageId": "...", "lastMessageId": "...",
        "messages": [...]        # as the event renders them
    }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from poller.records import Record

__all__ = ["BrokerCodec"]


class BrokerCodec:
    """The shared half of a broker's codec; each engine renders its event and its messages."""

    #: The on-failure record's batch info key ("RabbitMQBatchInfo").
    batch_info_key: ClassVar[str] = ""

    def __init__(self, arn: str) -> None:
        #: What events name as ``eventSourceArn``: the broker ARN, or the source label.
        self.arn = arn

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """The event Lambda hands a function for these messages."""
        raise NotImplementedError

    def render_message(self, record: Record) -> dict[str, Any]:
        """One message as the event shows it."""
        raise NotImplementedError

    def queue_of(self, record: Record) -> str:
        """The queue the batch info names."""
        return record.partition

    def item_identifier(self, record: Record) -> str:
        """MQ has no batchItemFailures; the message id names a message in logs."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """The on-failure record's batch info (poller's format; see the module docstring)."""
        if not records:
            raise ValueError("batch_info needs at least one record")
        return (
            self.batch_info_key,
            {
                "eventSourceArn": self.arn,
                "queue": self.queue_of(records[0]),
                "batchSize": len(records),
                "firstMessageId": records[0].position,
                "lastMessageId": records[-1].position,
                "messages": [self.render_message(r) for r in records],
            },
        )
