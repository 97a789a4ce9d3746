"""The messages of a RabbitMQ queue, as typed handlers receive them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poller.sources.mq.records import BrokerRecord
from poller.sources.rabbitmq.codec import render_properties

__all__ = ["RabbitMqDelivery", "RabbitMqRecord"]


@dataclass(slots=True)
class RabbitMqDelivery:
    """One delivery as the source keeps it (``Record.native`` of a RabbitMQ record)."""

    #: The AMQP basic properties as the client library decoded them.
    header: Any = field(repr=False)
    body_size: int
    redelivered: bool
    #: Deliveries of this message so far, this one included.
    deliveries: int
    delivery_tag: int
    #: Which connection/channel delivered it; a later one cannot acknowledge it.
    generation: int
    #: Sequence of arrival at this source.
    ordinal: int = 0
    rendered: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def properties(self) -> dict[str, Any]:
        """``basicProperties`` as Lambda renders them (bodySize included), rendered when first
        asked for: a typed handler never pays for it."""
        if self.rendered is None:
            self.rendered = render_properties(self.header, self.body_size)
        return self.rendered


@dataclass(frozen=True, slots=True)
class RabbitMqRecord(BrokerRecord):
    """A RabbitMQ message, as typed handlers receive it.

    ``partition`` is ``"<queue>::<virtual host>"`` (the key of ``rmqMessagesByQueue``),
    ``position`` the message id (or, for a message without one, a digest of its properties and
    body), ``data`` the body; ``native`` holds the delivery as the source keeps it.
    """

    @property
    def basic_properties(self) -> dict[str, Any]:
        """The AMQP basic properties as Lambda renders them (``contentType``, ``headers``...)."""
        return dict(self.native.properties)
