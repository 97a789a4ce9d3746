"""DynamoDB Streams as the registry knows it: recognition, defaults, opening, embedded set-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from poller.config.fields import SourceOptions, StartingPosition
from poller.config.resolved import ResolvedMapping
from poller.sources.dynamodb_streams.records import DynamoDBRecord
from poller.sources.spec import (
    ArnPattern,
    OpenedSource,
    SourceDefaults,
    SourceEnvironment,
    SourceSpec,
)

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["SPEC"]

_log = structlog.get_logger("poller.sources.dynamodb_streams")


async def _open(mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
    from poller.sources.dynamodb_streams.source import (
        DynamoDBStreamsOptions,
        DynamoDBStreamsSource,
    )

    source = DynamoDBStreamsSource(
        mapping.event_source_arn,
        await environment.clients.client("dynamodbstreams"),
        environment.region_of(mapping),
        # The engine paces idle polls (4/s by default, as Lambda) and reads on at once while
        # records keep coming; DynamoDB Streams has no per-shard read rate to guard.
        DynamoDBStreamsOptions(min_read_interval=0.0, idle_read_interval=0.0),
    )
    return OpenedSource(source, source.codec)


async def _explain_table(mapping: ResolvedMapping, clients: AwsClients, shards: int) -> None:
    """A stream ARN does not say the table's key schema: the user creates the table."""
    _log.warning(
        "embedded endpoint: create the DynamoDB table and its stream yourself (its key "
        "schema is not in the stream ARN); the mapping waits until the stream exists",
        stream=mapping.event_source_arn,
    )


SPEC = SourceSpec(
    kind="dynamodb",
    title="DynamoDB Streams",
    family="stream",
    options=SourceOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.0),
    record_type=DynamoDBRecord,
    open=_open,
    arn=ArnPattern("dynamodb", "DynamoDB stream", lambda resource: "/stream/" in resource),
    starting_positions=(StartingPosition.TRIM_HORIZON, StartingPosition.LATEST),
    embedded=_explain_table,
)
