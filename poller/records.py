"""Records and batches: what flows from a source through the engine to a target.

A :class:`Record` carries a common header that the engine understands (partition, position,
ordinal, ordering key, arrival time, payload size) plus the source's own fields in ``native``,
which the source uses to render the AWS event shape. The engine never looks inside ``native``.

Each source's own record type (``KinesisRecord``, ``KafkaRecord``...) lives in its package and
adds typed accessors; the package face of :mod:`poller` re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

__all__ = ["Batch", "Record", "RecordBuilder", "TumblingWindow", "record_builder"]

RecordT = TypeVar("RecordT", bound="Record")


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


#: Record's fields in constructor order (what :func:`record_builder` fills).
_RECORD_FIELDS = tuple(f.name for f in fields(Record))


#: ``build(partition, position, ordinal, key, data, arrival, size, native)``: a record, exactly as
#: the record type's own constructor makes it.
RecordBuilder = Callable[[str, str, int, str, bytes, float, int, Any], RecordT]


def record_builder(record_type: type[RecordT]) -> RecordBuilder[RecordT]:
    """A faster constructor for ``record_type``, for a source that builds a record per item read.

    A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
    by name; for a stream read thousands of records at a time, that cost more than everything
    else the source does per record. The builder fills the same slots through their descriptors
    directly, which is about twice as fast, and makes an equal record. Only types that add no
    fields of their own to :class:`Record` qualify (ValueError otherwise): the builder knows
    exactly Record's fields and nothing a subclass may need to set or check.
    """
    names = tuple(f.name for f in fields(record_type))
    if names != _RECORD_FIELDS or not issubclass(record_type, Record):
        raise ValueError(
            f"record_builder: {record_type.__name__} has fields {names}; only record types with "
            f"exactly Record's fields {_RECORD_FIELDS} qualify"
        )
    new = object.__new__
    slots = Record.__dict__  # the member descriptors of Record's slots
    set_partition = slots["partition"].__set__
    set_position = slots["position"].__set__
    set_ordinal = slots["ordinal"].__set__
    set_key = slots["key"].__set__
    set_data = slots["data"].__set__
    set_arrival = slots["arrival"].__set__
    set_size = slots["size"].__set__
    set_native = slots["native"].__set__

    def build(
        partition: str,
        position: str,
        ordinal: int,
        key: str,
        data: bytes,
        arrival: float,
        size: int,
        native: Any = None,
    ) -> RecordT:
        record: RecordT = new(record_type)
        set_partition(record, partition)
        set_position(record, position)
        set_ordinal(record, ordinal)
        set_key(record, key)
        set_data(record, data)
        set_arrival(record, arrival)
        set_size(record, size)
        set_native(record, native)
        return record

    build.__doc__ = (
        f"A {record_type.__name__}, built as its constructor would (see record_builder)."
    )
    return build


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
