"""The seams of the engine: what it needs from sources, targets, stores and destinations.

The engine imports no client library. Everything source-specific reaches it through these
Protocols, which live here (not in ``poller.sources``) so that imports only ever point down:
runtime -> sources/targets/destinations/stores -> engine -> records/config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import anyio

from poller.config import ResolvedMapping, StartingPosition
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import ItemId
from poller.records import Batch, Record

__all__ = [
    "BrokerQueueSource",
    "Checkpoint",
    "CheckpointStore",
    "Discard",
    "DiscardSink",
    "EventRenderer",
    "IdempotencyStore",
    "Invocation",
    "MappingRunner",
    "PartitionInfo",
    "PartitionReader",
    "PartitionSource",
    "QueueInfo",
    "QueueSource",
    "ReadResult",
    "ResponseContext",
    "StartAt",
    "Store",
    "Target",
]


# --- sources -------------------------------------------------------------------------------------


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


class EventRenderer(Protocol):
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


class PartitionSource(EventRenderer, Protocol):
    """A log source (Kinesis, DynamoDB Streams): partitions that keep order and can be re-read."""

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


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What a queue source learned about its queue when it started."""

    #: FIFO queue: order is kept per message group (``Record.partition`` is the group id).
    fifo: bool
    #: The queue's visibility timeout in seconds (a message comes back after it unless deleted).
    visibility_timeout: float
    #: ``maxReceiveCount`` of the queue's redrive policy, when it has one.
    max_receive_count: int | None = None
    #: The dead-letter queue of the redrive policy, when it has one.
    dead_letter_target: str | None = None
    #: A message broker's queue (RabbitMQ, ActiveMQ), read through a :class:`BrokerQueueSource`.
    #: A broker has no visibility timeout: an unsettled message stays with its consumer until it
    #: is acknowledged or given back, so the engine gives a failed batch back at once and sends no
    #: heartbeat. The queue is one ordered partition, so a fixed number of pollers run
    #: (``MaximumConcurrency``, default 1: order kept), the batching window starts at the first
    #: message, a failure sends the whole batch back, and a message that failed more than
    #: ``MaximumRedeliveries`` times is dead-lettered by the broker or sent to the on-failure
    #: destination.
    broker: bool = False


class QueueSource(EventRenderer, Protocol):
    """A queue source (SQS): messages are received, then deleted or made visible again.

    ``Record.partition`` is the FIFO message group id ("" on a standard queue), ``position`` the
    message id, ``ordinal`` the order in which this source received the message.
    """

    kind: str
    #: Most messages one receive call may return (SQS: 10).
    max_receive: int

    async def describe(self) -> QueueInfo:
        """Look the queue up (URL, attributes). SourceNotFoundError/SourceError name the queue."""
        ...

    async def receive(self, max_messages: int, wait_seconds: float) -> Sequence[Record]:
        """One receive call (long polling up to ``wait_seconds``); may return nothing."""
        ...

    async def delete(self, records: Sequence[Record]) -> Sequence[Record]:
        """Delete settled messages; return the ones that could not be deleted."""
        ...

    async def change_visibility(
        self, records: Sequence[Record], seconds: float
    ) -> Sequence[Record]:
        """Make messages visible again after ``seconds`` (0 = now); return the ones that failed."""
        ...

    def receive_count(self, record: Record) -> int:
        """How many times the queue has handed this message out (ApproximateReceiveCount)."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (never the client, which the caller owns)."""
        ...


class BrokerQueueSource(QueueSource, Protocol):
    """A message broker queue (RabbitMQ, ActiveMQ): what it adds to :class:`QueueSource`.

    ``delete`` acknowledges. ``change_visibility(records, 0)`` gives back messages whose batch
    failed: it counts a failed delivery for each and returns them *with every message received but
    not yet handed over*, so they come again in queue order. ``receive_count`` is the number of
    deliveries including this one, counted by the broker where it can, else by the source.
    """

    async def release(self, records: Sequence[Record]) -> None:
        """Give back messages that were received but never handed over (no failure counted)."""
        ...

    async def dead_letter(self, records: Sequence[Record]) -> Sequence[Record]:
        """Hand messages to the broker's dead-letter handling; return the ones that failed."""
        ...


# --- targets -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invocation:
    """Facts about one invocation that a target passes on to the handler (Lambda context)."""

    request_id: str
    #: Monotonic deadline (``anyio.current_time()`` clock) of this invocation.
    deadline: float
    function_name: str
    function_arn: str


class Target(Protocol):
    """How a batch reaches user code. Returns the raw outcome; never raises for handler errors."""

    async def invoke(self, batch: Batch, invocation: Invocation) -> Any:
        """Hand the batch over; return an :class:`~poller.engine.outcome.Outcome`."""
        ...


# --- destinations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """The ``responseContext`` of an on-failure record."""

    status_code: int = 200
    executed_version: str = "$LATEST"
    function_error: str | None = "Unhandled"


@dataclass(frozen=True, slots=True)
class Discard:
    """Records the engine gave up on, and why: becomes one on-failure record."""

    mapping_id: str
    partition: str
    records: tuple[Record, ...]
    #: RetryAttemptsExhausted | RecordAgeExceeded | MaximumPayloadSizeExceeded
    condition: str
    #: How many times these records were handed to the target (approximateInvokeCount).
    invoke_count: int
    #: The last invocation's request id, or a fresh one when never invoked.
    request_id: str
    #: None when the records were never invoked (RecordAgeExceeded before ingestion).
    response: ResponseContext | None
    #: Epoch seconds when the records were discarded.
    timestamp: float
    #: The last event handed over (the S3 destination stores it as ``payload``).
    payload: Mapping[str, Any] | None = field(default=None, repr=False)


class DiscardSink(Protocol):
    """Takes discarded records somewhere durable. Raises when it could not; the engine retries."""

    async def deliver(self, discard: Discard) -> None:
        """Record the discard (send the on-failure record) or raise."""
        ...


# --- stores --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last position of a partition whose records are all done."""

    position: str
    ordinal: int
    #: The partition is closed and fully processed: its children may start.
    finished: bool = False
    #: Set on the marker written when a partition first opened at LATEST, before any record
    #: settled (position ""): a restart resumes from this moment instead of a new LATEST, so
    #: records written while the worker was down are not skipped.
    opened_at: float | None = None


class CheckpointStore(Protocol):
    """Durable checkpoints per (mapping, partition) that only move forward."""

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        """The stored checkpoint, or None when the partition was never checkpointed."""
        ...

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` unless the stored one is further (or finished): never backwards."""
        ...


class IdempotencyStore(Protocol):
    """Positions known to have succeeded, so retries and re-reads skip them."""

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        """Record that these positions succeeded; forget them after ``expires_at`` (epoch s)."""
        ...

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        """Which of ``positions`` are recorded as succeeded and not yet expired."""
        ...


class Store(CheckpointStore, IdempotencyStore, Protocol):
    """A whole state store (memory, SQLite; DynamoDB later)."""

    async def purge_expired(self, now: float) -> int:
        """Delete idempotency records that expired before ``now``; return how many."""
        ...

    async def aclose(self) -> None:
        """Flush and close."""
        ...


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

    async def run(self) -> None:
        """Run until :meth:`stop`."""
        ...

    def stop(self) -> None:
        """Stop taking new work; in-flight batches finish."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-able report (checkpoints or pollers, counters)."""
        ...
