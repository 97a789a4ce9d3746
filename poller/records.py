"""Records and batches: what flows from a source through the engine to a target.

A :class:`Record` carries a common header that the engine understands (partition, position,
ordinal, ordering key, arrival time, payload size) plus the source's own fields in ``native``,
which the source uses to render the AWS event shape. The engine never looks inside ``native``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "ActiveMqRecord",
    "Batch",
    "BrokerRecord",
    "DynamoDBRecord",
    "KafkaRecord",
    "KinesisRecord",
    "RabbitMqRecord",
    "Record",
    "SqsRecord",
    "from_attribute_value",
    "from_dynamodb_json",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One item read from a source, with the header the engine needs."""

    #: The unit of ordering: a Kinesis shard id, a Kafka ``topic-partition``, ...
    partition: str
    #: The record's position as the source spells it (a sequence number, an offset).
    position: str
    #: The position as an integer, for comparisons (Kinesis sequence numbers are big decimals).
    ordinal: int
    #: The ordering key inside the partition (Kinesis partition key); lanes hash on it.
    key: str
    #: The payload bytes (kept out of ``repr``, so a record never carries its payload into a log).
    data: bytes = field(repr=False)
    #: Approximate arrival time at the source, epoch seconds; drives MaximumRecordAgeInSeconds.
    arrival: float
    #: Bytes this record adds to an invocation payload; drives the 6 MB batch cap.
    size: int
    #: The source's raw record, kept so the source can render the AWS event exactly.
    native: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class KinesisRecord(Record):
    """A Kinesis Data Streams record, as typed handlers receive it."""

    @property
    def sequence_number(self) -> str:
        """The record's sequence number (a big decimal string)."""
        return self.position

    @property
    def partition_key(self) -> str:
        """The partition key the producer gave."""
        return self.key

    @property
    def shard_id(self) -> str:
        """The shard the record was read from."""
        return self.partition


@dataclass(frozen=True, slots=True)
class KafkaRecord(Record):
    """A Kafka record, as typed handlers receive it.

    ``partition`` is ``topic-N`` (AWS's key for a topic partition), ``position`` the offset as text
    and ``ordinal`` the offset; ``data`` is the value (``b""`` for a null value, see ``value``);
    ``arrival`` is the record's timestamp in epoch seconds. The Kafka fields come from ``native``,
    the client's record (anything with ``topic``, ``partition``, ``key``, ``value``, ``headers``,
    ``timestamp`` and ``timestamp_type``): reading a topic is millions of records a minute, and
    copying each field into the record cost more than everything else poller does with it.
    """

    @property
    def topic(self) -> str:
        """The topic the record was read from."""
        return str(self.native.topic)

    @property
    def partition_number(self) -> int:
        """The partition number within the topic."""
        return int(self.native.partition)

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        return self.ordinal

    @property
    def record_key(self) -> bytes | None:
        """The record key, or None when the producer gave none."""
        key: bytes | None = self.native.key
        return key

    @property
    def value(self) -> bytes | None:
        """The value, or None for a tombstone."""
        value: bytes | None = self.native.value
        return value

    @property
    def headers(self) -> tuple[tuple[str, bytes | None], ...]:
        """The headers in order, as (name, value) pairs; a value may be None."""
        return tuple((str(name), raw) for name, raw in (self.native.headers or ()))

    @property
    def timestamp_ms(self) -> int:
        """The record's timestamp in epoch milliseconds, as the broker returned it."""
        return int(self.native.timestamp)

    @property
    def timestamp_type(self) -> str:
        """``CREATE_TIME`` (the producer's clock) or ``LOG_APPEND_TIME`` (the broker's)."""
        return "LOG_APPEND_TIME" if self.native.timestamp_type == 1 else "CREATE_TIME"


