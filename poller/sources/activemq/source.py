"""ActiveMQ (STOMP 1.2, with stompman) as a queue source (an acknowledgement queue).

One :class:`ActiveMqSource` reads one queue through one STOMP connection and one subscription in
``client-individual`` ack mode, whose ``activemq.prefetchSize`` holds a batch per poller plus one
batch ahead. Its messages wait in a buffer that ``receive`` takes from. Settling:

- ``ack`` sends ACK for each message, the batch's frames in one write. The mode stays
  ``client-individual``: a cumulative ``client`` ACK would also settle messages delivered
  before it that another poller still holds, or that a failed batch is about to give back.
- ``give_back`` returns a failed batch in order: once no other batch is in
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

Frames are read by poller's own parser (:mod:`.frames`), which makes the frames stompman's would.
STOMP exposes no delivery count, so redeliveries are counted by message id (see
:mod:`poller.sources.mq.buffer` for the limits). The connection runs in a task of its own; stompman
reconnects by itself and subscribes again. Messages of a lost connection cannot be acknowledged
any more: settling them reports them as failed, and ActiveMQ hands them out again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from typing import Any

import anyio
import stompman
import structlog
from stompman.errors import ConnectionLostError

from poller.engine.protocols import QueueInfo
from poller.errors import SourceError
from poller.records import Record
from poller.sources.activemq.codec import MESSAGE_BASE_BYTES, ActiveMqCodec
from poller.sources.activemq.frames import FastConnection, settle_frames
from poller.sources.activemq.records import ActiveMqDelivery, ActiveMqRecord
from poller.sources.credentials import diagnose_tls, tls_context, tls_failure
from poller.sources.mq.base import BrokerSource
from poller.sources.mq.endpoints import broker_endpoints, broker_login

__all__ = ["ActiveMqSource"]

_log = structlog.get_logger(__name__)


class ActiveMqSource(BrokerSource[ActiveMqRecord]):
    """An ActiveMQ queue over STOMP (implements the engine's ``AckQueue``).

    Records are :class:`~poller.sources.activemq.records.ActiveMqRecord`: ``partition`` is the queue name,
    ``position`` the JMS message id, ``ordinal`` the arrival order, ``arrival`` the JMS
    timestamp, ``size`` the bytes the message adds to a Lambda event.
    """

    kind: str = "activemq"
    engine = "ActiveMQ"

    def _init_client(self) -> None:
        self.destination = f"/queue/{self.queue}"
        self._client: stompman.Client | None = None
        self._subscription: stompman.ManualAckSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        #: Ack ids handed to pollers and not settled yet.
        self._handed: set[str] = set()
        self._settled = anyio.Event()
        self._resubscribing = anyio.Lock()
        #: Give-backs under way; receive hands nothing over meanwhile.
        self._giving_back = 0
        self._given_back = anyio.Event()
        self._connect_lock = anyio.Lock()
        #: Subscriptions replaced by a give-back: their late messages are dropped.
        self._retired: set[str] = set()
        #: Renders this queue's messages in AWS's shapes.
        self.codec = ActiveMqCodec(self.arn, self.queue)

    # --- connecting ------------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        """Connect and subscribe; broker queue facts. SourceError when the broker is unreachable.

        STOMP has no way to ask whether a queue exists: ActiveMQ creates it on first use.
        """
        await self._ensure_connected()
        return QueueInfo()

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
            access = self.mapping.source_access
            tls = await tls_context(access, self._clients) if endpoints[0].tls else None
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._closing = asyncio.Event()
            self._task = asyncio.create_task(self._run_client(servers, tls, ready, self._closing))
            try:
                with anyio.fail_after(self._connect_timeout * 2):
                    await ready
            except Exception as error:
                await self._stop_client()
                shown = ", ".join(str(e) for e in endpoints)
                client_certificate = any(a.type == "CLIENT_CERTIFICATE_TLS_AUTH" for a in access)
                cause = tls_failure(error, client_certificate=client_certificate)
                if cause is None and tls is not None:
                    # The broker's alert may be lost under a reset: a handshake of our own.
                    first = endpoints[0]
                    cause = await diagnose_tls(
                        first.host, first.port, tls, client_certificate=client_certificate
                    )
                raise SourceError(
                    f"Cannot connect to ActiveMQ at {shown} for mapping {self.mapping.mapping_id} "
                    f"({self.mapping.source_label}): "
                    + (cause or f"{type(error).__name__}: {error}")
                ) from error
            self._log.info(
                "connected", endpoints=[str(e) for e in endpoints], prefetch=self.prefetch
            )

    async def _run_client(
        self,
        servers: list[stompman.ConnectionParameters],
        tls: ssl.SSLContext | None,
        ready: asyncio.Future[None],
        closing: asyncio.Event,
    ) -> None:
        """Own the stompman client for its whole life, in one task (its task groups need that)."""
        try:
            async with stompman.Client(
                servers,
                ssl=tls,
                connect_timeout=int(self._connect_timeout),
                connect_retry_attempts=3,
                # Once connected, keep reconnecting for as long as the broker is away.
                keep_alive_on_connection_failure=True,
                max_concurrent_handlers=None,  # handlers only buffer; None keeps arrival order
                no_message_restart_interval=None,
                on_error_frame=self._on_error_frame,
                # Reads frames with poller's parser (stompman's reads a byte at a time) and
                # writes a batch's ACKs in one go: see poller.sources.activemq.frames.
                connection_class=FastConnection,
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
        size = MESSAGE_BASE_BYTES + len(self.queue) + (len(body) + 2) // 3 * 4
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

    async def _send(self, records: Sequence[Record], command: str) -> bool:
        """Write an ACK or NACK frame for each record, all in one write (one system call for a
        batch, where stompman's ``ack()`` writes and drains once per message)."""
        client = self._client
        if client is None:
            return False
        manager = client._connection_manager
        state = manager._active_connection_state
        if state is None:
            return False
        natives = [record.native for record in records]
        frames = settle_frames(
            command, [n.ack_id for n in natives], [n.subscription_id for n in natives]
        )
        connection = state.connection
        assert isinstance(connection, FastConnection)
        try:
            await connection.write_bytes(frames)
        except ConnectionLostError as error:
            # As stompman does for a frame it could not write: the connection is replaced.
            await manager._discard_failed_connection_state(state, error)
            return False
        return True

    async def ack(self, records: Sequence[Record]) -> list[Record]:
        """ACK each message; return the ones that could not be acknowledged."""
        return await self._settle_with(records, "ACK")

    async def _settle_with(self, records: Sequence[Record], command: str) -> list[Record]:
        """Send ``command`` (ACK or NACK) for each message of the current subscription; return
        the ones it could not reach (a lost connection's deliveries come back by themselves)."""
        live, stale = self._split(records)
        try:
            if live and not await self._send(live, command):
                return list(records)
            for record in live:
                self._counter.forget(record.position)
            return stale
        finally:
            self._unhand(records)

    async def give_back(self, records: Sequence[Record]) -> None:
        """Give a failed batch back in order: count a failure each, then resubscribe."""
        for record in records:
            self._counter.failed(record.position)
        await self._return(records)

    async def release(self, records: Sequence[Record]) -> None:
        """Give back messages never handed over (no failure counted)."""
        await self._return(records)

    async def _return(self, records: Sequence[Record]) -> None:
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
        return await self._settle_with(records, "NACK")

    async def aclose(self) -> None:
        """Unsubscribe and disconnect: ActiveMQ hands unacknowledged messages out again."""
        await self._stop_client()
