"""ActiveMQ (STOMP 1.2, with stompman) as a queue source, and Lambda's ``aws:mq`` event shape.

One :class:`ActiveMqSource` reads one queue through one STOMP connection and one subscription in
``client-individual`` ack mode, whose ``activemq.prefetchSize`` holds a batch per poller plus one
batch ahead. Its messages wait in a buffer that ``receive`` takes from. Settling:

- ``delete`` sends ACK for each message.
- ``change_visibility(records, 0)`` gives a failed batch back in order: once no other batch is in
  flight, the subscription is replaced (UNSUBSCRIBE, then SUBSCRIBE). ActiveMQ puts every
  unacknowledged message of the old subscription back at its place and hands them out again
  marked ``redelivered``, so the failed batch comes first, then what was buffered behind it.
  (A STOMP NACK is no retry: without a broker redelivery plugin it dead-letters at once.)
- ``dead_letter`` sends NACK: the broker's dead-letter strategy moves the message to its DLQ
  (``ActiveMQ.DLQ``, or ``DLQ.<queue>`` with an individual strategy). A broker that has a
  redelivery plugin redelivers a NACKed message after its delay instead and dead-letters it after
  the plugin's own limit.
  ActiveMQ's dead-letter strategies discard a *non-persistent* message instead of moving it,
  unless the broker sets ``processNonPersistent="true"``: send messages persistent, or set it.

STOMP exposes no delivery count, so redeliveries are counted by message id (see
``poller.sources.mq_common`` for the limits). The connection runs in a task of its own; stompman
reconnects by itself and subscribes again. Messages of a lost connection cannot be acknowledged
any more: settling them reports them as failed, and ActiveMQ hands them out again.

The event's ``brokerInTime`` is the message's JMS timestamp and ``brokerOutTime`` the time it
arrived here: STOMP carries neither broker time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import anyio
import stompman
import structlog
from stompman.frames import AckFrame, NackFrame

from poller.aws import AwsClients
from poller.config import ResolvedMapping
from poller.engine.protocols import QueueInfo
from poller.errors import SourceError
from poller.records import ActiveMqRecord, Record
from poller.sources.mq_common import (
    DeliveryBuffer,
    RedeliveryCounter,
    broker_endpoints,
    broker_login,
)

if TYPE_CHECKING:
    from poller.engine.protocols import BrokerQueueSource

__all__ = ["ActiveMqDelivery", "ActiveMqSource"]

_log = structlog.get_logger(__name__)

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
            self.rendered = _render_fields(self, self.queue)
        return self.rendered


class ActiveMqSource:
    """An ActiveMQ queue over STOMP (implements ``BrokerQueueSource``).

    Records are :class:`~poller.records.ActiveMqRecord`: ``partition`` is the queue name,
    ``position`` the JMS message id, ``ordinal`` the arrival order, ``arrival`` the JMS
    timestamp, ``size`` the bytes the message adds to a Lambda event.
    """

    kind: str = "activemq"
    max_receive: int = 10_000

    def __init__(
        self,
        mapping: ResolvedMapping,
        clients: AwsClients | None = None,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        if not mapping.queue:
            raise ValueError("Queues: an ActiveMQ mapping needs exactly one queue")
        self.mapping = mapping
        self.queue = mapping.queue
        self.destination = f"/queue/{mapping.queue}"
        self._clients = clients
        self._connect_timeout = connect_timeout
        pollers = mapping.maximum_concurrency or 1
        self.prefetch = (pollers + 1) * mapping.batch_size
        self._client: stompman.Client | None = None
        self._subscription: stompman.ManualAckSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._buffer: DeliveryBuffer[ActiveMqRecord] = DeliveryBuffer()
        self._counter = RedeliveryCounter()
        #: Ack ids handed to pollers and not settled yet.
        self._handed: set[str] = set()
        self._settled = anyio.Event()
        self._resubscribing = anyio.Lock()
        #: Give-backs under way; receive hands nothing over meanwhile.
        self._giving_back = 0
        self._given_back = anyio.Event()
        self._connect_lock = anyio.Lock()
        self._received = 0
        #: Subscriptions replaced by a give-back: their late messages are dropped.
        self._retired: set[str] = set()
        self._log = _log.bind(queue=mapping.source_label)

    @property
    def arn(self) -> str:
        """What events name as ``eventSourceArn``."""
        return self.mapping.event_source_arn or self.mapping.source_label

    # --- connecting ------------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        """Connect and subscribe; broker queue facts. SourceError when the broker is unreachable.

        STOMP has no way to ask whether a queue exists: ActiveMQ creates it on first use.
        """
        await self._ensure_connected()
        return QueueInfo(fifo=False, visibility_timeout=0.0, broker=True)

    async def _ensure_connected(self) -> None:
        if self._task is not None and not self._task.done():
            return
        async with self._connect_lock:
            if self._task is not None and not self._task.done():
                return
            endpoints = await broker_endpoints(
                self.mapping, self._clients, engine="ACTIVEMQ", schemes=("stomp", "stomp+ssl")
            )
            servers = []
            for endpoint in endpoints:
                login = await broker_login(self.mapping, self._clients, endpoint)
                servers.append(
                    stompman.ConnectionParameters(
                        endpoint.host,
                        endpoint.port,
                        login.username if login else "",
                        login.password if login else "",
                    )
                )
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._closing = asyncio.Event()
            self._task = asyncio.create_task(
                self._run_client(servers, endpoints[0].tls, ready, self._closing)
            )
            try:
                with anyio.fail_after(self._connect_timeout * 2):
                    await ready
            except Exception as error:
                await self._stop_client()
                shown = ", ".join(str(e) for e in endpoints)
                raise SourceError(
                    f"Cannot connect to ActiveMQ for {self.mapping.source_label} ({shown}): "
                    f"{type(error).__name__}: {error}"
                ) from error
            self._log.info(
                "connected", endpoints=[str(e) for e in endpoints], prefetch=self.prefetch
            )

    async def _run_client(
        self,
        servers: list[stompman.ConnectionParameters],
        tls: bool,
        ready: asyncio.Future[None],
        closing: asyncio.Event,
    ) -> None:
        """Own the stompman client for its whole life, in one task (its task groups need that)."""
        try:
            async with stompman.Client(
                servers,
                ssl=True if tls else None,
                connect_timeout=int(self._connect_timeout),
                connect_retry_attempts=3,
                # Once connected, keep reconnecting for as long as the broker is away.
                keep_alive_on_connection_failure=True,
                max_concurrent_handlers=None,  # handlers only buffer; None keeps arrival order
                no_message_restart_interval=None,
                on_error_frame=self._on_error_frame,
            ) as client:
                self._client = client
                await self._subscribe()
                if not ready.done():
                    ready.set_result(None)
                await closing.wait()
                subscription, self._subscription = self._subscription, None
                if subscription is not None:
                    await subscription.unsubscribe()
        except Exception as error:
            if not ready.done():
                ready.set_exception(error)
            else:
                self._log.error("STOMP client failed", error=repr(error))
        finally:
            self._client = None
            self._buffer.drain()
            self._handed.clear()
            self._wake_settled()

    def _on_error_frame(self, frame: Any) -> None:
        self._log.warning(
            "ActiveMQ sent an ERROR frame", message=frame.headers.get("message"), body=frame.body
        )

    async def _subscribe(self) -> None:
        assert self._client is not None
        self._subscription = await self._client.subscribe_with_manual_ack(
            self.destination,
            self._on_frame,
            ack="client-individual",
            headers={"activemq.prefetchSize": str(self.prefetch)},
        )

    async def _stop_client(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if self._closing is not None:
            self._closing.set()
        with anyio.move_on_after(10, shield=True):
            await asyncio.wait([task])
        if not task.done():
            task.cancel()
            await asyncio.wait([task])

    def _epoch(self) -> int:
        """stompman's count of (re)connections: messages of an older one cannot be settled."""
        client = self._client
        if client is None:
            return -1
        # stompman exposes no public accessor; the acks it sends compare the same counter.
        manager = client._connection_manager
        return int(manager._reconnection_count)

    # --- receiving -------------------------------------------------------------------------------

    async def _on_frame(self, frame: stompman.AckableMessageFrame) -> None:
        subscription_id = frame.headers.get("subscription", "")
        if subscription_id in self._retired:
            return  # a message of a replaced subscription: ActiveMQ hands it out again
        self._buffer.put(self._record(frame, subscription_id))

    def _record(self, frame: stompman.AckableMessageFrame, subscription_id: str) -> ActiveMqRecord:
        headers = {str(k): str(v) for k, v in frame.headers.items()}
        body = frame.body
        message_id = headers.get("message-id", "")
        deliveries = 1 + self._counter.failures(message_id)
        received_ms = int(time.time() * 1000)
        native = ActiveMqDelivery(
            headers=headers,
            redelivered=headers.get("redelivered") == "true",
            deliveries=deliveries,
            ack_id=headers.get("ack") or message_id,
            subscription_id=subscription_id,
            epoch=frame._received_at_reconnection_count,
            received_ms=received_ms,
            queue=self.queue,
        )
        self._received += 1
        stamp = headers.get("timestamp")
        arrival = int(stamp) / 1000 if stamp and stamp.isdigit() else received_ms / 1000
        size = _MESSAGE_BASE + len(self.queue) + (len(body) + 2) // 3 * 4
        for name, value in headers.items():
            size += len(name) + len(value) + 8  # as a property: quotes, colon, separator
        return ActiveMqRecord(
            self.queue, message_id, self._received, message_id, body, arrival, size, native
        )

    async def receive(self, max_messages: int, wait_seconds: float) -> list[ActiveMqRecord]:
        """Buffered messages (up to ``max_messages``), waiting up to ``wait_seconds`` for one."""
        await self._ensure_connected()
        if self._giving_back:
            # A failed batch is going back: nothing later may be handed over before it.
            with anyio.move_on_after(wait_seconds):
                await self._given_back.wait()
            if self._giving_back:
                return []
        records = await self._buffer.take(max_messages, wait_seconds)
        epoch = self._epoch()
        current = self._subscription.id if self._subscription is not None else None
        fresh = [
            r for r in records if r.native.epoch == epoch and r.native.subscription_id == current
        ]
        self._handed.update(r.native.ack_id for r in fresh)
        return fresh

    def receive_count(self, record: Record) -> int:
        """Deliveries of the message, this one included (counted here: STOMP has no count)."""
        return int(record.native.deliveries)

    # --- settling --------------------------------------------------------------------------------

    def _split(self, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """(records that can still be settled, records of a lost connection or subscription)."""
        epoch = self._epoch()
        current = self._subscription.id if self._subscription is not None else None
        live = [
            r for r in records if r.native.epoch == epoch and r.native.subscription_id == current
        ]
        ids = {id(r) for r in live}
        return live, [r for r in records if id(r) not in ids]

    def _unhand(self, records: Sequence[Record]) -> None:
        for record in records:
            self._handed.discard(record.native.ack_id)
        self._wake_settled()

    def _wake_settled(self) -> None:
        self._settled.set()
        self._settled = anyio.Event()

    async def _send(
        self, records: Sequence[Record], frame_type: type[AckFrame | NackFrame]
    ) -> bool:
        client = self._client
        if client is None:
            return False
        manager = client._connection_manager
        for record in records:
            frame = frame_type(
                headers={"id": record.native.ack_id, "subscription": record.native.subscription_id}
            )
            if not await manager.maybe_write_frame(frame):
                return False
        return True

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        """ACK each message; return the ones that could not be acknowledged."""
        return await self._settle_with(records, AckFrame)

    async def _settle_with(
        self, records: Sequence[Record], frame: type[AckFrame | NackFrame]
    ) -> list[Record]:
        """Send ``frame`` (ACK or NACK) for each message of the current subscription; return
        the ones it could not reach (a lost connection's deliveries come back by themselves)."""
        live, stale = self._split(records)
        try:
            if live and not await self._send(live, frame):
                return list(records)
            for record in live:
                self._counter.forget(record.position)
            return stale
        finally:
            self._unhand(records)

    async def change_visibility(self, records: Sequence[Record], seconds: float) -> list[Record]:
        """Give a failed batch back in order: count a failure each, then resubscribe."""
        for record in records:
            self._counter.failed(record.position)
        await self._give_back(records)
        return []

    async def release(self, records: Sequence[Record]) -> None:
        """Give back messages never handed over (no failure counted)."""
        await self._give_back(records)

    async def _give_back(self, records: Sequence[Record]) -> None:
        live, _stale = self._split(records)
        self._unhand(records)
        if not live:
            return  # their subscription or connection is gone: ActiveMQ redelivers them anyway
        self._giving_back += 1
        try:
            await self._resubscribe(live)
        finally:
            self._giving_back -= 1
            if not self._giving_back:
                self._given_back.set()
                self._given_back = anyio.Event()

    async def _resubscribe(self, live: list[Record]) -> None:
        """Replace the subscription once no other batch is in flight (one give-back at a time)."""
        async with self._resubscribing:
            # Wait for the other pollers' batches: replacing the subscription returns every
            # unacknowledged message, theirs included.
            while self._handed:
                await self._settled.wait()
            live, _stale = self._split(live)
            if not live or self._client is None:
                return  # another give-back replaced the subscription meanwhile
            old = self._subscription
            self._subscription = None
            if old is not None:
                self._retired.add(old.id)
            self._buffer.drain()
            try:
                if old is not None:
                    await old.unsubscribe()
                await self._subscribe()
            except Exception as error:
                self._log.warning("resubscribing failed; the connection is reset", error=str(error))
                await self._stop_client()

    async def dead_letter(self, records: Sequence[Record]) -> list[Record]:
        """NACK: the broker's dead-letter strategy takes the messages."""
        return await self._settle_with(records, NackFrame)

    async def aclose(self) -> None:
        """Unsubscribe and disconnect: ActiveMQ hands unacknowledged messages out again."""
        await self._stop_client()

    # --- rendering -------------------------------------------------------------------------------

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"eventSource": "aws:mq", "eventSourceArn": ..., "messages": [...]}`` as Lambda."""
        return {
            "eventSource": "aws:mq",
            "eventSourceArn": self.arn,
            "messages": [_render_message(r) for r in records],
        }

    def item_identifier(self, record: Record) -> str:
        """MQ has no batchItemFailures; the message id names a message in logs."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``ActiveMQBatchInfo`` of an on-failure record (poller's format; AWS has none).

        Sent to a destination, the messages are acknowledged on the broker, so the record
        carries them whole::

            "ActiveMQBatchInfo": {
                "eventSourceArn": "...", "queue": "orders", "batchSize": 2,
                "firstMessageId": "ID:...", "lastMessageId": "ID:...",
                "messages": [...]        # as the event renders them (headers, data)
            }
        """
        if not records:
            raise ValueError("batch_info needs at least one record")
        return (
            "ActiveMQBatchInfo",
            {
                "eventSourceArn": self.arn,
                "queue": self.queue,
                "batchSize": len(records),
                "firstMessageId": records[0].position,
                "lastMessageId": records[-1].position,
                "messages": [_render_message(r) for r in records],
            },
        )


def _render_fields(native: ActiveMqDelivery, queue: str) -> dict[str, Any]:
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


def _render_message(record: Record) -> dict[str, Any]:
    fields: Mapping[str, Any] = record.native.message
    message = dict(fields)
    data = base64.b64encode(record.data).decode("ascii")
    # ``data`` sits after ``destination`` in AWS's events.
    ordered: dict[str, Any] = {}
    for key, value in message.items():
        ordered[key] = value
        if key == "destination":
            ordered["data"] = data
    return ordered


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


#: A rendered message with every field at its longest and empty data, queue and properties.
_MESSAGE_BASE: Final = (
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


if TYPE_CHECKING:

    def _conforms(source: ActiveMqSource) -> None:
        """mypy checks here that the class satisfies the engine's Protocol."""
        _source: BrokerQueueSource = source
