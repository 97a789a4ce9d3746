"""From a validated mapping to running parts: source, target, on-failure sink, runner.

This is the one place that knows which source module reads which ARN, so adding a source means
adding a branch here and a module under ``poller/sources``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
import structlog

from poller.aws import AwsClients
from poller.config import (
    ARN,
    MappingConfig,
    PollerConfig,
    ResolvedMapping,
    SourceKind,
    WorkerConfig,
)
from poller.destinations import OnFailureSink, destination_for
from poller.destinations.base import Destination
from poller.destinations.kafka import KafkaTopicDestination
from poller.engine.mapping import StreamMappingRunner
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import (
    Discard,
    DiscardSink,
    MappingRunner,
    PartitionSource,
    QueueSource,
    Store,
    Target,
)
from poller.engine.queue import QueueMappingRunner
from poller.errors import ConfigError, HandlerImportError
from poller.sources.activemq import ActiveMqSource
from poller.sources.dynamodb_streams import DynamoDBStreamsOptions, DynamoDBStreamsSource
from poller.sources.kafka import KafkaOptions, KafkaSource, kafka_connection
from poller.sources.kinesis import KinesisOptions, KinesisSource
from poller.sources.mq_common import broker_engine
from poller.sources.rabbitmq import RabbitMqSource
from poller.sources.sqs import SqsSource
from poller.stores.kafka_offsets import CommittedOffsetStore
from poller.targets import load_handler, target_for

__all__ = ["HandlerRef", "build_runner", "resolve_handlers"]

_log = structlog.get_logger("poller.runtime")

#: Sources whose messages are settled one by one (delete, visibility) instead of checkpointed.
QUEUE_KINDS = frozenset({SourceKind.SQS, SourceKind.MQ})

#: A handler given through the Python API: a typed or Lambda-style callable, or a Target.
HandlerRef = Callable[..., Any] | Target


def resolve_handlers(
    config: PollerConfig, handlers: Mapping[str, HandlerRef] | None
) -> dict[str, HandlerRef]:
    """Import or look up every enabled mapping's handler now, before anything starts."""
    given = dict(handlers or {})
    resolved: dict[str, HandlerRef] = {}
    problems: list[str] = []
    for index, mapping in enumerate(config.mappings):
        mapping_id = mapping.mapping_id
        handler = given.pop(mapping_id, None)
        if handler is None and mapping.uuid is None and mapping.handler in given:
            handler = given.pop(mapping.handler)  # registered under its Handler reference
        if handler is None and mapping.handler is not None:
            try:
                handler = load_handler(mapping.handler)
            except HandlerImportError as error:
                problems.append(f"mappings[{index}].Handler: {error}")
                continue
        if handler is None:
            problems.append(
                f"mappings[{index}]: no Handler given and no handler registered for UUID "
                f"{mapping_id!r}"
            )
            continue
        resolved[mapping_id] = handler
    if given:
        problems.append(
            f"handlers registered for unknown mappings: {', '.join(sorted(given))} "
            "(register handlers by the mapping's UUID)"
        )
    if problems:
        raise ConfigError(problems)
    return resolved


def function_name_of(mapping: MappingConfig | ResolvedMapping) -> str:
    """The Lambda-style function name: the whole handler reference (``app.audit:handle`` ->
    ``app-audit-handle``, so two handlers never share a name or ARN), else the mapping id."""
    if mapping.handler:
        return re.sub(r"[^A-Za-z0-9_-]", "-", mapping.handler)
    return mapping.mapping_id


class DroppingSink:
    """No on-failure destination: discarded records are logged (with positions) and dropped.

    This is AWS's behaviour without a destination; the log line is the only record of them.
    """

    def __init__(self, counters: MappingCounters) -> None:
        self._counters = counters
        self._log = _log.bind(sink="none")

    async def deliver(self, discard: Discard) -> None:
        self._counters.dropped_events += len(discard.records)
        self._log.warning(
            "discarded records dropped (no on-failure destination configured)",
            mapping=discard.mapping_id,
            shard=discard.partition,
            condition=discard.condition,
            first=discard.records[0].position,
            last=discard.records[-1].position,
            records=len(discard.records),
        )


class CountingSink:
    """Counts what reached the on-failure destination."""

    def __init__(self, inner: DiscardSink, counters: MappingCounters) -> None:
        self._inner = inner
        self._counters = counters

    async def deliver(self, discard: Discard) -> None:
        await self._inner.deliver(discard)
        self._counters.on_failure_delivered_events += len(discard.records)


