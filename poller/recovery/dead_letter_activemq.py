"""Moving an ActiveMQ mapping's dead letters back to its source queue (STOMP 1.2, stompman).

The dead-letter queue is ``DLQ.<queue>`` (ActiveMQ's individual dead-letter strategy) unless one
is given. Dead letters are taken one at a time (a subscription with client-individual
acknowledgement and a prefetch of one), sent to the source queue with a receipt requested, and
acknowledged on the dead-letter queue only once the broker's RECEIPT confirmed the send. A send
that fails (an ERROR frame, or no receipt in time) leaves the message unacknowledged, and the
redrive stops there: the message returns to the dead-letter queue, at its place, when the
subscription ends, and the next one would overtake it.

The copy keeps the body (a bytes message stays one: ``content-length`` is sent when the dead
letter had it), content type, persistence, priority, correlation id, reply-to, type and the user
properties; the broker's own headers (message id, destination, subscription, redelivered,
timestamp, expiry, ``dlqDeliveryFailureCause``) are not copied, so it arrives as a new message.

STOMP cannot ask whether a queue exists (ActiveMQ creates one on first use) or how many messages
it holds: a dead-letter queue that does not exist is an empty one, and the table's LEFT is "-".
The queue counts as empty when no message arrives within ``EMPTY_WAIT_SECONDS``.

Dry run: the dead letters are taken unacknowledged (up to ``max_messages``, else
``LISTING_LIMIT``), listed, and return to the queue when the subscription ends (marked
redelivered).
"""

from __future__ import annotations

from typing import Any, TextIO

import anyio
import stompman

from poller.aws import AwsClients
from poller.config.resolved import ResolvedMapping
from poller.errors import SourceError
from poller.recovery.dead_letter_moves import (
    DeadLetter,
    Pace,
    Tally,
    preview,
    print_listing,
    print_tally,
)
from poller.sources.credentials import tls_context
from poller.sources.mq.endpoints import broker_endpoints, broker_login
from poller.sources.mq.options import MqSettings

__all__ = ["redrive_activemq"]

EMPTY_WAIT_SECONDS = 2.0
LISTING_LIMIT = 1000
#: How long the broker may take to confirm one send.
RECEIPT_SECONDS = 10.0

_NOT_COPIED = frozenset(
    {
        "message-id",
        "destination",
        "subscription",
        "ack",
        "content-length",
        "content-type",
        "redelivered",
        "timestamp",
        "expires",
        "receipt",
        "dlqDeliveryFailureCause",
        "originalExpiration",
    }
)


async def redrive_activemq(
    mapping: ResolvedMapping,
    clients: AwsClients,
    *,
    dead_letter_queue: str | None,
    rate_per_second: float,
    max_messages: int | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Move (or list) the dead letters; 0 when all moved, 1 when one failed."""
    assert isinstance(mapping.settings, MqSettings)
    source = mapping.settings.queue
    dlq = dead_letter_queue or f"DLQ.{source}"
    tally = Tally(source, dlq)
    prefetch = (max_messages or LISTING_LIMIT) if dry_run else 1
    send, receive = anyio.create_memory_object_stream[stompman.AckableMessageFrame](prefetch)

    async def arrived(frame: stompman.AckableMessageFrame) -> None:
        await send.send(frame)

    try:
        async with await _client(mapping, clients) as client:
            subscription = await client.subscribe_with_manual_ack(
                f"/queue/{dlq}", arrived, headers={"activemq.prefetchSize": str(prefetch)}
            )
            try:
                if dry_run:
                    letters = [_listed(frame) for frame in await _taken(receive, max_messages)]
                    note = "they return to the queue unacknowledged (marked redelivered)"
                    print_listing(letters, tally, note, out)
                    return 0
                await _move(client, receive, source, tally, rate_per_second, max_messages)
            finally:
                await subscription.unsubscribe()
    except (stompman.FailedAllConnectAttemptsError, stompman.ConnectionLostError) as error:
        raise SourceError(f"cannot reach the broker: {type(error).__name__}: {error}") from None
    print_tally(tally, out)
    return 1 if tally.failures else 0


async def _client(mapping: ResolvedMapping, clients: AwsClients) -> stompman.Client:
    endpoints = await broker_endpoints(
        mapping, clients, engine="ACTIVEMQ", schemes=("stomp", "stomp+ssl")
    )
    servers = []
    for endpoint in endpoints:
        login = await broker_login(mapping, clients, endpoint)
        servers.append(
            stompman.ConnectionParameters(
                endpoint.host,
                endpoint.port,
                login.username if login else "",
                login.password if login else "",
            )
        )
    tls = await tls_context(mapping.source_access, clients) if endpoints[0].tls else None
    return stompman.Client(
        servers, ssl=tls, connect_timeout=10, connect_retry_attempts=2, max_concurrent_handlers=1
    )


async def _taken(receive: Any, max_messages: int | None) -> list[stompman.AckableMessageFrame]:
    """The dead letters that arrive until none came for EMPTY_WAIT_SECONDS (or enough came)."""
    frames: list[stompman.AckableMessageFrame] = []
    while max_messages is None or len(frames) < max_messages:
        with anyio.move_on_after(EMPTY_WAIT_SECONDS):
            frames.append(await receive.receive())
            continue
        break
    return frames


async def _move(
    client: stompman.Client,
    receive: Any,
    source: str,
    tally: Tally,
    rate: float,
    max_messages: int | None,
) -> None:
    pace = Pace(rate)
    while max_messages is None or tally.moved < max_messages:
        taken = await _taken(receive, 1)
        if not taken:
            return
        frame = taken[0]
        await pace.wait()
        headers = {k: str(v) for k, v in frame.headers.items() if k not in _NOT_COPIED}
        try:
            await client.send(
                frame.body,
                f"/queue/{source}",
                content_type=frame.headers.get("content-type"),
                add_content_length="content-length" in frame.headers,
                headers=headers,
                receipt_timeout=RECEIPT_SECONDS,
            )
        except (stompman.SendReceiptError, TimeoutError) as error:
            tally.failures.append(
                f"{frame.headers.get('message-id')}: the broker did not confirm the send "
                f"({type(error).__name__}: {error}); redrive stopped to keep the order"
            )
            return
        await frame.ack()
        tally.moved += 1


def _listed(frame: stompman.AckableMessageFrame) -> DeadLetter:
    return DeadLetter(
        str(frame.headers.get("message-id", "-")),
        None,
        "redelivered" if frame.headers.get("redelivered") == "true" else "-",
        preview(frame.body),
    )