@dataclass(frozen=True, slots=True)
class DynamoDBRecord(Record):
    """A DynamoDB Streams record, as typed handlers receive it.

    ``data`` is the record's ``dynamodb`` block as JSON text, exactly as the stream returned it
    (DynamoDB JSON: every value tagged with its type, ``{"S": "x"}``, binary values in base64);
    ``key`` is the item's primary key as canonical JSON, so lanes keep each item's changes in
    order; ``arrival`` is ApproximateCreationDateTime; ``native`` holds the stream record as the
    client returned it.

    The images come two ways: ``keys``, ``new_image`` and ``old_image`` in DynamoDB JSON, and
    ``item_keys``, ``new_item`` and ``old_item`` as plain Python values (see
    :func:`from_dynamodb_json`). Each is decoded from ``data`` when asked for: keep the result
    rather than asking twice.
    """

    @property
    def sequence_number(self) -> str:
        """The record's sequence number (a big decimal string)."""
        return self.position

    @property
    def shard_id(self) -> str:
        """The shard the record was read from."""
        return self.partition

    @property
    def event_id(self) -> str:
        """The stream record's unique id (``eventID``)."""
        return str((self.native or {}).get("eventID") or self.position)

    @property
    def event_name(self) -> str:
        """``INSERT``, ``MODIFY`` or ``REMOVE``."""
        return str((self.native or {}).get("eventName") or "")

    @property
    def user_identity(self) -> dict[str, Any] | None:
        """Who made the change when it was not a client (TTL deletes name the service), or None."""
        identity = (self.native or {}).get("userIdentity")
        return dict(identity) if identity else None

    @property
    def approximate_creation_time(self) -> float:
        """When the change was made, epoch seconds (ApproximateCreationDateTime)."""
        return self.arrival

    @property
    def dynamodb(self) -> dict[str, Any]:
        """The ``dynamodb`` block in DynamoDB JSON, as the stream returned it (a fresh copy)."""
        block: dict[str, Any] = json.loads(self.data)
        return block

    @property
    def stream_view_type(self) -> str | None:
        """KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES."""
        view = self.dynamodb.get("StreamViewType")
        return str(view) if view is not None else None

    @property
    def size_bytes(self) -> int | None:
        """The stream record's size as DynamoDB counts it (``SizeBytes``)."""
        size = self.dynamodb.get("SizeBytes")
        return int(size) if size is not None else None

    @property
    def keys(self) -> dict[str, Any]:
        """The item's primary key attributes, in DynamoDB JSON."""
        keys: dict[str, Any] = self.dynamodb.get("Keys") or {}
        return keys

    @property
    def new_image(self) -> dict[str, Any] | None:
        """The item after the change, in DynamoDB JSON (NEW_IMAGE views; None for REMOVE)."""
        image: dict[str, Any] | None = self.dynamodb.get("NewImage")
        return image

    @property
    def old_image(self) -> dict[str, Any] | None:
        """The item before the change, in DynamoDB JSON (OLD_IMAGE views; None for INSERT)."""
        image: dict[str, Any] | None = self.dynamodb.get("OldImage")
        return image

    @property
    def item_keys(self) -> dict[str, Any]:
        """The item's primary key as Python values (``{"pk": "a", "sk": Decimal("1")}``)."""
        return from_dynamodb_json(self.keys)

    @property
    def new_item(self) -> dict[str, Any] | None:
        """The item after the change as Python values, or None."""
        image = self.new_image
        return from_dynamodb_json(image) if image is not None else None

    @property
    def old_item(self) -> dict[str, Any] | None:
        """The item before the change as Python values, or None."""
        image = self.old_image
        return from_dynamodb_json(image) if image is not None else None


@dataclass(frozen=True, slots=True)
class Batch(Sequence[Record]):
    """Records of one partition handed to a target in one invocation.

    A batch is immutable: retries and bisection make new batches, so result objects are never
    shared between attempts.
    """

    mapping: str
    partition: str
    records: tuple[Record, ...]
    #: Unique id of this invocation's batch, carried in logs.
    batch_id: str
    #: How many times these records have been handed over, this invocation included (1-based).
    attempt: int = 1

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: Any) -> Any:
        return self.records[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def payload_size(self) -> int:
        """The sum of the records' payload contributions, in bytes."""
        return sum(r.size for r in self.records)


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


# --- DynamoDB JSON -------------------------------------------------------------------------------


def from_dynamodb_json(image: Mapping[str, Any]) -> dict[str, Any]:
    """An item (or key, or image) in DynamoDB JSON as Python values.

    ``{"n": {"N": "1.5"}, "tags": {"SS": ["a"]}}`` becomes ``{"n": Decimal("1.5"), "tags": {"a"}}``;
    see :func:`from_attribute_value` for each type.
    """
    return {name: from_attribute_value(value) for name, value in image.items()}


def from_attribute_value(value: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as a Python value.

    S -> str, N -> Decimal (exact, as DynamoDB keeps numbers), B -> bytes (from base64, or bytes
    as a client may already have decoded them), BOOL -> bool, NULL -> None, M -> dict, L -> list,
    SS -> set of str, NS -> set of Decimal, BS -> set of bytes. Raises ValueError for anything
    else.
    """
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "S":
            return str(inner)
        if tag == "N":
            return Decimal(inner)
        if tag == "B":
            return _binary(inner)
        if tag == "BOOL":
            return bool(inner)
        if tag == "NULL":
            return None
        if tag == "M":
            return from_dynamodb_json(inner)
        if tag == "L":
            return [from_attribute_value(item) for item in inner]
        if tag == "SS":
            return {str(item) for item in inner}
        if tag == "NS":
            return {Decimal(item) for item in inner}
        if tag == "BS":
            return {_binary(item) for item in inner}
    raise ValueError(f"not a DynamoDB attribute value: {value!r}")


def _binary(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError) as error:
        raise ValueError(f"not a base64 binary value: {value!r}") from error


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
