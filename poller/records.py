"""Records and batches: what flows from a source through the engine to a target.

A :class:`Record` carries a common header that the engine understands (partition, position,
ordinal, ordering key, arrival time, payload size) plus the source's own fields in ``native``,
which the source uses to render the AWS event shape. The engine never looks inside ``native``.

Each source's own record type (``KinesisRecord``, ``KafkaRecord``...) lives in its package and
adds typed accessors; the package face of :mod:`poller` re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batch", "Record", "TumblingWindow"]


@dataclass(frozen=True, slots=True)
class Record:
    """One item read from a source, with the header the engine needs."""

    #: The unit of ordering: a Kinesis shard id, a Kafka ``topic-partition``, ...
    partition: str
    #: The record's position as the source spells it (a sequence number, an offset).
    position: str
    #: The position as an integer, for comparisons (Kinesis sequence numbers are big decimals).
    ordinal: int
    #: The ordering key inside the partition (Kinesis partition key); lanes hash on it.
    key: str
    #: The payload bytes (kept out of ``repr``, so a record never carries its payload into a log).
    data: bytes = field(repr=False)
    #: Approximate arrival time at the source, epoch seconds; drives MaximumRecordAgeInSeconds.
    arrival: float
    #: Bytes this record adds to an invocation payload; drives the 6 MB batch cap.
    size: int
    #: The source's raw record, kept so the source can render the AWS event exactly.
    native: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TumblingWindow:
    """The tumbling window (``TumblingWindowInSeconds``) an invocation belongs to, and its state."""

    #: Epoch seconds; windows are aligned to multiples of their length since the epoch.
    start: int
    end: int
    #: What the previous invocation of this window and shard returned as ``state`` (``{}`` at
    #: the window's start, or after it was terminated early).
    state: Any
    #: The event's ``eventSourceARN``.
    source_arn: str
    #: The last invocation of the window: no records, the state to act on.
    final: bool = False
    #: The window ends early because its state grew over 1 MB; it goes on with a fresh state.
    terminated_early: bool = False


@dataclass(frozen=True, slots=True)
class Batch(Sequence[Record]):
    """Records of one partition handed to a target in one invocation.

    A batch is immutable: retries and bisection make new batches, so result objects are never
    shared between attempts.
    """

    mapping: str
    partition: str
    records: tuple[Record, ...]
    #: Unique id of this invocation's batch, carried in logs.
    batch_id: str
    #: How many times these records have been handed over, this invocation included (1-based).
    attempt: int = 1
    #: The tumbling window of this invocation, when the mapping has one.
    window: TumblingWindow | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: Any) -> Any:
        return self.records[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def payload_size(self) -> int:
        """The sum of the records' payload contributions, in bytes."""
        return sum(r.size for r in self.records)
