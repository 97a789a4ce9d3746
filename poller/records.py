"""Records and batches: what flows from a source through the engine to a target.

A :class:`Record` carries a common header that the engine understands (partition, position,
ordinal, ordering key, arrival time, payload size) plus the source's own fields in ``native``,
which the source uses to render the AWS event shape. The engine never looks inside ``native``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batch", "KinesisRecord", "Record", "SqsRecord"]


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
    #: The payload bytes.
    data: bytes
    #: Approximate arrival time at the source, epoch seconds; drives MaximumRecordAgeInSeconds.
    arrival: float
    #: Bytes this record adds to an invocation payload; drives the 6 MB batch cap.
    size: int
    #: The source's raw record, kept so the source can render the AWS event exactly.
    native: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class KinesisRecord(Record):
    """A Kinesis Data Streams record, as typed handlers receive it."""

    @property
    def sequence_number(self) -> str:
        """The record's sequence number (a big decimal string)."""
        return self.position

    @property
    def partition_key(self) -> str:
        """The partition key the producer gave."""
        return self.key

    @property
    def shard_id(self) -> str:
        """The shard the record was read from."""
        return self.partition


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


@dataclass(frozen=True, slots=True)
class SqsRecord(Record):
    """An SQS message, as typed handlers receive it.

    ``partition`` is the FIFO message group id ("" on a standard queue), ``position`` the message
    id, ``data`` the body's bytes; ``native`` holds the message as ReceiveMessage returned it.
    """

    @property
    def message_id(self) -> str:
        """The message id (what ``batchItemFailures`` names)."""
        return self.position

    @property
    def body(self) -> str:
        """The message body."""
        return self.data.decode("utf-8", errors="replace")

    @property
    def receipt_handle(self) -> str:
        """The receipt handle of this delivery."""
        return str(self.native["ReceiptHandle"])

    @property
    def attributes(self) -> dict[str, str]:
        """System attributes (ApproximateReceiveCount, SentTimestamp, MessageGroupId, ...)."""
        return dict(self.native.get("Attributes") or {})

    @property
    def message_attributes(self) -> dict[str, Any]:
        """User message attributes, as ReceiveMessage returned them."""
        return dict(self.native.get("MessageAttributes") or {})

    @property
    def group_id(self) -> str | None:
        """The FIFO message group id, or None on a standard queue."""
        return self.partition or None

    @property
    def receive_count(self) -> int:
        """How many times SQS has handed this message out (1 on the first delivery)."""
        return int(self.attributes.get("ApproximateReceiveCount", "1"))
