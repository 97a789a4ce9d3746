"""RabbitMQ (AMQP 0-9-1, with aio-pika) as a queue source (an acknowledgement queue).

One :class:`RabbitMqSource` reads one queue of one virtual host through one connection, one
channel and one consumer. The consumer's prefetch holds a batch per poller plus one batch ahead,
and its deliveries wait in a buffer that ``receive`` takes from. Settling:

- ``ack`` acknowledges (one ``basic.ack`` with ``multiple`` when the batch is everything
  outstanding up to its last delivery tag, which is the common case).
- ``give_back`` returns a failed batch in order: the consumer is cancelled
  (after ``basic.cancel-ok`` no delivery is in flight), the batch and everything buffered behind it
  are nacked with requeue (RabbitMQ puts them back at their original place), and a new consumer
  starts. The failed messages come again marked redelivered.
- ``dead_letter`` rejects without requeue: the queue's dead-letter exchange takes the message
  (with an ``x-death`` header); a queue without one drops it, as RabbitMQ always does.

A lost connection or channel is noticed at once (close callbacks wake a waiting receive); the
next receive reconnects, and the engine backs off while that fails. Deliveries of the lost channel
cannot be acknowledged any more: settling them reports them as failed and RabbitMQ hands them out
again. Redeliveries are counted by message id (see :mod:`poller.sources.mq.buffer`); quorum queues'
``x-delivery-count`` header is used when present.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
import anyio
import structlog
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from poller.engine.protocols import QueueInfo
from poller.errors import SourceError, SourceNotFoundError
from poller.records import Record
from poller.sources.credentials import diagnose_tls, tls_context, tls_failure
from poller.sources.mq.base import BrokerSource
from poller.sources.mq.endpoints import (
    BrokerEndpoint,
    broker_endpoints,
    broker_login,
    virtual_host,
)
from poller.sources.rabbitmq.codec import (
    ENVELOPE_BYTES,
    RabbitMqCodec,
    properties_size,
    render_properties,
)
from poller.sources.rabbitmq.records import RabbitMqDelivery, RabbitMqRecord

__all__ = ["RabbitMqSource"]

_log = structlog.get_logger(__name__)


class RabbitMqSource(BrokerSource[RabbitMqRecord]):
    """A RabbitMQ queue (implements the engine's ``AckQueue``); records are ``RabbitMqRecord``.

    ``partition`` is ``"<queue>::<vhost>"``, ``position`` the message id (a content digest when
    the publisher set none), ``ordinal`` the arrival order, ``arrival`` the AMQP timestamp (else
    the time of receipt), ``size`` the bytes the message adds to a Lambda event.
    """

    kind: str = "rabbitmq"
    engine = "RabbitMQ"
    #: AMQP's largest prefetch count.
    max_prefetch = 65_535

    def _init_client(self) -> None:
        self.vhost = "/"
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.abc.AbstractChannel | None = None
        self._consumer_tag: str | None = None
        self._generation = 0
        #: Delivery tags of the current channel not yet acked, nacked or rejected.
        self._outstanding: set[int] = set()
        self._lock = anyio.Lock()
        self._closed = False
        #: Renders this queue's messages in AWS's shapes.
        self.codec = RabbitMqCodec(self.arn)

    @property
    def connected(self) -> bool:
        """The connection and channel are open."""
        channel = self._channel
        return channel is not None and not channel.is_closed and self._raw is not None

    # --- connecting ------------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        """Connect and check the queue exists (passive declare); broker queue facts."""
        await self._ensure_connected()
        return QueueInfo()

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
                except SourceError:
                    raise  # a missing queue, an unreadable secret: no other endpoint helps
                except Exception as error:
                    errors.append(f"{endpoint}: {await self._connect_failure(endpoint, error)}")
                    await self._drop_connection()
            raise SourceError(
                f"Cannot connect to RabbitMQ for mapping {self.mapping.mapping_id} "
                f"({self.mapping.source_label}): " + "; ".join(errors)
            )

    async def _connect_failure(self, endpoint: BrokerEndpoint, error: Exception) -> str:
        """Why a connection attempt failed: a TLS failure in words (found by a handshake of
        our own when the client library saw only a reset), else the error itself."""
        access = self.mapping.source_access
        client_certificate = any(a.type == "CLIENT_CERTIFICATE_TLS_AUTH" for a in access)
        cause = tls_failure(error, client_certificate=client_certificate)
        if cause is None and endpoint.tls:
            context = await tls_context(access, self._clients)
            cause = await diagnose_tls(
                endpoint.host, endpoint.port, context, client_certificate=client_certificate
            )
        return cause or f"{type(error).__name__}: {error}"

    async def _connect(self, endpoint: BrokerEndpoint) -> None:
        login = await broker_login(self.mapping, self._clients, endpoint)
        self.vhost = virtual_host(self.mapping, endpoint)
        context = (
            await tls_context(self.mapping.source_access, self._clients) if endpoint.tls else None
        )
        # The URL is built from parts, so credentials from a secret never pass through a log.
        connection = await aio_pika.connect(
            host=endpoint.host,
            port=endpoint.port,
            login=login.username if login else "guest",
            password=login.password if login else "guest",
            virtualhost=self.vhost,
            ssl=endpoint.tls,
            ssl_context=context,
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
        message_id = header.message_id or _digest(render_properties(header, len(body)), body)
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
        size = ENVELOPE_BYTES + (len(body) + 2) // 3 * 4 + properties_size(header)
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

    # --- settling --------------------------------------------------------------------------------

    def _current(self, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """(records of the live channel, records of a lost one that cannot be settled)."""
        live = self._generation if self._raw is not None else -1
        current = [r for r in records if r.native.generation == live]
        stale = [r for r in records if r.native.generation != live]
        return current, stale

    async def ack(self, records: Sequence[Record]) -> list[Record]:
        """Acknowledge; return the messages that could not be (their channel is gone)."""
        return await self._settle_for_good(records, "ack")

    async def _settle_for_good(self, records: Sequence[Record], how: str) -> list[Record]:
        """Ack or reject: the messages are done here; return those that could not be settled."""
        current, stale = self._current(records)
        if current:
            try:
                await self._settle(current, how)
            except Exception as error:
                self._log.warning(f"{how} failed", error=str(error), messages=len(current))
                return list(records)
            for record in current:
                self._counter.forget(record.position)
        return stale

    async def give_back(self, records: Sequence[Record]) -> None:
        """Give a failed batch back, with everything buffered behind it, in queue order.

        Counts one failed delivery per message; the broker redelivers them at once.
        """
        for record in records:
            self._counter.failed(record.position)
        current, _stale = self._current(records)  # stale ones come back on their own
        if not current:
            return
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
        return await self._settle_for_good(records, "reject")

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


def _digest(properties: Mapping[str, Any], body: bytes) -> str:
    """Stands in for a missing message id: the same content always gets the same id."""
    hasher = hashlib.sha256(json.dumps(properties, sort_keys=True, default=str).encode())
    hasher.update(body)
    return "sha256:" + hasher.hexdigest()[:32]
