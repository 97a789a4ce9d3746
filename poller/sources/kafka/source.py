"""Kafka (Amazon MSK or self-managed) as a partition source, through one aiokafka consumer.

A Kafka mapping is one consumer in the mapping's consumer group, subscribed to the one topic. The
group decides which partitions are ours; :meth:`KafkaSource.list_partitions` answers with the
current assignment, and the stream engine runs one :class:`~poller.engine.streams.partition.PartitionRunner`
per assigned partition, exactly as for shards: one batch in flight per partition, partitions in
parallel, a failing partition blocked while the others go on.

What is Kafka's own here:

- **Reads.** Each partition's reader asks the shared consumer for that partition's records only
  (``getmany(tp)``), waiting up to ``read_wait_seconds`` when there are none. aiokafka prefetches
  one response per partition and fetches the next only once it was taken, so a blocked partition
  (its runner no longer reading) holds at most one response in memory: that is the pause.
- **Progress.** Checkpoints are the group's committed offsets
  (:class:`~poller.sources.kafka.offsets.CommittedOffsetStore`), never past an unsettled record.
  Each settled prefix queues its offset and the lane goes on; the committer
  (:mod:`~poller.sources.kafka.commits`) sends every partition's latest queued offset in one
  request, as fast as the broker answers, and revocation and shutdown flush the queue first. A
  partition with no committed offset starts at the mapping's StartingPosition; a LATEST start
  commits its first offset at once, so a restart does not skip what arrived meanwhile.
- **Rebalances.** When the group takes partitions away, their readers answer ``revoked``; each
  runner finishes the batch in flight and commits it, and the consumer waits up to
  ``revoke_grace_seconds`` for that before it lets the rebalance go on. A batch still running
  after that is abandoned: its offsets are never committed by us and the next owner reads it
  again (at-least-once). New assignments wake the mapping at once.
- **Broker loss.** aiokafka reconnects by itself; reads and commits that fail are retried with
  backoff by the engine, nothing is skipped, and the log says what failed.
- The event and on-failure shapes are the codec's (:mod:`~poller.sources.kafka.codec`).

The consumer never leaves the group for being "idle": a partition blocked on a failing batch is
not a stuck consumer, so ``max_poll_interval_ms`` is set far beyond any retry schedule.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from poller.config.fields import StartingPosition
from poller.config.resolved import ResolvedMapping
from poller.engine.protocols import PartitionInfo, StartAt
from poller.errors import SourceError
from poller.sources.kafka.codec import KafkaCodec
from poller.sources.kafka.commits import OffsetCommitter, partition_id, topic_partition
from poller.sources.kafka.connection import KafkaConnection, kafka_connection
from poller.sources.kafka.destination import KafkaTopicDestination
from poller.sources.kafka.offsets import CommittedOffsetStore
from poller.sources.kafka.options import KafkaSettings
from poller.sources.kafka.reader import KafkaReader
from poller.sources.kafka.records import KafkaRecord
from poller.sources.spec import OpenedSource, SourceEnvironment

if TYPE_CHECKING:
    from poller.engine.protocols import (
        PartitionReader,
    )

__all__ = ["KafkaOptions", "KafkaSource", "open_kafka"]

_log = structlog.get_logger("poller.sources.kafka")

#: aiokafka leaves the group when nothing read for this long; a blocked partition is not idle.
_NEVER_IDLE_MS = 7 * 24 * 3600 * 1000
#: Largest request the on-failure producer sends (the broker's own limit applies too).
_MAX_DESTINATION_REQUEST = 64 * 1024 * 1024
#: Bytes a record adds to an event besides its base64 key and value (field names, numbers).
_RECORD_OVERHEAD = 160


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """How the consumer behaves in its group; the defaults suit production clusters."""

    #: The group drops a member it has not heard from for this long (aiokafka's default).
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    #: How long the group waits for members to rejoin during a rebalance.
    rebalance_timeout_ms: int | None = None
    #: Longest wait of one read for new records of a partition.
    read_wait_seconds: float = 0.5
    #: On revocation, how long batches in flight get to finish and commit before the rebalance
    #: goes on without them.
    revoke_grace_seconds: float = 30.0
    #: Most bytes fetched per partition per request (Kafka's default, 1 MiB).
    max_partition_fetch_bytes: int = 1024 * 1024
    client_id: str = "poller"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards the group's rebalance callbacks to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source._on_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._on_assigned(frozenset(assigned))


class KafkaSource:
    """One mapping's consumer: the topic's assigned partitions as engine partitions."""

    kind = "kafka"
    #: Reads wait on the broker (up to ``read_wait_seconds``) rather than being paced.
    min_read_interval = 0.0
    idle_poll_interval = 0.0
    supports_at_timestamp = True

    def __init__(
        self,
        mapping: ResolvedMapping,
        connection: KafkaConnection,
        options: KafkaOptions | None = None,
    ) -> None:
        settings = mapping.settings
        if not isinstance(settings, KafkaSettings) or not settings.topic:
            raise SourceError("a Kafka source needs the mapping's topic and consumer group")
        self._mapping = mapping
        self._topic = settings.topic
        self._group = settings.consumer_group_id
        self._connection = connection
        self._options = options or KafkaOptions()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._start_lock = anyio.Lock()
        self._assigned: frozenset[TopicPartition] = frozenset()
        #: Revoked partitions whose batches in flight may still commit (during the revoke grace).
        self._draining: set[TopicPartition] = set()
        self._readers: dict[TopicPartition, KafkaReader] = {}
        self._changed = anyio.Event()
        #: Records behind the partition's high watermark after the last read, per partition.
        self._lag: dict[str, int] = {}
        self._log = _log.bind(topic=self._topic, group=self._group)
        self._committer = OffsetCommitter(
            consumer=lambda: self._consumer,
            owns=lambda tp: tp in self._assigned or tp in self._draining,
            log=self._log,
        )
        #: Renders this topic's records in AWS's shapes.
        self.codec = KafkaCodec(connection.bootstrap_servers, mapping.event_source_arn)

    # --- lifecycle -----------------------------------------------------------------------------

    async def _started(self) -> AIOKafkaConsumer:
        async with self._start_lock:
            if self._consumer is not None:
                return self._consumer
            options = self._options
            consumer = AIOKafkaConsumer(
                group_id=self._group,
                client_id=options.client_id,
                enable_auto_commit=False,
                # Only used when a committed offset is out of range (retention deleted it):
                # resume at the oldest record left rather than skipping to the end.
                auto_offset_reset="earliest",
                session_timeout_ms=options.session_timeout_ms,
                heartbeat_interval_ms=options.heartbeat_interval_ms,
                rebalance_timeout_ms=options.rebalance_timeout_ms,
                max_poll_interval_ms=_NEVER_IDLE_MS,
                max_partition_fetch_bytes=options.max_partition_fetch_bytes,
                **self._connection.client_kwargs(),
            )
            consumer.subscribe([self._topic], listener=_Listener(self))
            try:
                await consumer.start()
            except (KafkaError, KeyError) as error:  # KeyError: a refused SCRAM login
                await consumer.stop()
                reason = await self._connection.unreachable(error)
                raise SourceError(f"{reason} (mapping {self._mapping.mapping_id})") from None
            self._consumer = consumer
            self._log.info("consumer started; joining the group")
            return consumer

    def opened(self) -> OpenedSource:
        """This source ready to run: the consumer, its codec, its checkpoints (the group's
        committed offsets) and its ``kafka://`` destinations (a producer on the cluster)."""
        return OpenedSource(
            self,
            self.codec,
            checkpoints=lambda store: CommittedOffsetStore(store, self),
            destination=lambda uri: KafkaTopicDestination(uri, self.producer),
        )

    async def producer(self) -> AIOKafkaProducer:
        """A producer on the same cluster (the ``kafka://`` on-failure destination), started once."""
        async with self._start_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    client_id=f"{self._options.client_id}-on-failure",
                    acks="all",
                    # Discarded records include ones over the 6 MB payload cap: let the broker,
                    # not the client's 1 MB default, decide what the topic takes.
                    max_request_size=_MAX_DESTINATION_REQUEST,
                    **self._connection.client_kwargs(),
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def aclose(self) -> None:
        """Leave the group and close the clients."""
        with anyio.CancelScope(shield=True):
            await self.flush_commits()
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        with anyio.CancelScope(shield=True):
            if producer is not None:
                await producer.stop()
            if consumer is not None:
                await consumer.stop()

    # --- the group -----------------------------------------------------------------------------

    async def _on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        mine = {tp for tp in revoked if tp.topic == self._topic}
        self._assigned = self._assigned - mine
        draining = [self._readers[tp] for tp in mine if tp in self._readers]
        for reader in draining:
            reader.revoke()
        self._signal_change()
        if not draining:
            return
        self._log.info("partitions revoked", partitions=sorted(r.partition_id for r in draining))
        # Until this callback returns the group waits, and the partitions are still ours to
        # commit: batches in flight settle and commit now.
        self._draining |= mine
        try:
            with anyio.move_on_after(self._options.revoke_grace_seconds) as scope:
                for reader in draining:
                    await reader.closed.wait()
            # What the finished batches settled is committed before the partitions go.
            with anyio.CancelScope(shield=True):
                await self.flush_commits({partition_id(tp) for tp in mine})
        finally:
            self._draining -= mine
        if scope.cancelled_caught:
            self._log.warning(
                "batches in flight did not finish within the revoke grace period; their "
                "offsets stay uncommitted and the partitions' next owner reads them again",
                partitions=sorted(r.partition_id for r in draining if not r.closed.is_set()),
                grace_seconds=self._options.revoke_grace_seconds,
            )

    def _on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self._assigned = frozenset(tp for tp in assigned if tp.topic == self._topic)
        self._log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))
        self._signal_change()

    def _signal_change(self) -> None:
        self._changed.set()

    async def wait_for_partition_change(self) -> None:
        """Return once the group assigned or revoked partitions since the last call."""
        await self._changed.wait()
        self._changed = anyio.Event()

    # --- PartitionSource -----------------------------------------------------------------------

    async def list_partitions(self) -> Sequence[PartitionInfo]:
        """The partitions the group gives this consumer now (none until it has joined)."""
        await self._started()
        return [
            PartitionInfo(partition_id(tp))
            for tp in sorted(self._assigned, key=lambda t: t.partition)
        ]

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> PartitionReader:
        """A reader of one assigned partition, positioned at ``start``."""
        consumer = await self._started()
        tp = topic_partition(partition.id)
        reader = KafkaReader(self, consumer, tp, partition.id)
        if tp not in consumer.assignment():
            reader.revoke()  # taken away between listing and opening: the runner just stops
            return reader
        try:
            offset = await self._seek(consumer, tp, start)
        except IllegalStateError:
            reader.revoke()
            return reader
        # Everything before the first offset read counts as committed (CommittedEventCount
        # counts what this consumer commits past it).
        self._committer.note_committed(partition.id, offset)
        self._readers[tp] = reader
        return reader

    async def _seek(self, consumer: AIOKafkaConsumer, tp: TopicPartition, start: StartAt) -> int:
        # Let the consumer settle its own starting position for the new assignment first: done
        # in the background, it would otherwise overwrite the seek below.
        await consumer.position(tp)
        if start.after is not None:
            offset = int(start.after) + 1
        elif start.starting_position is StartingPosition.TRIM_HORIZON:
            offset = (await consumer.beginning_offsets([tp]))[tp]
        elif start.starting_position is StartingPosition.AT_TIMESTAMP and start.timestamp:
            wanted = int(start.timestamp.timestamp() * 1000)
            found = (await consumer.offsets_for_times({tp: wanted})).get(tp)
            # No record at or after the time: start at the end. (Some brokers answer "none" as
            # offset 0 with timestamp -1; that is none too.)
            if found is None or found.timestamp < 0:
                offset = (await consumer.end_offsets([tp]))[tp]
            else:
                offset = found.offset
        else:
            offset = (await consumer.end_offsets([tp]))[tp]
        # An explicit offset fixes a LATEST start's first offset (which the store then commits).
        consumer.seek(tp, offset)
        return int(offset)

    def _forget(self, reader: KafkaReader) -> None:
        if self._readers.get(reader.tp) is reader:
            del self._readers[reader.tp]
        self._lag.pop(reader.partition_id, None)

    # --- offsets (the checkpoint store's side) --------------------------------------------------

    async def committed_offset(self, partition: str) -> int | None:
        """The group's committed offset of a partition (the next offset to read), or None."""
        consumer = await self._started()
        tp = topic_partition(partition)
        try:
            offset = await consumer.committed(tp)
        except IllegalStateError:
            return None
        if offset is not None and offset >= 0:
            self._committer.note_committed(partition, offset)
            return int(offset)
        return None

    async def current_offset(self, partition: str) -> int:
        """The next offset the partition's reader will read."""
        consumer = await self._started()
        return int(await consumer.position(topic_partition(partition)))

    async def commit_offset(self, partition: str, next_offset: int) -> bool:
        """Queue ``next_offset`` for the committer; False when the partition is no longer ours.

        The batch's lane goes on at once: :meth:`run_background` commits every partition's
        latest settled offset in one request (see :mod:`poller.sources.kafka.commits`).
        """
        return self._committer.queue(partition, next_offset)

    async def run_background(self) -> None:
        """Commit queued offsets until cancelled, then flush what is left (shielded)."""
        await self._committer.run()

    async def flush_commits(self, partitions: Collection[str] | None = None) -> bool:
        """Commit the queued offsets (of ``partitions``, or all) in one request now."""
        return await self._committer.flush(partitions)

    # --- metrics ------------------------------------------------------------------------------

    def extra_metrics(self) -> dict[str, int]:
        """OffsetLag (sum and max over partitions) and the commit counters."""
        lags = list(self._lag.values())
        return {
            "SumOffsetLag": sum(lags),
            "MaxOffsetLag": max(lags, default=0),
            "CommittedEventCount": self._committer.committed_events,
            "CommitErrorCount": self._committer.commit_errors,
        }

    # --- records and rendering ------------------------------------------------------------------

    def to_record(self, partition_id: str, message: Any) -> KafkaRecord:
        # The hot path of a busy topic: positional arguments, the client's record as ``native``.
        value: bytes | None = message.value
        key: bytes | None = message.key
        size = _RECORD_OVERHEAD + (len(value) if value else 0) * 4 // 3
        if key:
            size += len(key) * 4 // 3
        if message.headers:
            size += sum(len(n) + 4 * len(v or b"") for n, v in message.headers)
        offset: int = message.offset
        return KafkaRecord(
            partition_id,
            str(offset),
            offset,
            "",
            value or b"",
            message.timestamp / 1000,
            size,
            message,
        )


async def open_kafka(mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
    """A Kafka mapping's source, ready to run (the spec's opener): its connection from the
    mapping (and MSK, and secrets), its group settings from ``[worker]``."""
    session_ms = int(environment.worker.kafka_session_timeout_seconds * 1000)
    options = KafkaOptions(
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(100, session_ms // 3),
        rebalance_timeout_ms=session_ms,
        revoke_grace_seconds=environment.worker.kafka_revoke_grace_seconds,
    )
    connection = await kafka_connection(mapping, environment.clients)
    return KafkaSource(mapping, connection, options).opened()