async def build_source(
    mapping: ResolvedMapping, clients: AwsClients, worker: WorkerConfig | None = None
) -> PartitionSource | QueueSource:
    """The source that reads the mapping's event source; the caller closes it."""
    worker = worker or WorkerConfig()
    if mapping.source_kind is SourceKind.KAFKA:
        session_ms = int(worker.kafka_session_timeout_seconds * 1000)
        return KafkaSource(
            mapping,
            await kafka_connection(mapping, clients),
            KafkaOptions(
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),
                rebalance_timeout_ms=session_ms,
                revoke_grace_seconds=worker.kafka_revoke_grace_seconds,
            ),
        )
    if mapping.source_kind is SourceKind.KINESIS:
        return KinesisSource(
            mapping.event_source_arn,
            await clients.client("kinesis"),
            _region(mapping, clients),
            # The engine paces reads (idle poll, catch-up); the reader keeps AWS's 5 reads/s guard.
            KinesisOptions(min_read_interval=0.2, idle_read_interval=0.2),
        )
    if mapping.source_kind is SourceKind.DYNAMODB:
        return DynamoDBStreamsSource(
            mapping.event_source_arn,
            await clients.client("dynamodbstreams"),
            _region(mapping, clients),
            # The engine paces idle polls (4/s by default, as Lambda) and reads on at once
            # while records keep coming; DynamoDB Streams has no per-shard read rate to guard.
            DynamoDBStreamsOptions(min_read_interval=0.0, idle_read_interval=0.0),
        )
    if mapping.source_kind is SourceKind.SQS:
        return SqsSource(
            mapping.event_source_arn,
            await clients.client("sqs"),
            _region(mapping, clients),
        )
    if mapping.source_kind is SourceKind.MQ:
        if await broker_engine(mapping, clients) == "RABBITMQ":
            return RabbitMqSource(mapping, clients)
        return ActiveMqSource(mapping, clients)
    raise ConfigError(f"EventSourceArn: {mapping.source_kind.value} sources are not supported yet")


def _region(mapping: ResolvedMapping, clients: AwsClients) -> str:
    """The source's region: the ARN's, else the configured one."""
    return ARN.parse(mapping.event_source_arn).region or clients.region


def _destination(
    mapping: ResolvedMapping, source: PartitionSource | QueueSource, clients: AwsClients
) -> Destination:
    uri = mapping.on_failure_destination
    assert uri is not None
    if uri.startswith("kafka://"):
        if not isinstance(source, KafkaSource):
            raise ConfigError(f"on-failure destination {uri!r}: only a Kafka source can use it")
        return KafkaTopicDestination(uri, source.producer)
    return destination_for(uri, clients)


def _function_arn(mapping: ResolvedMapping, name: str, region: str) -> str:
    """The Lambda-style ARN the handler gets, in the source's account and region when known."""
    if mapping.event_source_arn:
        arn = ARN.parse(mapping.event_source_arn)
        partition, region, account = arn.partition, arn.region or region, arn.account
    else:  # a self-managed broker belongs to no AWS account
        partition, account = "aws", "000000000000"
    return f"arn:{partition}:lambda:{region}:{account}:function:{name}"


async def build_runner(
    mapping: ResolvedMapping,
    handler: HandlerRef,
    *,
    clients: AwsClients,
    store: Store,
    discovery_interval: float,
    idle_poll: float | None,
    limiter: anyio.CapacityLimiter,
    source: PartitionSource | QueueSource | None = None,
    queue_wait_seconds: int = 20,
) -> MappingRunner:
    """Everything one mapping needs, assembled."""
    counters = MappingCounters()
    source = source or await build_source(mapping, clients)
    name = function_name_of(mapping)
    function_arn = _function_arn(mapping, name, clients.region)
    target = target_for(
        handler,
        source,
        report_batch_item_failures=mapping.report_batch_item_failures,
        limiter=limiter,
        name=f"mapping {mapping.mapping_id}",
    )
    sink: DiscardSink | None = None
    if mapping.on_failure_destination:
        sink = CountingSink(
            OnFailureSink(source, function_arn, _destination(mapping, source, clients)),
            counters,
        )
    if isinstance(source, KafkaSource):
        # A Kafka mapping's checkpoints are its consumer group's committed offsets.
        store = CommittedOffsetStore(store, source)
    if mapping.source_kind in QUEUE_KINDS:
        # Without a destination, the queue's own redrive policy takes what keeps failing.
        return QueueMappingRunner(
            mapping=mapping,
            source=cast(QueueSource, source),
            target=target,
            sink=sink,
            store=store,
            counters=counters,
            function_name=name,
            function_arn=function_arn,
            long_poll_seconds=queue_wait_seconds,
        )
    if sink is None:
        sink = DroppingSink(counters)
    return StreamMappingRunner(
        mapping=mapping,
        source=cast(PartitionSource, source),
        store=store,
        target=target,
        sink=sink,
        counters=counters,
        discovery_interval=discovery_interval,
        idle_poll=idle_poll,
        function_name=name,
        function_arn=function_arn,
    )
