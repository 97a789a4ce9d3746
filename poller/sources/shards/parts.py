"""The shard vocabulary Kinesis and DynamoDB Streams share: options, listings, iterator starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from poller.aws_calls import THROTTLING_BACKOFF
from poller.engine.backoff import Backoff
from poller.engine.protocols import PartitionInfo
from poller.records import Record

__all__ = ["IteratorStart", "Page", "ShardDescription", "ShardOptions"]


@dataclass(frozen=True, slots=True)
class ShardOptions:
    """How a shard stream source reads; each service's options set its defaults and limits."""

    #: The service, and its largest GetRecords and listing pages (for messages and checks).
    service: ClassVar[str] = ""
    max_read_limit: ClassVar[int] = 10_000
    max_list_page_size: ClassVar[int] = 10_000

    #: ``Limit`` of each GetRecords call.
    read_limit: int = 10_000
    #: Fewest seconds between two GetRecords on one shard.
    min_read_interval: float = 0.0
    #: Seconds between GetRecords while a shard is idle (caught up and nothing returned).
    idle_read_interval: float = 0.0
    #: Size of each listing page; None lets the service choose.
    list_page_size: int | None = None
    #: Waits between throttled attempts.
    backoff: Backoff = THROTTLING_BACKOFF

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.read_limit <= self.max_read_limit:
            problems.append(f"read_limit {self.read_limit!r} (allowed 1..{self.max_read_limit})")
        if self.min_read_interval < 0:
            problems.append(f"min_read_interval {self.min_read_interval!r} (allowed >= 0)")
        if self.idle_read_interval < self.min_read_interval:
            problems.append(
                f"idle_read_interval {self.idle_read_interval!r} (allowed >= min_read_interval)"
            )
        page = self.list_page_size
        if page is not None and not 1 <= page <= self.max_list_page_size:
            problems.append(f"list_page_size {page!r} (allowed 1..{self.max_list_page_size})")
        if problems:
            raise ValueError(f"invalid {self.service} options: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class ShardDescription:
    """One shard as the service lists it (Kinesis ListShards, DynamoDB DescribeStream)."""

    id: str
    #: The parent shard, then the adjacent parent of a merge (Kinesis only).
    parents: tuple[str, ...] = ()
    #: StartingSequenceNumber as an integer, when listed.
    starting: int | None = None
    #: EndingSequenceNumber as an integer; None while the shard is open.
    ending: int | None = None

    @classmethod
    def from_listing(cls, shard: Mapping[str, Any]) -> ShardDescription:
        """Parse a ``Shard`` entry; both services spell these fields the same way."""
        numbers = shard.get("SequenceNumberRange") or {}
        starting = numbers.get("StartingSequenceNumber")
        ending = numbers.get("EndingSequenceNumber")
        return cls(
            str(shard["ShardId"]),
            tuple(
                str(p)
                for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                if p
            ),
            int(starting) if starting is not None else None,
            int(ending) if ending is not None else None,
        )


@dataclass(frozen=True, slots=True)
class IteratorStart:
    """Where a new shard iterator points, in the services' shared vocabulary."""

    #: TRIM_HORIZON | LATEST | AFTER_SEQUENCE_NUMBER | AT_TIMESTAMP
    type: str
    sequence_number: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords response, as the source translated it for the core."""

    records: Sequence[Record]
    #: The iterator for the next read; None when the shard is closed and read to its end.
    next_iterator: str | None
    #: How far behind the tip the read was, in ms; 0 = caught up.
    behind_ms: int = 0
    #: Children the service named along with the shard's end (Kinesis ChildShards).
    children: tuple[PartitionInfo, ...] = ()
