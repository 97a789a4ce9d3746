"""RabbitMQ messages in AWS's shapes: the ``aws:rmq`` event, message ids, ``RabbitMQBatchInfo``.

Lambda's event shows AMQP basic properties the way its Java client does: every key present,
``bodySize`` added, string header values as ``{"bytes": [...]}``, timestamps as
``Jan 1, 1970, 12:33:41 AM``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from poller.records import Record
from poller.sources.mq.codec import BrokerCodec

if TYPE_CHECKING:
    from poller.sources.rabbitmq.records import RabbitMqDelivery

__all__ = ["ENVELOPE_BYTES", "RabbitMqCodec", "properties_size", "render_properties"]

#: Bytes one message adds to an event besides its base64 body and rendered properties.
ENVELOPE_BYTES: Final = (
    len(json.dumps({"basicProperties": {}, "redelivered": False, "data": ""})) + 2
)
_PROPERTY_NAMES: Final = (
    ("contentType", "content_type"),
    ("contentEncoding", "content_encoding"),
    ("headers", "headers"),
    ("deliveryMode", "delivery_mode"),
    ("priority", "priority"),
    ("correlationId", "correlation_id"),
    ("replyTo", "reply_to"),
    ("expiration", "expiration"),
    ("messageId", "message_id"),
    ("timestamp", "timestamp"),
    ("type", "message_type"),
    ("userId", "user_id"),
    ("appId", "app_id"),
    ("clusterId", "cluster_id"),
)


class RabbitMqCodec(BrokerCodec):
    """Renders one queue's messages as Lambda hands them to a function (an ``EventCodec``)."""

    batch_info_key = "RabbitMQBatchInfo"

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"eventSource": "aws:rmq", ..., "rmqMessagesByQueue": {...}}`` as Lambda sends it."""
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_queue.setdefault(record.partition, []).append(self.render_message(record))
        return {
            "eventSource": "aws:rmq",
            "eventSourceArn": self.arn,
            "rmqMessagesByQueue": by_queue,
        }

    def render_message(self, record: Record) -> dict[str, Any]:
        """``basicProperties``, ``redelivered`` and the base64 ``data``."""
        native: RabbitMqDelivery = record.native
        return {
            "basicProperties": native.properties,
            "redelivered": native.redelivered,
            "data": base64.b64encode(record.data).decode("ascii"),
        }


def render_properties(header: Any, body_size: int) -> dict[str, Any]:
    """AMQP basic properties as Lambda renders them: every key present, ``bodySize`` added."""
    rendered: dict[str, Any] = {}
    for name, attribute in _PROPERTY_NAMES:
        value = getattr(header, attribute, None)
        if name == "headers":
            value = _render_table(value) if value else None
        elif name == "timestamp" and isinstance(value, datetime):
            value = _java_date(value)
        elif name == "clusterId" and not value:
            value = None  # deprecated in AMQP 0-9-1; pamqp fills in "" when absent
        rendered[name] = value
    rendered["bodySize"] = body_size
    return rendered


def _render_table(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key): _render_value(value) for key, value in table.items()}


def _render_value(value: Any) -> Any:
    """A header value as Lambda's Java client shows it: strings as ``{"bytes": [...]}``."""
    if isinstance(value, str):
        return {"bytes": list(value.encode("utf-8"))}
    if isinstance(value, bytes | bytearray):
        return {"bytes": list(value)}
    if isinstance(value, Mapping):
        return _render_table(value)
    if isinstance(value, list | tuple):
        return [_render_value(item) for item in value]
    if isinstance(value, datetime):
        return _java_date(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _java_date(moment: datetime) -> str:
    """``Jan 1, 1970, 12:33:41 AM``: how Lambda's event spells AMQP timestamps (UTC)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    hour = moment.hour % 12 or 12
    return (
        f"{moment:%b} {moment.day}, {moment.year}, {hour}:{moment:%M:%S} "
        f"{'AM' if moment.hour < 12 else 'PM'}"
    )


def properties_size(header: Any) -> int:
    """An upper bound of the rendered properties' JSON size, without rendering them.

    A string header is rendered as a list of byte values (up to four characters a byte).
    """
    size = _PROPERTIES_BASE
    for _name, attribute in _PROPERTY_NAMES:
        value = getattr(header, attribute, None)
        if isinstance(value, str):
            size += 2 * len(value)  # escapes may double it
    headers = getattr(header, "headers", None)
    if headers:
        size += len(json.dumps(_render_table(headers), default=str))
    return size


#: Rendered properties with every value null, bodySize and the timestamp at their longest.
_PROPERTIES_BASE: Final = (
    len(json.dumps({name: None for name, _ in _PROPERTY_NAMES})) + len(', "bodySize": 00000000')
) + 40
