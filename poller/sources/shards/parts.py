"""The shard vocabulary Kinesis and DynamoDB Streams share: options, listings, iterator starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from poller.engine.backoff import Backoff
from poller.engine.protocols import PartitionInfo
from poller.records import Record

__all__ = ["IteratorStart", "Page", "ShardDescription", "ShardOptions", "check_options"]


class ShardOptions(Protocol):
    """The options the core reads; each source's options dataclass has (at least) these."""

    @property
    def read_limit(self) -> int:
        """``Limit`` of each GetRecords call."""
        ...

    @property
    def min_read_interval(self) -> float:
        """Fewest seconds between two GetRecords on one shard."""
        ...

    @property
    def idle_read_interval(self) -> float:
        """Seconds between GetRecords while a shard is idle (caught up, nothing returned)."""
        ...

    @property
    def backoff(self) -> Backoff:
        """Waits between throttled attempts."""
        ...


def check_options(
    service: str,
    *,
    read_limit: int,
    max_read_limit: int,
    min_read_interval: float,
    idle_read_interval: float,
    list_page_size: int | None,
    max_list_page_size: int,
) -> None:
    """Raise ValueError naming every option outside what ``service`` allows."""
    problems = []
    if not 1 <= read_limit <= max_read_limit:
        problems.append(f"read_limit {read_limit!r} (allowed 1..{max_read_limit})")
    if min_read_interval < 0:
        problems.append(f"min_read_interval {min_read_interval!r} (allowed >= 0)")
    if idle_read_interval < min_read_interval:
        problems.append(f"idle_read_interval {idle_read_interval!r} (allowed >= min_read_interval)")
    if list_page_size is not None and not 1 <= list_page_size <= max_list_page_size:
        problems.append(f"list_page_size {list_page_size!r} (allowed 1..{max_list_page_size})")
    if problems:
        raise ValueError(f"invalid {service} options: " + "; ".join(problems))


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
