"""DynamoDB Streams as the registry knows it: recognition, defaults, opening, embedded set-up."""

from __future__ import annotations

import re

from poller.config.fields import StartingPosition
from poller.sources.dynamodb_streams.records import DynamoDBRecord
from poller.sources.shards.options import ShardMappingOptions
from poller.sources.spec import ArnPattern, SourceDefaults, SourceSpec

__all__ = ["SPEC", "STREAM_ARN"]

#: ``arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL``
STREAM_ARN = ArnPattern(
    "dynamodb",
    "DynamoDB stream",
    lambda resource: re.fullmatch(r"table/[^/]+/stream/.+", resource) is not None,
)


SPEC = SourceSpec(
    kind="dynamodb",
    title="DynamoDB Streams",
    family="stream",
    options=ShardMappingOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.0),
    record_type=DynamoDBRecord,
    opener="poller.sources.dynamodb_streams.source:DynamoDBStreamsSource.opened",
    arn=STREAM_ARN,
    starting_positions=(StartingPosition.TRIM_HORIZON, StartingPosition.LATEST),
    embedded="poller.sources.dynamodb_streams.source:explain_table",
)
