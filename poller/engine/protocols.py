"""The engine's seams toward sources: what a log or queue source must do, what it may offer.

The engine imports no client library. Everything source-specific reaches it through these
Protocols, which live here (not in ``poller.sources``) so that imports only ever point down:
runtime -> sources/functions/destinations/stores -> engine -> records/config.

* A **log source** (:class:`PartitionSource`) lists partitions and opens a
  :class:`PartitionReader` per partition.
* A **queue source** receives messages (:class:`QueueReader`) and settles them one of two ways:
  a queue that hides a received message for a visibility timeout (:class:`VisibilityQueue`,
  SQS), or one that keeps it with its consumer until it is acknowledged (:class:`AckQueue`,
  RabbitMQ, ActiveMQ). The engine runs a settlement strategy for each.
* The **codec** (:class:`EventCodec`) renders records in AWS's shapes; it is separate from
  reading, so every target and the on-failure records share it.
* **Capabilities** a source may have are Protocols the engine checks with ``isinstance``:
  :class:`AssignedPartitions`, :class:`RunsInBackground`, :class:`ReportsMetrics`,
  :class:`ReportsTrimming`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

import anyio

from poller.config.fields import StartingPosition
from poller.config.resolved import ResolvedMapping
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import ItemId
from poller.records import Record

__all__ = [
    "AckQueue",
    "AssignedPartitions",
    "EventCodec",
    "MappingRunner",
    "PartitionInfo",
    "PartitionReader",
    "PartitionSource",
    "QueueInfo",
    "QueueReader",
    "QueueSource",
    "ReadResult",
    "ReportsMetrics",
    "ReportsTrimming",
    "RunsInBackground",
    "StartAt",
    "TrimmedRange",
    "VisibilityQueue",
]


# --- the codec -----------------------------------------------------------------------------------


@runtime_checkable
class EventCodec(Protocol):
    """Renders records in the AWS shapes a Lambda-style handler and on-failure records use."""

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """The Lambda event for one invocation, e.g. ``{"Records": [...]}``."""
        ...

    def item_identifier(self, record: Record) -> ItemId:
        """What ``batchItemFailures[].itemIdentifier`` names this record by (as :func:`item_key`
        reads it: a string, or Kafka's (``"topic-N"``, offset))."""
        ...

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """The on-failure record's batch info: its key (``KinesisBatchInfo``) and body."""
        ...


# --- log sources ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """A partition (shard) as listed by the source, with its lineage."""

    id: str
    #: Parent partitions (a split has one, a merge two); they finish before this one starts.
    parents: tuple[str, ...] = ()
    #: True when the source says the partition is closed (it has an ending sequence number).
    closed: bool = False
    #: The last position of a closed partition, when the source knows it.
    ending_position: str | None = None


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where a partition reader starts: after a checkpoint, else at the starting position."""

    starting_position: StartingPosition
    #: Resume strictly after this position (the stored checkpoint); wins over starting_position.
    after: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What one read of a partition returned."""

    records: Sequence[Record]
    #: How far behind the tip the reader is, in ms (Kinesis MillisBehindLatest); 0 = caught up.
    behind_ms: int = 0
    #: The partition is closed and every record of it has now been read.
    ended: bool = False
    #: Partitions the source named as children when this one ended (may be empty).
    children: tuple[PartitionInfo, ...] = ()
    #: The partition is no longer ours (Kafka: the group gave it to another consumer). The runner
    #: lets the batch in flight finish, settles it, and stops without marking the partition done.
    revoked: bool = False


class PartitionReader(Protocol):
    """Reads one partition in order. Handles its own iterators, renewal and throttling backoff."""

    async def read(self) -> ReadResult:
        """Return the next records (possibly none). Never skips a record."""
        ...

    async def aclose(self) -> None:
        """Release the reader."""
        ...


class PartitionSource(Protocol):
    """A log source (Kinesis, DynamoDB Streams, Kafka): partitions that keep order."""

    #: Short name used in logs and metrics ("kinesis").
    kind: str
    #: Fewest seconds between two reads of one partition (Kinesis: 0.2 = 5 reads/s).
    min_read_interval: float
    #: Seconds between reads of a caught-up partition, as AWS polls (Kinesis 1.0, DynamoDB 0.25).
    idle_poll_interval: float
    #: Whether readers can start AT_TIMESTAMP (Kinesis can, DynamoDB Streams cannot). When they
    #: cannot, the engine resumes a LATEST start marker from TRIM_HORIZON and skips what arrived
    #: before the marker.
    supports_at_timestamp: bool

    async def list_partitions(self) -> Sequence[PartitionInfo]:
        """Every partition the source has now, with lineage (follows pagination)."""
        ...

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> PartitionReader:
        """A reader positioned at ``start`` on ``partition``."""
        ...

    async def aclose(self) -> None:
        """Release clients."""
        ...


# --- capabilities a source may have --------------------------------------------------------------


@runtime_checkable
class AssignedPartitions(Protocol):
    """Partitions are handed out by someone else (a Kafka consumer group) and may change."""

    async def wait_for_partition_change(self) -> None:
        """Return once partitions were assigned or revoked since the last call."""
        ...


@runtime_checkable
class RunsInBackground(Protocol):
    """The source runs a task of its own while its partitions run (Kafka: the committer)."""

    async def run_background(self) -> None:
        """Run until cancelled (after every partition stopped)."""
        ...


@runtime_checkable
class ReportsMetrics(Protocol):
    """The source counts things of its own (Kafka: offset lag, commits)."""

    def extra_metrics(self) -> Mapping[str, int]:
        """Metrics added to the mapping's, under AWS's names."""
        ...


@dataclass(frozen=True, slots=True)
class TrimmedRange:
    """Records the service trimmed (retention passed) before they were read: they are lost."""

    shard: str
    #: The last record handed out (or the checkpoint) before the gap; None: from the start.
    after: str | None
    #: The first record read after resuming at the oldest one; None if none came before the
    #: reader ended or closed.
    resumed_at: str | None
    #: Epoch seconds when the trimming was noticed.
    noticed_at: float


@runtime_checkable
class ReportsTrimming(Protocol):
    """The service may trim records before they are read (DynamoDB Streams keeps 24 hours)."""

    @property
    def trimmed_events(self) -> int:
        """How many times a reader found unread records trimmed and resumed at the oldest one."""
        ...

    @property
    def trimmed_ranges(self) -> Sequence[TrimmedRange]:
        """The ranges lost, oldest first."""
        ...


# --- queue sources -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What a queue source learned about its queue when it started."""

    #: FIFO queue: order is kept per message group (``Record.partition`` is the group id).
    fifo: bool = False
    #: The queue's visibility timeout in seconds (a message comes back after it unless deleted);
    #: 0 for a queue that keeps messages with their consumer (a broker).
    visibility_timeout: float = 0.0
    #: ``maxReceiveCount`` of the queue's redrive policy, when it has one.
    max_receive_count: int | None = None
    #: The dead-letter queue of the redrive policy, when it has one.
    dead_letter_target: str | None = None


class QueueReader(Protocol):
    """Receiving from a queue: what both kinds of queue source do.

    ``Record.partition`` is the ordering group (the FIFO message group id, "" on a standard
    queue; the queue for a broker), ``position`` the message id, ``ordinal`` the order in which
    this source received the message.
    """

    kind: str
    #: Most messages one receive call may return (SQS: 10).
    max_receive: int

    async def describe(self) -> QueueInfo:
        """Look the queue up (URL, attributes). SourceNotFoundError/SourceError name the queue."""
        ...

    async def receive(self, max_messages: int, wait_seconds: float) -> Sequence[Record]:
        """One receive (waiting up to ``wait_seconds`` for a first message); may return nothing."""
        ...

    def receive_count(self, record: Record) -> int:
        """How many times the queue handed this message out, this delivery included."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (never the client, which the caller owns)."""
        ...


class VisibilityQueue(QueueReader, Protocol):
    """A queue that hides a received message for its visibility timeout (SQS).

    A message that is neither deleted nor made visible again comes back when its visibility
    timeout ends; the engine extends it while a handler runs.
    """

    async def delete(self, records: Sequence[Record]) -> Sequence[Record]:
        """Delete settled messages; return the ones that could not be deleted."""
        ...

    async def change_visibility(
        self, records: Sequence[Record], seconds: float
    ) -> Sequence[Record]:
        """Make messages visible again after ``seconds`` (0 = now); return the ones that failed."""
        ...


@runtime_checkable
class AckQueue(QueueReader, Protocol):
    """A queue that keeps a message with its consumer until it is settled (RabbitMQ, ActiveMQ).

    ``receive_count`` counts deliveries by the broker where it can, else by the source.
    """

    async def ack(self, records: Sequence[Record]) -> Sequence[Record]:
        """Acknowledge: the messages are done. Return the ones that could not be acknowledged."""
        ...

    async def give_back(self, records: Sequence[Record]) -> None:
        """Return a failed batch: count a failed delivery for each, and have them delivered
        again, with everything received but not yet handed over, before anything later."""
        ...

    async def release(self, records: Sequence[Record]) -> None:
        """Return messages that were received but never handed over (no failure counted)."""
        ...

    async def dead_letter(self, records: Sequence[Record]) -> Sequence[Record]:
        """Hand messages to the broker's dead-letter handling; return the ones that failed."""
        ...


#: What a queue mapping reads: one of the two kinds of queue.
QueueSource: TypeAlias = VisibilityQueue | AckQueue


# --- runners -------------------------------------------------------------------------------------


class MappingRunner(Protocol):
    """What the runtime needs of a running mapping, stream or queue alike."""

    mapping: ResolvedMapping
    counters: MappingCounters
    #: Set once :meth:`run` has returned.
    done: anyio.Event

    @property
    def idle(self) -> bool:
        """Caught up with the source, nothing in flight."""
        ...

    @property
    def ready(self) -> bool:
        """The source answered once: the mapping reads it (a readiness probe asks)."""
        ...

    async def run(self) -> None:
        """Run until :meth:`stop`."""
        ...

    def stop(self) -> None:
        """Stop taking new work; in-flight batches finish."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-able report (checkpoints or pollers, counters)."""
        ...
