"""Everything a stream redrive opens, and what it refuses before opening anything.

Where the on-failure records are read (``--from``, else the mapping's OnFailure destination):

=============================================  =====================================================
``arn:aws:sqs:...`` or a queue URL               the queue's messages
``arn:aws:sns:...``                              the one SQS queue subscribed to the topic
``arn:aws:s3:::BUCKET`` (``/PREFIX``)            objects under the prefix (default:
                                                 ``aws/lambda/<mapping UUID>/``, AWS's layout)
``kafka://TOPIC``                                the topic (Kafka mappings only)
=============================================  =====================================================

A destination of another kind, a mapping with tumbling windows (its windows and state cannot be
replayed out of their time) and an embedded endpoint (nothing outlives the worker there) are
refused as :class:`~poller.errors.ConfigError`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.config.mapping import MappingConfig
from poller.config.resolved import ResolvedMapping
from poller.config.settings import PollerConfig
from poller.engine.windows import tumbling_window_seconds
from poller.errors import ConfigError
from poller.recovery.onfailure_reader import FailureInbox, S3Inbox, SqsInbox, queue_behind_topic
from poller.recovery.stream_fetch import RangeFetcher, ShardRangeFetcher
from poller.recovery.stream_redrive import RedriveReport, redrive_stream
from poller.runtime.wiring import open_source
from poller.sources.shards import ShardStreamSource

if TYPE_CHECKING:
    from poller.sources.kafka.connection import KafkaConnection

__all__ = ["check_destination", "redrive_stream_mapping"]

_ALLOWED = "an SQS queue ARN or URL, an SNS topic ARN, an S3 bucket ARN, or kafka://TOPIC"


def check_destination(mapping: MappingConfig, source: str | None, prefix: str | None) -> str:
    """The destination to read (``source``, else the mapping's own); ConfigError when there is
    none or it is of a kind that cannot be read for this mapping."""
    resolved = mapping.resolved()
    if tumbling_window_seconds(resolved):
        raise ConfigError(
            f"mapping {resolved.mapping_id} has TumblingWindowInSeconds; its records cannot be "
            "redriven outside their windows"
        )
    where = source or resolved.on_failure_destination
    if not where:
        raise ConfigError(
            f"mapping {resolved.mapping_id} has no on-failure destination; give the one its "
            "records were sent to with --from"
        )
    if where.startswith("kafka://"):
        if resolved.source_kind != "kafka" or not where.removeprefix("kafka://"):
            raise ConfigError(
                f"--from {where!r}: a kafka://TOPIC destination holds only a Kafka mapping's "
                f"records (mapping {resolved.mapping_id} reads {resolved.source_kind})"
            )
    elif not where.startswith(("http://", "https://")):
        try:
            service = ARN.parse(where).service
        except ValueError:
            raise ConfigError(
                f"--from {where!r} is not a destination (allowed: {_ALLOWED})"
            ) from None
        if service not in ("sqs", "sns", "s3"):
            raise ConfigError(
                f"--from {where!r} is a {service} ARN, not a destination (allowed: {_ALLOWED})"
            )
    if prefix is not None and not (where.startswith("arn:") and ARN.parse(where).service == "s3"):
        raise ConfigError(f"--prefix {prefix!r} goes with an S3 destination only (got {where!r})")
    return where


async def _inbox(
    where: str,
    prefix: str | None,
    mapping_id: str,
    clients: AwsClients,
    connection: KafkaConnection | None,
) -> FailureInbox:
    if where.startswith("kafka://"):
        from poller.recovery.kafka_inbox import KafkaInbox, redrive_group

        assert connection is not None, "check_destination lets kafka:// through for Kafka only"
        return KafkaInbox(connection, where.removeprefix("kafka://"), redrive_group(mapping_id))
    if where.startswith(("http://", "https://")):
        return SqsInbox(clients, where)
    arn = ARN.parse(where)
    if arn.service == "sns":
        return SqsInbox(clients, await queue_behind_topic(clients, where))
    if arn.service == "s3":
        bucket, _, under = arn.resource.partition("/")
        return S3Inbox(clients, bucket, prefix or under or f"aws/lambda/{mapping_id}/")
    return SqsInbox(clients, where)


async def redrive_stream_mapping(
    config: PollerConfig,
    mapping: MappingConfig,
    *,
    source: str | None,
    prefix: str | None,
    dry_run: bool,
) -> RedriveReport:
    """Redrive ``mapping``'s discarded records (see :mod:`poller.recovery.stream_redrive`)."""
    where = check_destination(mapping, source, prefix)
    if config.aws.endpoint_url == "embedded":
        raise ConfigError(
            "aws.endpoint_url 'embedded' lives only as long as a worker: there is nothing to "
            "redrive from (allowed: an AWS endpoint, or an emulator's URL)"
        )
    resolved = mapping.resolved()
    async with contextlib.AsyncExitStack() as stack:
        clients = AwsClients(config.aws)
        stack.push_async_callback(clients.aclose)
        opened = await open_source(mapping, resolved, clients, config.worker)
        stack.push_async_callback(opened.aclose)
        connection: KafkaConnection | None = None
        fetcher: RangeFetcher
        if resolved.source_kind == "kafka":
            fetcher, connection = await _kafka_fetcher(resolved, clients, opened.source)
        else:
            if not isinstance(opened.source, ShardStreamSource):
                raise ConfigError(
                    f"mapping {resolved.mapping_id}: a {resolved.source_kind} source cannot be "
                    "read by sequence number"
                )
            fetcher = ShardRangeFetcher(opened.source)
        stack.push_async_callback(fetcher.aclose)
        inbox = await _inbox(where, prefix, resolved.mapping_id, clients, connection)
        stack.push_async_callback(inbox.aclose)
        return await redrive_stream(
            config,
            mapping,
            clients=clients,
            inbox=inbox,
            fetcher=fetcher,
            opened=opened,
            dry_run=dry_run,
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def _kafka_fetcher(
    resolved: ResolvedMapping, clients: AwsClients, source: object
) -> tuple[RangeFetcher, KafkaConnection]:
    """A Kafka range fetcher (a consumer of no group) and the cluster's connection."""
    from aiokafka import AIOKafkaConsumer

    from poller.recovery.stream_fetch import KafkaRangeFetcher
    from poller.sources.kafka.connection import kafka_connection
    from poller.sources.kafka.source import KafkaSource

    if not isinstance(source, KafkaSource):
        raise ConfigError(f"mapping {resolved.mapping_id}: its source is not a Kafka consumer")
    connection = await kafka_connection(resolved, clients)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **connection.client_kwargs())
    await consumer.start()
    # The source's own record builder, so the records render as the mapping's worker renders them.
    return KafkaRangeFetcher(consumer, source.to_record), connection
