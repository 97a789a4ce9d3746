"""Moving a queue mapping's dead letters back to its source queue (``poller redrive`` on SQS,
RabbitMQ and ActiveMQ mappings), like SQS's message move task.

Which dead-letter queue: SQS, the one the source queue's RedrivePolicy names; RabbitMQ,
``<queue>.dlq`` (the queue a dead-letter exchange routes the source queue's rejects to, as
poller's broker set-ups name it; RabbitMQ does not tell a client a queue's arguments); ActiveMQ,
``DLQ.<queue>`` (the individual dead-letter strategy's name). ``--from`` names another.

Every broker follows the same rules (:mod:`poller.recovery.dead_letter_moves`): a dead letter
leaves the dead-letter queue only once the source queue confirmed it, at most
``rate_per_second`` a second, at most ``max_messages``, until the dead-letter queue is empty. The
modules per broker say how: :mod:`~poller.recovery.dead_letter_sqs`,
:mod:`~poller.recovery.dead_letter_rabbitmq`, :mod:`~poller.recovery.dead_letter_activemq`.

Exit codes: 0 everything moved (or listed); 1 some message failed to move, or the broker failed
(access denied: the action is named); 2 the request cannot be done as given (no dead-letter queue
configured and none given, a queue that does not exist). Errors are one line on stderr.
"""

from __future__ import annotations

import sys
from typing import TextIO

from botocore.exceptions import BotoCoreError

from poller.aws import AwsClients
from poller.config import MappingConfig, PollerConfig
from poller.errors import PollerError, SourceNotFoundError
from poller.recovery.dead_letter_sqs import redrive_sqs
from poller.sources.mq.endpoints import broker_engine
from poller.sources.mq.options import MqSettings

__all__ = ["redrive_dead_letters"]

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


async def redrive_dead_letters(
    config: PollerConfig,
    mapping: MappingConfig,
    *,
    dead_letter_queue: str | None,
    rate_per_second: float,
    max_messages: int | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Move messages from ``mapping``'s dead-letter queue back to its source queue; the exit code."""
    resolved = mapping.resolved()
    try:
        if config.aws.embedded and resolved.source_kind == "sqs":
            raise SourceNotFoundError(
                '[aws] endpoint_url = "embedded": the queues live inside the worker\'s process'
            )
        clients = AwsClients(config.aws)
        try:
            if isinstance(resolved.settings, MqSettings):
                # The broker clients are extras: imported only for a mapping that needs them.
                engine = await broker_engine(resolved, clients)
                if engine == "RABBITMQ":
                    from poller.recovery.dead_letter_rabbitmq import redrive_rabbitmq

                    return await redrive_rabbitmq(
                        resolved,
                        clients,
                        dead_letter_queue=dead_letter_queue,
                        rate_per_second=rate_per_second,
                        max_messages=max_messages,
                        dry_run=dry_run,
                        out=out,
                    )
                from poller.recovery.dead_letter_activemq import redrive_activemq

                return await redrive_activemq(
                    resolved,
                    clients,
                    dead_letter_queue=dead_letter_queue,
                    rate_per_second=rate_per_second,
                    max_messages=max_messages,
                    dry_run=dry_run,
                    out=out,
                )
            return await redrive_sqs(
                await clients.client("sqs"),
                resolved.event_source_arn,
                dead_letter_queue=dead_letter_queue,
                rate_per_second=rate_per_second,
                max_messages=max_messages,
                dry_run=dry_run,
                out=out,
            )
        finally:
            await clients.aclose()
    except SourceNotFoundError as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except (PollerError, BotoCoreError, OSError) as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ImportError as error:  # a broker client extra that is not installed
        extra = "rabbitmq" if error.name in ("aio_pika", "aiormq") else "activemq"
        print(
            f"poller: {error.name} is not installed (pip install 'poller[{extra}]')",
            file=sys.stderr,
        )
        return EXIT_REFUSED
