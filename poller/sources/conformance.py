"""Where mypy proves that every source, codec and double satisfies the engine's seams.

Nothing here runs: the assignments below exist only for the type checker, so a source that drifts
from a Protocol (a renamed method, a changed signature) fails ``mypy --strict`` by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poller.engine.protocols import (
        AckQueue,
        AssignedPartitions,
        EventCodec,
        PartitionReader,
        PartitionSource,
        ReportsMetrics,
        ReportsTrimming,
        RunsInBackground,
        VisibilityQueue,
    )
    from poller.sources.activemq.codec import ActiveMqCodec
    from poller.sources.activemq.source import ActiveMqSource
    from poller.sources.dynamodb_streams.codec import DynamoDBStreamsCodec
    from poller.sources.dynamodb_streams.source import DynamoDBStreamsSource
    from poller.sources.kafka.codec import KafkaCodec
    from poller.sources.kafka.reader import KafkaReader
    from poller.sources.kafka.source import KafkaSource
    from poller.sources.kinesis.codec import KinesisCodec
    from poller.sources.kinesis.source import KinesisSource
    from poller.sources.rabbitmq.codec import RabbitMqCodec
    from poller.sources.rabbitmq.source import RabbitMqSource
    from poller.sources.shards.reader import ShardReader
    from poller.sources.sqs.codec import SqsCodec
    from poller.sources.sqs.source import SqsSource
    from poller.testing import MemoryBroker, MemoryQueue, MemorySource

    _log_sources: tuple[type[PartitionSource], ...] = (
        KinesisSource,
        DynamoDBStreamsSource,
        KafkaSource,
        MemorySource,
    )
    _readers: tuple[type[PartitionReader], ...] = (ShardReader, KafkaReader)
    _trimming: tuple[type[ReportsTrimming], ...] = (KinesisSource, DynamoDBStreamsSource)
    _kafka: tuple[type[AssignedPartitions], type[RunsInBackground], type[ReportsMetrics]] = (
        KafkaSource,
        KafkaSource,
        KafkaSource,
    )
    _visibility_queues: tuple[type[VisibilityQueue], ...] = (SqsSource, MemoryQueue)
    _ack_queues: tuple[type[AckQueue], ...] = (RabbitMqSource, ActiveMqSource, MemoryBroker)
    _codecs: tuple[type[EventCodec], ...] = (
        KinesisCodec,
        DynamoDBStreamsCodec,
        SqsCodec,
        KafkaCodec,
        RabbitMqCodec,
        ActiveMqCodec,
        MemorySource,
        MemoryQueue,
        MemoryBroker,
    )
