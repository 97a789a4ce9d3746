"""DynamoDB Streams as the registry knows it: recognition, defaults, opening, embedded set-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from poller.config.fields import SourceOptions, StartingPosition
from poller.config.resolved import ResolvedMapping
from poller.sources.dynamodb_streams.records import DynamoDBRecord
from poller.sources.spec import (
    ArnPattern,
    SourceDefaults,
    SourceSpec,
)

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["SPEC"]

_log = structlog.get_logger("poller.sources.dynamodb_streams")


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
    opener="poller.sources.dynamodb_streams.source:DynamoDBStreamsSource.opened",
    arn=ArnPattern("dynamodb", "DynamoDB stream", lambda resource: "/stream/" in resource),
    starting_positions=(StartingPosition.TRIM_HORIZON, StartingPosition.LATEST),
    embedded=_explain_table,
)
