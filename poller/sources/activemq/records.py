"""The messages of an ActiveMQ queue, as typed handlers receive them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poller.sources.activemq.codec import render_fields
from poller.sources.mq.records import BrokerRecord

__all__ = ["ActiveMqDelivery", "ActiveMqRecord"]


@dataclass(slots=True)
class ActiveMqDelivery:
    """One delivery as the source keeps it (``Record.native`` of an ActiveMQ record)."""

    headers: dict[str, str]
    redelivered: bool
    #: Deliveries of this message so far, this one included.
    deliveries: int
    #: The frame's ``ack`` header: what ACK and NACK name.
    ack_id: str
    #: The subscription that delivered it; a later one cannot acknowledge it.
    subscription_id: str
    #: stompman's connection count when it arrived; a reconnect makes it unsettleable.
    epoch: int
    #: When it arrived here, epoch milliseconds.
    received_ms: int
    queue: str
    rendered: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def message(self) -> dict[str, Any]:
        """The message's fields as the event renders them (without ``data``), rendered when
        first asked for: a typed handler never pays for it."""
        if self.rendered is None:
            self.rendered = render_fields(self, self.queue)
        return self.rendered


@dataclass(frozen=True, slots=True)
class ActiveMqRecord(BrokerRecord):
    """An ActiveMQ message, as typed handlers receive it.

    ``partition`` is the queue name, ``position`` the JMS message id, ``data`` the body;
    ``native`` holds the delivery as the source keeps it (its STOMP headers included).
    """

    @property
    def text(self) -> str:
        """The body as text (a JMS text message is UTF-8)."""
        return self.data.decode("utf-8", errors="replace")

    @property
    def headers(self) -> dict[str, str]:
        """The STOMP headers the broker sent with the message."""
        return dict(self.native.headers)
