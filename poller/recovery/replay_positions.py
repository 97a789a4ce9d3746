"""Where a replayed shard resumes, as the checkpoint to write (Kinesis, DynamoDB Streams).

A checkpoint names the last position whose records are all done, and a partition resumes
*after* it (``AFTER_SEQUENCE_NUMBER``). To resume *at* record P, replay writes the checkpoint
"P - 1": sequence numbers are decimal integers, nothing sits between P - 1 and P, so the reader
starts exactly at P (and its own ordinal screen lets P through). Where no record is known, the
checkpoint is a moment marker (position "", ``opened_at``), the one a LATEST start writes: the
partition resumes at that moment (Kinesis AT_TIMESTAMP; DynamoDB Streams from the oldest record,
passing over what arrived before it), :data:`~poller.engine.cutoff.CLOCK_SKEW_ALLOWANCE` early.

How each target is found:

- ``--at-sequence P``: "P - 1", without reading the shard.
- ``--trim-horizon``: the first record a TRIM_HORIZON iterator reads; an empty shard gets the
  marker at the epoch (everything the shard will hold).
- ``--at-timestamp T``: Kinesis: the first record an AT_TIMESTAMP iterator reads. DynamoDB Streams
  has no AT_TIMESTAMP iterator: the shard is read from TRIM_HORIZON to the first record whose
  ApproximateCreationDateTime is at or after T (a scan of up to the stream's 24 hours). No such
  record yet: the marker at T.
- ``--latest``: the marker at the moment of the replay (records of the last
  CLOCK_SKEW_ALLOWANCE seconds may be handed over again; nothing is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from poller.config.fields import StartingPosition
from poller.engine.protocols import PartitionInfo, StartAt
from poller.engine.state import Checkpoint
from poller.records import Record
from poller.sources.shards.source import ShardStreamSource

__all__ = ["ReplayTarget", "checkpoint_before", "moment_marker", "replay_checkpoint"]

#: Consecutive empty reads at the tip after which a shard counts as holding nothing more.
_EMPTY_READS_AT_TIP = 3

TargetKind = Literal["at-timestamp", "at-sequence", "trim-horizon", "latest"]


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    """Where ``poller replay`` moves a mapping's partitions."""

    kind: TargetKind
    #: ``at-timestamp``: epoch seconds.
    timestamp: float | None = None
    #: ``at-sequence``: the first position to read again (a sequence number or an offset).
    position: str | None = None

    def describe(self) -> str:
        """The target as the command line spelled it."""
        if self.kind == "at-timestamp" and self.timestamp is not None:
            moment = datetime.fromtimestamp(self.timestamp, UTC).isoformat()
            return f"--at-timestamp {moment}"
        if self.kind == "at-sequence":
            return f"--at-sequence {self.position}"
        return f"--{self.kind}"


def checkpoint_before(position: str) -> Checkpoint:
    """The checkpoint after which a shard resumes exactly at sequence number ``position``."""
    ordinal = int(position)
    if ordinal < 1:
        raise ValueError(f"sequence number {position!r}: give a positive decimal number")
    return Checkpoint(position=str(ordinal - 1), ordinal=ordinal - 1)


def moment_marker(moment: float) -> Checkpoint:
    """The checkpoint after which a shard resumes at ``moment`` (epoch seconds)."""
    return Checkpoint(position="", ordinal=0, opened_at=moment)


async def replay_checkpoint(
    source: ShardStreamSource[Any], partition: PartitionInfo, target: ReplayTarget, now: float
) -> tuple[Checkpoint, Record | None]:
    """The checkpoint to write for ``partition``, and the first record it resumes at when read."""
    if target.kind == "at-sequence":
        assert target.position is not None
        return checkpoint_before(target.position), None
    if target.kind == "latest":
        return moment_marker(now), None
    if target.kind == "trim-horizon":
        first = await _first_record(source, partition, StartAt(StartingPosition.TRIM_HORIZON), 0.0)
        return (checkpoint_before(first.position), first) if first else (moment_marker(0.0), None)
    assert target.timestamp is not None
    moment = target.timestamp
    if source.supports_at_timestamp:  # the service finds it (arrival times are rounded here)
        at = datetime.fromtimestamp(moment, UTC)
        start, screen = StartAt(StartingPosition.AT_TIMESTAMP, timestamp=at), 0.0
    else:
        start, screen = StartAt(StartingPosition.TRIM_HORIZON), moment
    first = await _first_record(source, partition, start, screen)
    return (checkpoint_before(first.position), first) if first else (moment_marker(moment), None)


async def _first_record(
    source: ShardStreamSource[Any], partition: PartitionInfo, start: StartAt, moment: float
) -> Record | None:
    """The first record from ``start`` that arrived at or after ``moment``; None at the tip."""
    reader = await source.open_reader(partition, start)
    empty_at_tip = 0
    try:
        while True:
            result = await reader.read()
            for record in result.records:
                if record.arrival >= moment:
                    return record
            if result.ended:
                return None
            if result.records or result.behind_ms > 0:
                empty_at_tip = 0
                continue
            empty_at_tip += 1
            if empty_at_tip >= _EMPTY_READS_AT_TIP:
                return None
    finally:
        await reader.aclose()
