"""What RabbitMQ and ActiveMQ messages share, as typed handlers receive them."""

from __future__ import annotations

from dataclasses import dataclass

from poller.records import Record

__all__ = ["BrokerRecord"]


@dataclass(frozen=True, slots=True)
class BrokerRecord(Record):
    """What RabbitMQ and ActiveMQ messages share: ``position`` is the message id, ``data`` the
    body, ``native`` the delivery as the source keeps it (redelivered flag, delivery count)."""

    @property
    def message_id(self) -> str:
        """The message id (RabbitMQ: the publisher's, or a digest standing in for it; ActiveMQ:
        the JMS id, ``ID:...``)."""
        return self.position

    @property
    def body(self) -> bytes:
        """The message body."""
        return self.data

    @property
    def redelivered(self) -> bool:
        """The broker's redelivered flag: this message was handed out before."""
        return bool(self.native.redelivered)

    @property
    def delivery_count(self) -> int:
        """Deliveries of this message so far, this one included (1 on the first)."""
        return int(self.native.deliveries)
