"""Amazon SQS as the registry knows it: recognition, defaults, rules, opening, embedded set-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from poller.config.fields import ARN
from poller.config.resolved import ResolvedMapping
from poller.sources.spec import (
    ArnPattern,
    SourceDefaults,
    SourceSpec,
)
from poller.sources.sqs.options import SqsMappingOptions
from poller.sources.sqs.records import SqsRecord

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["SPEC"]

_log = structlog.get_logger("poller.sources.sqs")


async def _create_queue(mapping: ResolvedMapping, clients: AwsClients, shards: int) -> None:
    """Create the queue the mapping reads (FIFO when its name says so)."""
    name = ARN.parse(mapping.event_source_arn).resource
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    await (await clients.client("sqs")).create_queue(QueueName=name, Attributes=attributes)
    _log.info("embedded queue created", queue=name)


SPEC = SourceSpec(
    kind="sqs",
    title="SQS",
    family="queue",
    options=SqsMappingOptions,
    defaults=SourceDefaults(batch_size=10, batching_window=0.0, retry_backoff=0.0),
    record_type=SqsRecord,
    opener="poller.sources.sqs.source:SqsSource.opened",
    arn=ArnPattern("sqs", "SQS queue"),
    unsupported=(
        "StartingPosition",
        "BisectBatchOnFunctionError",
        "MaximumRecordAgeInSeconds",
        "ParallelizationFactor",
    ),
    embedded=_create_queue,
)
