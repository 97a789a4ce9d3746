"""Moving a RabbitMQ mapping's dead letters back to its source queue.

The dead-letter queue is ``<queue>.dlq`` unless one is given. Dead letters are taken one at a
time (``basic.get``, unacknowledged), published to the source queue through the default exchange
on a channel with publisher confirms and ``mandatory`` set (a queue that vanished returns the
message instead of dropping it), and acknowledged on the dead-letter queue only once the broker
confirmed the publish. One at a time keeps their order. A publish that fails is nacked with
requeue: the message stays in the dead-letter queue, at its place, and the redrive stops there
(the next message would overtake it).

The message keeps its body and properties (content type and encoding, message id, correlation
id, headers, priority, delivery mode, timestamps, type, app id, reply-to); the headers RabbitMQ
added when dead-lettering it (``x-death`` and ``x-first-death-*``, ``x-last-death-*``) are
dropped, so the source queue sees it as a new message.

Dry run: the dead letters are taken unacknowledged, listed, and returned to the queue at their
places when the channel closes (their redelivered flag is set by that).
"""

from __future__ import annotations

from typing import Any, TextIO

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from poller.aws import AwsClients
from poller.config.resolved import ResolvedMapping
from poller.errors import SourceError, SourceNotFoundError
from poller.recovery.dead_letter_moves import (
    DeadLetter,
    Pace,
    Tally,
    preview,
    print_listing,
    print_tally,
)
from poller.sources.credentials import tls_context
from poller.sources.mq.endpoints import broker_endpoints, broker_login, virtual_host
from poller.sources.mq.options import MqSettings

__all__ = ["redrive_rabbitmq"]

_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


async def redrive_rabbitmq(
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
    dlq = dead_letter_queue or f"{source}.dlq"
    connection = await _connect(mapping, clients)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await _exists(channel, connection, source, "source queue")
        channel = await connection.channel(publisher_confirms=True)
        queue = await _exists(channel, connection, dlq, "dead-letter queue")
        tally = Tally(source, dlq)
        if dry_run:
            letters: list[DeadLetter] = []
            while max_messages is None or len(letters) < max_messages:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.append(_listed(message))
            note = "they were returned to the queue unacknowledged (marked redelivered)"
            print_listing(letters, tally, note, out)
            return 0
        pace = Pace(rate_per_second)
        while max_messages is None or tally.moved < max_messages:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            await pace.wait()
            failure = await _publish(channel, source, message)
            if failure is not None:
                await message.nack(requeue=True)
                tally.failures.append(f"{message.message_id or message.delivery_tag}: {failure}")
                break
            await message.ack()
            tally.moved += 1
        declared = await channel.declare_queue(dlq, passive=True)
        tally.left = declared.declaration_result.message_count
    finally:
        await connection.close()
    print_tally(tally, out)
    return 1 if tally.failures else 0


async def _connect(mapping: ResolvedMapping, clients: AwsClients) -> Any:
    endpoints = await broker_endpoints(
        mapping, clients, engine="RABBITMQ", schemes=("amqp", "amqps")
    )
    errors: list[str] = []
    for endpoint in endpoints:
        login = await broker_login(mapping, clients, endpoint)
        context = await tls_context(mapping.source_access, clients) if endpoint.tls else None
        try:
            return await aio_pika.connect(
                host=endpoint.host,
                port=endpoint.port,
                login=login.username if login else "guest",
                password=login.password if login else "guest",
                virtualhost=virtual_host(mapping, endpoint),
                ssl=endpoint.tls,
                ssl_context=context,
                timeout=10,
                client_properties={"connection_name": f"poller redrive {mapping.mapping_id}"},
            )
        except Exception as error:  # the client raises many types; each is named in the message
            errors.append(f"{endpoint}: {type(error).__name__}: {error}")
    raise SourceError(f"cannot connect to the broker: {'; '.join(errors)}")


async def _exists(channel: Any, connection: Any, name: str, what: str) -> Any:
    """The queue, declared passively; SourceNotFoundError when it does not exist."""
    try:
        return await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise SourceNotFoundError(f"{what} {name!r} does not exist on the broker") from None
    except aiormq.exceptions.ChannelAccessRefused as error:
        raise SourceError(
            f"access denied: queue.declare (passive) of {what} {name!r}: {error}"
        ) from None


async def _publish(channel: Any, source: str, message: AbstractIncomingMessage) -> str | None:
    """Publish a copy to the source queue; None once confirmed, else why it was not."""
    headers = {
        key: value
        for key, value in (message.headers or {}).items()
        if not key.startswith(_DEATH_HEADERS)
    }
    copy = aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        user_id=message.user_id,
        app_id=message.app_id,
    )
    try:
        await channel.default_exchange.publish(copy, routing_key=source, mandatory=True, timeout=10)
    except aio_pika.exceptions.DeliveryError as error:
        return f"the broker did not take it ({error})"
    except (aiormq.exceptions.AMQPError, TimeoutError) as error:
        return f"publish failed: {type(error).__name__}: {error}"
    return None


def _listed(message: AbstractIncomingMessage) -> DeadLetter:
    deaths = (message.headers or {}).get("x-death")
    count = "-"
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        count = str(deaths[0].get("count", "-"))
    return DeadLetter(
        str(message.message_id or message.delivery_tag),
        None,
        f"{count} death(s)" if count != "-" else ("redelivered" if message.redelivered else "-"),
        preview(message.body),
    )
