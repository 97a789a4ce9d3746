"""Kinesis Data Streams as the registry knows it: recognition, defaults, opening, embedded set-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from poller.config.fields import ARN, SourceOptions, StartingPosition
from poller.config.resolved import ResolvedMapping
from poller.sources.kinesis.records import KinesisRecord
from poller.sources.spec import (
    ArnPattern,
    SourceDefaults,
    SourceSpec,
)

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["SPEC"]

_log = structlog.get_logger("poller.sources.kinesis")


async def _create_stream(mapping: ResolvedMapping, clients: AwsClients, shards: int) -> None:
    """Create the stream the mapping reads, with ``shards`` shards, unless it exists."""
    name = ARN.parse(mapping.event_source_arn).resource.removeprefix("stream/")
    kinesis = await clients.client("kinesis")
    try:
        await kinesis.describe_stream_summary(StreamName=name)
        return
    except kinesis.exceptions.ResourceNotFoundException:
        pass
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    with anyio.fail_after(30):
        while True:
            summary = await kinesis.describe_stream_summary(StreamName=name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                break
            await anyio.sleep(0.05)
    _log.info("embedded stream created", stream=name, shards=shards)


SPEC = SourceSpec(
    kind="kinesis",
    title="Kinesis",
    family="stream",
    options=SourceOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.0),
    record_type=KinesisRecord,
    opener="poller.sources.kinesis.source:KinesisSource.opened",
    arn=ArnPattern("kinesis", "Kinesis stream", lambda resource: resource.startswith("stream/")),
    starting_positions=(
        StartingPosition.TRIM_HORIZON,
        StartingPosition.LATEST,
        StartingPosition.AT_TIMESTAMP,
    ),
    embedded=_create_stream,
)
