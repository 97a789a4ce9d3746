"""SQS messages in AWS's shapes: the Lambda event, item identifiers, ``SQSBatchInfo``."""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, Final

from poller.records import Record
from poller.sources.sqs.records import SqsRecord
from poller.timestamps import iso_millis

__all__ = ["EVENT_ATTRIBUTES", "SqsCodec", "message_attributes_size"]

#: The system attributes Lambda passes on in ``attributes``, in the order it writes them; the
#: FIFO ones and the optional ones appear only when SQS returned them.
EVENT_ATTRIBUTES: Final = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
EVENT_ATTRIBUTE_SET: Final = frozenset(EVENT_ATTRIBUTES)

_EMPTY: Final[Mapping[str, Any]] = {}


class SqsCodec:
    """Renders one queue's messages as Lambda hands them to a function (an ``EventCodec``)."""

    def __init__(self, queue_arn: str, region: str) -> None:
        self.queue_arn = queue_arn
        self.region = region
        self._envelope: int | None = None

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"Records": [...]}`` exactly as Lambda passes SQS messages to a function."""
        arn = self.queue_arn
        region = self.region
        keys = EVENT_ATTRIBUTES
        rendered: list[dict[str, Any]] = []
        append = rendered.append
        for record in records:
            message = record.native
            attributes = message.get("Attributes") or _EMPTY
            user_attributes = message.get("MessageAttributes")
            append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message.get("Body", ""),
                    "attributes": {key: attributes[key] for key in keys if key in attributes},
                    "messageAttributes": (
                        _render_message_attributes(user_attributes) if user_attributes else {}
                    ),
                    "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
                    "md5OfBody": message.get("MD5OfBody"),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": region,
                }
            )
        return {"Records": rendered}

    def item_identifier(self, record: Record) -> str:
        """Lambda names SQS messages in ``batchItemFailures`` by message id."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``SQSBatchInfo`` of an on-failure record for ``records`` (poller's format; AWS has none).

        AWS sends discarded SQS messages to the queue's own dead-letter queue and has no
        on-failure record for them. When a mapping has an on-failure destination, poller sends
        one shaped like the stream records, with this batch info::

            "SQSBatchInfo": {
                "queueArn": "arn:aws:sqs:...:orders",
                "batchSize": 2,
                "firstMessageId": "...",         # messageId of the first message
                "lastMessageId": "...",          # messageId of the last message
                "approximateFirstSent": "2024-05-01T12:00:00.123Z",   # SentTimestamp, first
                "approximateLastSent": "2024-05-01T12:00:01.456Z",    # SentTimestamp, last
                "messages": [...]                # the messages as the event renders them:
            }                                    # full body, attributes, messageAttributes

        Unlike the stream batch infos it carries the messages themselves, because a deleted
        message cannot be read again from anywhere else.
        """
        if not records:
            raise ValueError("batch_info needs at least one record")
        first, last = records[0], records[-1]
        return (
            "SQSBatchInfo",
            {
                "queueArn": self.queue_arn,
                "batchSize": len(records),
                "firstMessageId": first.position,
                "lastMessageId": last.position,
                "approximateFirstSent": iso_millis(first.arrival),
                "approximateLastSent": iso_millis(last.arrival),
                "messages": self.render_event(records)["Records"],
            },
        )

    def envelope_size(self) -> int:
        """Bytes every message adds to an event besides its ids, body, digests and attributes.

        Measured once by rendering an empty message, so the estimate follows the real shape (and
        the ``", "`` between records) instead of a hand-counted constant.
        """
        size = self._envelope
        if size is None:
            native = {"MessageId": "", "ReceiptHandle": "", "Body": "", "MD5OfBody": ""}
            probe = SqsRecord("", "", 0, "", b"", 0.0, 0, native)
            size = len(json.dumps(self.render_event([probe])["Records"][0])) + 2
            self._envelope = size
        return size


def _render_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """User message attributes as Lambda spells them (binary values in base64)."""
    b64 = binascii.b2a_base64
    rendered: dict[str, Any] = {}
    for name, value in attributes.items():
        data_type = value.get("DataType", "String")
        entry: dict[str, Any]
        if "BinaryValue" in value:
            entry = {"binaryValue": b64(value["BinaryValue"], newline=False).decode("ascii")}
        else:
            entry = {"stringValue": value.get("StringValue")}
        entry["stringListValues"] = list(value.get("StringListValues") or ())
        entry["binaryListValues"] = [
            b64(item, newline=False).decode("ascii") for item in value.get("BinaryListValues") or ()
        ]
        entry["dataType"] = data_type
        rendered[name] = entry
    return rendered


def message_attributes_size(message: Mapping[str, Any]) -> int:
    """Bytes the message attributes and their digest add over an event without any.

    Counted from the parts (names and data types need no JSON escaping: SQS allows letters,
    digits, ``-``, ``_`` and ``.`` only) rather than by serializing: this runs per message.
    """
    attributes: Mapping[str, Mapping[str, Any]] = message["MessageAttributes"]
    size = -2  # no separator after the last entry
    for name, value in attributes.items():
        size += _ATTRIBUTE_ENTRY + len(name) + len(value.get("DataType", "String"))
        binary = value.get("BinaryValue")
        if binary is not None:
            size += (len(binary) + 2) // 3 * 4
        else:
            text = value.get("StringValue")
            size += len(encode_basestring(text).encode()) - 2 if text is not None else 2
        if value.get("StringListValues") or value.get("BinaryListValues"):
            rendered = _render_message_attributes({name: value})[name]
            lists = [rendered["stringListValues"], rendered["binaryListValues"]]
            size += len(json.dumps(lists, ensure_ascii=False).encode()) - len("[[], []]")
    digest = message.get("MD5OfMessageAttributes") or ""
    return size + len(digest) + 2 - 4  # a quoted digest replaces null


#: What one rendered message attribute with empty name, value and data type takes, with the
#: ``", "`` that separates it from the next.
_ATTRIBUTE_ENTRY: Final = (
    len(json.dumps(_render_message_attributes({"": {"StringValue": "", "DataType": ""}}))) - 2 + 2
)
