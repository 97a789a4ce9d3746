"""RabbitMQ (AMQP 0-9-1, with aio-pika) as a queue source, and Lambda's ``aws:rmq`` event shape.

One :class:`RabbitMqSource` reads one queue of one virtual host through one connection, one
channel and one consumer. The consumer's prefetch holds a batch per poller plus one batch ahead,
and its deliveries wait in a buffer that ``receive`` takes from. Settling:

- ``delete`` acknowledges (one ``basic.ack`` with ``multiple`` when the batch is everything
  outstanding up to its last delivery tag, which is the common case).
- ``change_visibility(records, 0)`` gives a failed batch back in order: the consumer is cancelled
  (after ``basic.cancel-ok`` no delivery is in flight), the batch and everything buffered behind it
  are nacked with requeue (RabbitMQ puts them back at their original place), and a new consumer
  starts. The failed messages come again marked redelivered.
- ``dead_letter`` rejects without requeue: the queue's dead-letter exchange takes the message
  (with an ``x-death`` header); a queue without one drops it, as RabbitMQ always does.

A lost connection or channel is noticed at once (close callbacks wake a waiting receive); the
next receive reconnects, and the engine backs off while that fails. Deliveries of the lost channel
cannot be acknowledged any more: settling them reports them as failed and RabbitMQ hands them out
again. Redeliveries are counted by message id (see ``poller.sources.mq_common``); quorum queues'
``x-delivery-count`` header is used when present.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import aio_pika
import aiormq
import anyio
import structlog
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from poller.aws import AwsClients
from poller.config import ResolvedMapping
from poller.engine.protocols import QueueInfo
from poller.errors import SourceError, SourceNotFoundError
from poller.records import RabbitMqRecord, Record
from poller.sources.mq_common import (
    BrokerEndpoint,
    DeliveryBuffer,
    RedeliveryCounter,
    broker_endpoints,
    broker_login,
    virtual_host,
)

if TYPE_CHECKING:
    from poller.engine.protocols import BrokerQueueSource

__all__ = ["RabbitMqDelivery", "RabbitMqSource"]

_log = structlog.get_logger(__name__)

#: AMQP's largest prefetch count.
_MAX_PREFETCH: Final = 65_535
#: Bytes one message adds to an event besides its base64 body and rendered properties.
_ENVELOPE: Final = len(json.dumps({"basicProperties": {}, "redelivered": False, "data": ""})) + 2
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
            self.rendered = _render_properties(self.header, self.body_size)
        return self.rendered


class RabbitMqSource:
    """A RabbitMQ queue (implements ``BrokerQueueSource``); records are ``RabbitMqRecord``.

    ``partition`` is ``"<queue>::<vhost>"``, ``position`` the message id (a content digest when
    the publisher set none), ``ordinal`` the arrival order, ``arrival`` the AMQP timestamp (else
    the time of receipt), ``size`` the bytes the message adds to a Lambda event.
    """

    kind: str = "rabbitmq"
    max_receive: int = 10_000

    def __init__(
        self,
        mapping: ResolvedMapping,
        clients: AwsClients | None = None,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        if not mapping.queue:
            raise ValueError("Queues: a RabbitMQ mapping needs exactly one queue")
        self.mapping = mapping
        self.queue = mapping.queue
        self._clients = clients
        self._connect_timeout = connect_timeout
        pollers = mapping.maximum_concurrency or 1
        self.prefetch = min(_MAX_PREFETCH, (pollers + 1) * mapping.batch_size)
        self.vhost = "/"
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.abc.AbstractChannel | None = None
        self._consumer_tag: str | None = None
        self._generation = 0
        self._buffer: DeliveryBuffer[RabbitMqRecord] = DeliveryBuffer()
        #: Delivery tags of the current channel not yet acked, nacked or rejected.
        self._outstanding: set[int] = set()
        self._counter = RedeliveryCounter()
        self._received = 0
        self._lock = anyio.Lock()
        self._closed = False
        self._log = _log.bind(queue=mapping.source_label)

    @property
    def arn(self) -> str:
        """What events name as ``eventSourceArn``."""
        return self.mapping.event_source_arn or self.mapping.source_label

    @property
    def connected(self) -> bool:
        """The connection and channel are open."""
        channel = self._channel
        return channel is not None and not channel.is_closed and self._raw is not None

    # --- connecting ------------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        """Connect and check the queue exists (passive declare); broker queue facts."""
        await self._ensure_connected()
        return QueueInfo(fifo=False, visibility_timeout=0.0, broker=True)

    async def _ensure_connected(self) -> None:
        if self.connected:
            return
        async with self._lock:
            if self.connected:
                return
            await self._drop_connection()
            endpoints = await broker_endpoints(
                self.mapping, self._clients, engine="RABBITMQ", schemes=("amqp", "amqps")
            )
            errors: list[str] = []
            for endpoint in endpoints:
                try:
                    await self._connect(endpoint)
                    return
                except SourceNotFoundError:
                    raise
                except Exception as error:
                    errors.append(f"{endpoint}: {type(error).__name__}: {error}")
                    await self._drop_connection()
            raise SourceError(
                f"Cannot connect to RabbitMQ for {self.mapping.source_label}: " + "; ".join(errors)
            )

    async def _connect(self, endpoint: BrokerEndpoint) -> None:
        login = await broker_login(self.mapping, self._clients, endpoint)
        self.vhost = virtual_host(self.mapping, endpoint)
        # The URL is built from parts, so credentials from a secret never pass through a log.
        connection = await aio_pika.connect(
            host=endpoint.host,
            port=endpoint.port,
            login=login.username if login else "guest",
            password=login.password if login else "guest",
            virtualhost=self.vhost,
            ssl=endpoint.tls,
            timeout=self._connect_timeout,
            client_properties={"connection_name": f"poller {self.mapping.mapping_id}"},
        )
        self._connection = connection
        channel = await connection.channel()
        self._channel = channel
        await channel.set_qos(prefetch_count=self.prefetch)
        try:
            await channel.declare_queue(self.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as error:
            raise SourceNotFoundError(
                f"Queue not found: {self.queue} in virtual host {self.vhost!r} of {endpoint}"
            ) from error
        self._raw = await channel.get_underlay_channel()
        self._generation += 1
        self._outstanding.clear()
        generation = self._generation
        connection.close_callbacks.add(lambda *_: self._lost(generation))
        channel.close_callbacks.add(lambda *_: self._lost(generation))
        await self._consume()
        self._log.info(
            "connected", endpoint=str(endpoint), vhost=self.vhost, prefetch=self.prefetch
        )

    def _lost(self, generation: int) -> None:
        """The connection or channel closed: wake receivers so they reconnect."""
        if generation != self._generation or self._closed:
            return
        self._log.warning("connection to RabbitMQ lost; unacknowledged messages come back")
        self._generation += 1  # the connection's and the channel's callbacks: report once
        self._raw = None
        self._buffer.drain()
        self._outstanding.clear()
        self._buffer.wake()

    async def _consume(self) -> None:
        assert self._raw is not None
        tag = f"poller-{uuid.uuid4().hex[:12]}"
        self._consumer_tag = tag
        generation = self._generation

        async def on_message(message: DeliveredMessage) -> None:
            self._on_message(message, tag, generation)

        await self._raw.basic_consume(self.queue, on_message, no_ack=False, consumer_tag=tag)

    async def _drop_connection(self) -> None:
        self._generation += 1  # what the old channel delivered can no longer be settled
        connection, self._connection = self._connection, None
        self._channel = None
        self._raw = None
        self._buffer.drain()
        self._outstanding.clear()
        if connection is not None and not connection.is_closed:
            with anyio.move_on_after(5, shield=True):
                try:
                    await connection.close()
                except Exception as error:
                    self._log.debug("closing a broken connection failed", error=str(error))

    # --- receiving -------------------------------------------------------------------------------

    def _on_message(self, message: DeliveredMessage, tag: str, generation: int) -> None:
        delivery = message.delivery
        assert isinstance(delivery, aiormq.spec.Basic.Deliver)
        delivery_tag = int(delivery.delivery_tag or 0)
        if generation != self._generation or tag != self._consumer_tag:
            # A delivery of a cancelled consumer that crossed the cancel: it goes straight back.
            if generation == self._generation and self._raw is not None:
                self._outstanding.add(delivery_tag)
                self._nack_later(delivery_tag)
            return
        self._outstanding.add(delivery_tag)
        self._buffer.put(self._record(message, delivery_tag, generation))

    def _nack_later(self, delivery_tag: int) -> None:
        raw = self._raw
        if raw is None:
            return

        async def nack() -> None:
            try:
                await raw.basic_nack(delivery_tag, requeue=True)
                self._outstanding.discard(delivery_tag)
            except Exception as error:
                self._log.debug("late nack failed", error=str(error))

        raw.create_task(nack())

    def _record(
        self, message: DeliveredMessage, delivery_tag: int, generation: int
    ) -> RabbitMqRecord:
        """The record of one delivery, its redeliveries counted."""
        body = message.body
        header = message.header.properties
        message_id = header.message_id or _digest(_render_properties(header, len(body)), body)
        deliveries = 1 + self._counter.failures(message_id)
        counted = (header.headers or {}).get("x-delivery-count")
        if isinstance(counted, int):
            deliveries = max(deliveries, counted + 1)
        stamp = header.timestamp
        arrival = stamp.timestamp() if isinstance(stamp, datetime) else time.time()
        self._received += 1
        native = RabbitMqDelivery(
            header=header,
            body_size=len(body),
            redelivered=bool(getattr(message.delivery, "redelivered", False)),
            deliveries=deliveries,
            delivery_tag=delivery_tag,
            generation=generation,
            ordinal=self._received,
        )
        size = _ENVELOPE + (len(body) + 2) // 3 * 4 + _properties_size(header)
        partition = f"{self.queue}::{self.vhost}"
        return RabbitMqRecord(
            partition, message_id, self._received, message_id, body, arrival, size, native
        )

    async def receive(self, max_messages: int, wait_seconds: float) -> list[RabbitMqRecord]:
        """Buffered messages (up to ``max_messages``), waiting up to ``wait_seconds`` for one.

        Reconnects first when the connection was lost; raises SourceError when it cannot.
        """
        await self._ensure_connected()
        records = await self._buffer.take(max_messages, wait_seconds)
        if not records and not self.connected and not self._closed:
            await self._ensure_connected()
        return records

    def receive_count(self, record: Record) -> int:
        """Deliveries of the message, this one included (1 on the first)."""
        return int(record.native.deliveries)

    # --- settling --------------------------------------------------------------------------------

    def _current(self, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """(records of the live channel, records of a lost one that cannot be settled)."""
        live = self._generation if self._raw is not None else -1
        current = [r for r in records if r.native.generation == live]
        stale = [r for r in records if r.native.generation != live]
        return current, stale

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        """Acknowledge; return the messages that could not be (their channel is gone)."""
        current, stale = self._current(records)
        if current:
            try:
                await self._settle(current, "ack")
            except Exception as error:
                self._log.warning("ack failed", error=str(error), messages=len(current))
                return list(records)
            for record in current:
                self._counter.forget(record.position)
        return stale

    async def change_visibility(self, records: Sequence[Record], seconds: float) -> list[Record]:
        """Give a failed batch back, with everything buffered behind it, in queue order.

        Counts one failed delivery per message. ``seconds`` must be 0: a broker redelivers at once.
        """
        for record in records:
            self._counter.failed(record.position)
        current, _stale = self._current(records)  # stale ones come back on their own
        if not current:
            return []
        raw = self._raw
        assert raw is not None
        try:
            tag = self._consumer_tag
            if tag is not None:
                # Deliveries sent before cancel-ok land in the buffer before this returns.
                await raw.basic_cancel(tag)
                self._consumer_tag = None
            buffered = self._buffer.drain()
            await self._settle([*current, *buffered], "nack")
            await self._consume()
        except Exception as error:
            self._log.warning("giving back failed; the connection is reset", error=str(error))
            await self._drop_connection()
        return []

    async def release(self, records: Sequence[Record]) -> None:
        """Give back messages never handed over (no failure is counted)."""
        current, _stale = self._current(records)
        if current:
            try:
                await self._settle(current, "nack")
            except Exception as error:
                self._log.debug("release failed", error=str(error))

    async def dead_letter(self, records: Sequence[Record]) -> list[Record]:
        """Reject without requeue: the queue's dead-letter exchange gets the messages."""
        current, stale = self._current(records)
        if current:
            try:
                await self._settle(current, "reject")
            except Exception as error:
                self._log.warning("reject failed", error=str(error), messages=len(current))
                return list(records)
            for record in current:
                self._counter.forget(record.position)
        return stale

    async def _settle(self, records: Sequence[Record], how: str) -> None:
        """ack / nack (requeue) / reject these deliveries; ``multiple`` when it covers them all."""
        raw = self._raw
        if raw is None:
            raise SourceError("the channel is closed")
        tags = sorted(int(r.native.delivery_tag) for r in records)
        highest = tags[-1]
        below = sum(1 for t in self._outstanding if t <= highest)
        if how != "reject" and len(tags) > 1 and below == len(set(tags)):
            if how == "ack":
                await raw.basic_ack(highest, multiple=True)
            else:
                await raw.basic_nack(highest, multiple=True, requeue=True)
        else:
            for tag in tags:
                if how == "ack":
                    await raw.basic_ack(tag)
                elif how == "nack":
                    await raw.basic_nack(tag, requeue=True)
                else:
                    await raw.basic_reject(tag, requeue=False)
        self._outstanding.difference_update(tags)

    async def aclose(self) -> None:
        """Close the connection: RabbitMQ requeues whatever was not acknowledged."""
        self._closed = True
        await self._drop_connection()

    # --- rendering -------------------------------------------------------------------------------

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"eventSource": "aws:rmq", ..., "rmqMessagesByQueue": {...}}`` as Lambda sends it."""
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_queue.setdefault(record.partition, []).append(_render_message(record))
        return {
            "eventSource": "aws:rmq",
            "eventSourceArn": self.arn,
            "rmqMessagesByQueue": by_queue,
        }

    def item_identifier(self, record: Record) -> str:
        """MQ has no batchItemFailures; the message id names a message in logs."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``RabbitMQBatchInfo`` of an on-failure record (poller's format; AWS has none).

        AWS leaves failing MQ messages to the broker's dead-lettering. Sent to a destination,
        they are acknowledged on the broker, so the record carries them whole::

            "RabbitMQBatchInfo": {
                "eventSourceArn": "...", "queue": "orders::/", "batchSize": 2,
                "firstMessageId": "...", "lastMessageId": "...",
                "messages": [...]        # as the event renders them (basicProperties, data)
            }
        """
        if not records:
            raise ValueError("batch_info needs at least one record")
        return (
            "RabbitMQBatchInfo",
            {
                "eventSourceArn": self.arn,
                "queue": records[0].partition,
                "batchSize": len(records),
                "firstMessageId": records[0].position,
                "lastMessageId": records[-1].position,
                "messages": [_render_message(r) for r in records],
            },
        )


def _render_message(record: Record) -> dict[str, Any]:
    native: RabbitMqDelivery = record.native
    return {
        "basicProperties": native.properties,
        "redelivered": native.redelivered,
        "data": base64.b64encode(record.data).decode("ascii"),
    }


def _render_properties(header: Any, body_size: int) -> dict[str, Any]:
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


def _digest(properties: Mapping[str, Any], body: bytes) -> str:
    """Stands in for a missing message id: the same content always gets the same id."""
    hasher = hashlib.sha256(json.dumps(properties, sort_keys=True, default=str).encode())
    hasher.update(body)
    return "sha256:" + hasher.hexdigest()[:32]


def _properties_size(header: Any) -> int:
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


if TYPE_CHECKING:

    def _conforms(source: RabbitMqSource) -> None:
        """mypy checks here that the class satisfies the engine's Protocol."""
        _source: BrokerQueueSource = source
