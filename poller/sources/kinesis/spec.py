"""Kinesis Data Streams as the registry knows it: recognition, defaults, opening, embedded set-up."""

from __future__ import annotations

from poller.config.fields import StartingPosition
from poller.sources.kinesis.records import KinesisRecord
from poller.sources.shards.options import ShardMappingOptions
from poller.sources.spec import ArnPattern, SourceDefaults, SourceSpec

__all__ = ["SPEC", "STREAM_ARN"]

#: ``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME``
STREAM_ARN = ArnPattern(
    "kinesis", "Kinesis stream", lambda resource: resource.startswith("stream/")
)


SPEC = SourceSpec(
    kind="kinesis",
    title="Kinesis",
    family="stream",
    options=ShardMappingOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.0),
    record_type=KinesisRecord,
    opener="poller.sources.kinesis.source:KinesisSource.opened",
    arn=STREAM_ARN,
    starting_positions=(
        StartingPosition.TRIM_HORIZON,
        StartingPosition.LATEST,
        StartingPosition.AT_TIMESTAMP,
    ),
    embedded="poller.sources.kinesis.source:create_stream",
)
