"""ActiveMQ messages in AWS's shapes: the ``aws:mq`` event, message ids, ``ActiveMQBatchInfo``.

STOMP carries no broker times, so ``brokerInTime`` is the JMS timestamp and ``brokerOutTime`` the
time the message arrived at poller.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from poller.records import Record
from poller.sources.mq.codec import BrokerCodec

if TYPE_CHECKING:
    from poller.sources.activemq.records import ActiveMqDelivery

__all__ = ["MESSAGE_BASE_BYTES", "ActiveMqCodec", "render_fields"]

#: STOMP headers that are message fields in the event; any other header is a user property.
_STANDARD_HEADERS: Final = frozenset(
    {
        "message-id",
        "destination",
        "subscription",
        "ack",
        "content-length",
        "content-type",
        "expires",
        "priority",
        "timestamp",
        "persistent",
        "correlation-id",
        "reply-to",
        "type",
        "redelivered",
        "transformation",
        "receipt",
    }
)


class ActiveMqCodec(BrokerCodec):
    """Renders one queue's messages as Lambda hands them to a function (an ``EventCodec``)."""

    batch_info_key = "ActiveMQBatchInfo"

    def __init__(self, arn: str, queue: str) -> None:
        super().__init__(arn)
        self.queue = queue

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"eventSource": "aws:mq", "eventSourceArn": ..., "messages": [...]}`` as Lambda."""
        return {
            "eventSource": "aws:mq",
            "eventSourceArn": self.arn,
            "messages": [self.render_message(r) for r in records],
        }

    def render_message(self, record: Record) -> dict[str, Any]:
        """The message's fields with the base64 ``data`` after ``destination``, as AWS orders it."""
        fields: Mapping[str, Any] = record.native.message
        data = base64.b64encode(record.data).decode("ascii")
        ordered: dict[str, Any] = {}
        for key, value in fields.items():
            ordered[key] = value
            if key == "destination":
                ordered["data"] = data
        return ordered

    def queue_of(self, record: Record) -> str:
        """ActiveMQ's batch info names the queue as configured."""
        return self.queue


def render_fields(native: ActiveMqDelivery, queue: str) -> dict[str, Any]:
    """The message's fields in the event, in AWS's order, ``data`` left out."""
    headers = native.headers
    timestamp = _int(headers.get("timestamp"))
    expires = headers.get("expires")
    rendered: dict[str, Any] = {
        "messageID": headers.get("message-id"),
        # ActiveMQ sends content-length for a JMS BytesMessage only.
        "messageType": "jms/bytes-message" if "content-length" in headers else "jms/text-message",
        "deliveryMode": 2 if headers.get("persistent") == "true" else 1,
        "replyTo": headers.get("reply-to"),
        "type": headers.get("type"),
        "expiration": expires,
        "priority": _int(headers.get("priority")),
        "correlationId": headers.get("correlation-id"),
        "redelivered": native.redelivered,
        "destination": {"physicalName": queue},
        "timestamp": timestamp,
        "brokerInTime": timestamp,
        "brokerOutTime": native.received_ms,
    }
    properties = {k: v for k, v in headers.items() if k not in _STANDARD_HEADERS}
    if properties:
        rendered["properties"] = properties
    return rendered


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


#: A rendered message with every field at its longest and empty data, queue and properties.
MESSAGE_BASE_BYTES: Final = (
    len(
        json.dumps(
            {
                "messageID": None, "messageType": "jms/bytes-message", "deliveryMode": 2,
                "replyTo": None, "type": None, "expiration": None, "priority": 9,
                "correlationId": None, "redelivered": False, "destination": {"physicalName": ""},
                "data": "", "timestamp": 10**13, "brokerInTime": 10**13, "brokerOutTime": 10**13,
                "properties": {},
            }
        )
    )
    + 2
)  # fmt: skip
