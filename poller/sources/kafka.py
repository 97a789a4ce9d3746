"""Kafka (Amazon MSK or self-managed) as a partition source, through one aiokafka consumer.

A Kafka mapping is one consumer in the mapping's consumer group, subscribed to the one topic. The
group decides which partitions are ours; :meth:`KafkaSource.list_partitions` answers with the
current assignment, and the stream engine runs one :class:`~poller.engine.partition.PartitionRunner`
per assigned partition, exactly as for shards: one batch in flight per partition, partitions in
parallel, a failing partition blocked while the others go on.

What is Kafka's own here:

- **Reads.** Each partition's reader asks the shared consumer for that partition's records only
  (``getmany(tp)``), waiting up to ``read_wait_seconds`` when there are none. aiokafka prefetches
  one response per partition and fetches the next only once it was taken, so a blocked partition
  (its runner no longer reading) holds at most one response in memory: that is the pause.
- **Progress.** Checkpoints are the group's committed offsets
  (:class:`~poller.stores.kafka_offsets.CommittedOffsetStore`), never past an unsettled record.
  Each settled prefix queues its offset and the lane goes on; :meth:`KafkaSource.run_background`
  commits every partition's latest queued offset in one request, as fast as the broker answers,
  and revocation and shutdown flush the queue first. A partition with no committed offset starts at the
  mapping's StartingPosition; a LATEST start commits its first offset at once, so a restart does
  not skip what arrived meanwhile.
- **Rebalances.** When the group takes partitions away, their readers answer ``revoked``; each
  runner finishes the batch in flight and commits it, and the consumer waits up to
  ``revoke_grace_seconds`` for that before it lets the rebalance go on. A batch still running
  after that is abandoned: its offsets are never committed by us and the next owner reads it
  again (at-least-once). New assignments wake the mapping at once.
- **Broker loss.** aiokafka reconnects by itself; reads and commits that fail are retried with
  backoff by the engine, nothing is skipped, and the log says what failed.
- The event and on-failure shapes: AWS's ``aws:kafka`` / ``SelfManagedKafka`` event and
  ``KafkaBatchInfo``.

The consumer never leaves the group for being "idle": a partition blocked on a failing batch is
not a stuck consumer, so ``max_poll_interval_ms`` is set far beyond any retry schedule.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)

from poller.config import ResolvedMapping, StartingPosition
from poller.engine.backoff import Backoff
from poller.engine.protocols import PartitionInfo, ReadResult, StartAt
from poller.errors import SourceError
from poller.records import KafkaRecord, Record
from poller.sources.credentials import (
    read_basic_auth,
    read_client_certificate,
    read_root_certificate,
)

if TYPE_CHECKING:
    from poller.aws import AwsClients
    from poller.engine.protocols import PartitionReader, PartitionSource

__all__ = ["KafkaConnection", "KafkaOptions", "KafkaSource", "kafka_connection"]

_log = structlog.get_logger("poller.sources.kafka")

#: aiokafka leaves the group when nothing read for this long; a blocked partition is not idle.
_NEVER_IDLE_MS = 7 * 24 * 3600 * 1000
_COMMIT_BACKOFF = Backoff(0.2, 5.0)
#: Largest request the on-failure producer sends (the broker's own limit applies too).
_MAX_DESTINATION_REQUEST = 64 * 1024 * 1024
#: Bytes a record adds to an event besides its base64 key and value (field names, numbers).
_RECORD_OVERHEAD = 160

_SASL_MECHANISMS = {
    "BASIC_AUTH": "PLAIN",
    "SASL_SCRAM_256_AUTH": "SCRAM-SHA-256",
    "SASL_SCRAM_512_AUTH": "SCRAM-SHA-512",
}


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


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """How to reach a cluster: bootstrap servers and the security settings of its clients."""

    bootstrap_servers: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka consumers, producers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        return kwargs


async def kafka_connection(mapping: ResolvedMapping, clients: AwsClients | None) -> KafkaConnection:
    """Bootstrap servers and security for a mapping, reading secrets and MSK as needed.

    BASIC_AUTH and the SCRAM types are SASL over TLS (AWS offers SASL only with TLS);
    CLIENT_CERTIFICATE_TLS_AUTH is mutual TLS; SERVER_ROOT_CA_CERTIFICATE trusts a private CA.
    Without any of them the connection is plaintext, as a local cluster usually is.
    """
    access = {a.type: a for a in mapping.source_access}
    sasl_type = next((t for t in _SASL_MECHANISMS if t in access), None)
    client_cert = access.get("CLIENT_CERTIFICATE_TLS_AUTH")
    root_ca = access.get("SERVER_ROOT_CA_CERTIFICATE")
    servers = mapping.endpoints or await _msk_bootstrap(mapping, clients, sasl_type, client_cert)
    tls = sasl_type is not None or client_cert is not None or root_ca is not None
    context: ssl.SSLContext | None = None
    if tls:
        cadata = await read_root_certificate(root_ca, clients) if root_ca else None
        context = ssl.create_default_context(cadata=cadata)
        if client_cert is not None:
            certificate = await read_client_certificate(client_cert, clients)
            _load_client_certificate(
                context,
                certificate.certificate,
                certificate.private_key,
                certificate.private_key_password,
            )
    if sasl_type is not None:
        auth = await read_basic_auth(access[sasl_type], clients)
        return KafkaConnection(
            tuple(servers),
            "SASL_SSL",
            _SASL_MECHANISMS[sasl_type],
            auth.username,
            auth.password,
            context,
        )
    return KafkaConnection(tuple(servers), "SSL" if tls else "PLAINTEXT", ssl_context=context)


def _load_client_certificate(
    context: ssl.SSLContext, certificate: str, key: str, password: str | None
) -> None:
    # ``ssl`` loads certificates from files only: write them to a private directory that is
    # removed as soon as they are loaded.
    with tempfile.TemporaryDirectory(prefix="poller-tls-") as directory:
        cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert_path.write_text(certificate)
        key_path.write_text(key)
        key_path.chmod(0o600)
        try:
            context.load_cert_chain(cert_path, key_path, password=password)
        except (ssl.SSLError, ValueError) as error:
            raise SourceError(
                f"SourceAccessConfigurations CLIENT_CERTIFICATE_TLS_AUTH: cannot load the "
                f"certificate and key ({error})"
            ) from None


async def _msk_bootstrap(
    mapping: ResolvedMapping, clients: AwsClients | None, sasl_type: str | None, cert: object
) -> list[str]:
    """MSK's GetBootstrapBrokers, choosing the listener that matches the authentication."""
    if not mapping.event_source_arn or clients is None:
        raise SourceError(
            "Kafka mapping: no bootstrap servers (give SelfManagedEventSource.Endpoints."
            "KAFKA_BOOTSTRAP_SERVERS or an MSK cluster ARN)"
        )
    client = await clients.client("kafka")
    try:
        brokers = await client.get_bootstrap_brokers(ClusterArn=mapping.event_source_arn)
    except Exception as error:
        raise SourceError(
            f"cannot look up the bootstrap brokers of {mapping.event_source_arn}: {error}"
        ) from None
    if sasl_type in ("SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH"):
        keys = ["BootstrapBrokerStringSaslScram"]
    elif cert is not None:
        keys = ["BootstrapBrokerStringTls"]
    else:
        keys = ["BootstrapBrokerString", "BootstrapBrokerStringTls"]
    for key in keys:
        if brokers.get(key):
            return [b.strip() for b in str(brokers[key]).split(",") if b.strip()]
    raise SourceError(
        f"{mapping.event_source_arn} has no {' or '.join(keys)} listener for this mapping's "
        "authentication"
    )


def _timestamp_text(milliseconds: int) -> str:
    instant = datetime.fromtimestamp(milliseconds / 1000, UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mapping.topic is None or mapping.consumer_group_id is None:
            raise SourceError("a Kafka source needs the mapping's topic and consumer group")
        self._mapping = mapping
        self._topic = mapping.topic
        self._group = mapping.consumer_group_id
        self._connection = connection
        self._options = options or KafkaOptions()
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._start_lock = anyio.Lock()
        self._assigned: frozenset[TopicPartition] = frozenset()
        #: Revoked partitions whose batches in flight may still commit (during the revoke grace).
        self._draining: set[TopicPartition] = set()
        self._readers: dict[TopicPartition, _KafkaReader] = {}
        self._changed = anyio.Event()
        #: Records behind the partition's high watermark after the last read, per partition.
        self._lag: dict[str, int] = {}
        #: Commits that failed (CommitErrorCount) and records committed (CommittedEventCount).
        self.commit_errors = 0
        self.committed_events = 0
        self._committed: dict[str, int] = {}
        #: Offsets settled and waiting for the committer, per partition (the latest wins).
        self._pending: dict[str, int] = {}
        self._pending_added = anyio.Event()
        #: One commit request at a time (the committer, a revocation's flush, the final flush).
        self._commit_lock = anyio.Lock()
        self._log = _log.bind(topic=self._topic, group=self._group)
        servers = ",".join(connection.bootstrap_servers)
        self._event_head: dict[str, Any] = (
            {
                "eventSource": "aws:kafka",
                "eventSourceArn": mapping.event_source_arn,
                "bootstrapServers": servers,
            }
            if mapping.event_source_arn
            else {"eventSource": "SelfManagedKafka", "bootstrapServers": servers}
        )

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
            except KafkaError as error:
                await consumer.stop()
                raise SourceError(
                    f"cannot reach Kafka at {','.join(self._connection.bootstrap_servers)}: {error}"
                ) from None
            self._consumer = consumer
            self._log.info("consumer started; joining the group")
            return consumer

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
                await self.flush_commits({self.partition_id(tp) for tp in mine})
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

    def partition_id(self, tp: TopicPartition) -> str:
        """AWS's name for a topic partition: ``topic-N``."""
        return f"{tp.topic}-{tp.partition}"

    def _tp(self, partition_id: str) -> TopicPartition:
        topic, _, number = partition_id.rpartition("-")
        return TopicPartition(topic, int(number))

    async def list_partitions(self) -> Sequence[PartitionInfo]:
        """The partitions the group gives this consumer now (none until it has joined)."""
        await self._started()
        return [
            PartitionInfo(self.partition_id(tp))
            for tp in sorted(self._assigned, key=lambda t: t.partition)
        ]

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> PartitionReader:
        """A reader of one assigned partition, positioned at ``start``."""
        consumer = await self._started()
        tp = self._tp(partition.id)
        reader = _KafkaReader(self, consumer, tp, partition.id)
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
        self._committed[partition.id] = offset
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

    def _forget(self, reader: _KafkaReader) -> None:
        if self._readers.get(reader.tp) is reader:
            del self._readers[reader.tp]
        self._lag.pop(reader.partition_id, None)

    # --- offsets (the checkpoint store's side) --------------------------------------------------

    async def committed_offset(self, partition: str) -> int | None:
        """The group's committed offset of a partition (the next offset to read), or None."""
        consumer = await self._started()
        tp = self._tp(partition)
        try:
            offset = await consumer.committed(tp)
        except IllegalStateError:
            return None
        if offset is not None and offset >= 0:
            self._committed[partition] = offset
            return int(offset)
        return None

    async def current_offset(self, partition: str) -> int:
        """The next offset the partition's reader will read."""
        consumer = await self._started()
        return int(await consumer.position(self._tp(partition)))

    async def commit_offset(self, partition: str, next_offset: int) -> bool:
        """Queue ``next_offset`` for the committer; False when the partition is no longer ours.

        The batch's lane goes on at once: :meth:`run_background` commits every partition's
        latest settled offset in one request, as often as the broker answers. A commit request
        per batch and partition was the largest cost of reading a busy topic (each lane waited a
        round trip before its next batch); batching them changes nothing that is committed, only
        when: a crash may lose the last commits, and their records are read again
        (at-least-once). Revocation and shutdown flush what is queued before they go on.
        """
        tp = self._tp(partition)
        if tp not in self._assigned and tp not in self._draining:
            self._log.info(
                "offset not committed: the partition was revoked; its next owner reads "
                "on from the last commit",
                partition=partition,
                offset=next_offset,
            )
            return False
        if next_offset > self._pending.get(partition, -1):
            self._pending[partition] = next_offset
            self._pending_added.set()
        return True

    async def run_background(self) -> None:
        """Commit queued offsets until cancelled, then flush what is left (shielded)."""
        failures = 0
        try:
            while True:
                await self._pending_added.wait()
                self._pending_added = anyio.Event()
                if await self.flush_commits():
                    failures = 0
                    continue
                failures += 1
                await anyio.sleep(_COMMIT_BACKOFF.delay(failures))
                self._pending_added.set()  # what failed is still queued
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush_commits()

    async def flush_commits(self, partitions: Collection[str] | None = None) -> bool:
        """Commit the queued offsets (of ``partitions``, or all) in one request now.

        Offsets of partitions no longer ours are dropped (their next owner reads on from the
        last commit). False when the broker could not be reached; the offsets stay queued.
        """
        async with self._commit_lock:
            consumer = self._consumer
            wanted = {
                p: o for p, o in self._pending.items() if partitions is None or p in partitions
            }
            if not wanted or consumer is None:
                return True
            offsets: dict[TopicPartition, int] = {}
            for partition, offset in wanted.items():
                tp = self._tp(partition)
                if tp in self._assigned or tp in self._draining:
                    offsets[tp] = offset
                else:
                    self._log.info(
                        "offset not committed: the partition was revoked; its next owner "
                        "reads on from the last commit",
                        partition=partition,
                        offset=offset,
                    )
            for partition, offset in wanted.items():
                if self._pending.get(partition) == offset:
                    del self._pending[partition]
            if not offsets:
                return True
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as error:
                self.commit_errors += 1
                self._log.warning(
                    "offsets not committed: the group is rebalancing; the partitions' owners "
                    "read on from the last commit",
                    partitions=sorted(self.partition_id(tp) for tp in offsets),
                    error=type(error).__name__,
                )
                return True
            except KafkaError as error:
                self.commit_errors += 1
                for tp, offset in offsets.items():  # keep them queued, unless newer ones came
                    partition = self.partition_id(tp)
                    if offset > self._pending.get(partition, -1):
                        self._pending[partition] = offset
                self._log.warning("commit failed; retrying", error=str(error))
                return False
            for tp, offset in offsets.items():
                partition = self.partition_id(tp)
                previous = self._committed.get(partition)
                if previous is not None and offset > previous:
                    self.committed_events += offset - previous
                self._committed[partition] = offset
            return True

    # --- metrics ------------------------------------------------------------------------------

    def extra_metrics(self) -> dict[str, int]:
        """OffsetLag (sum and max over partitions) and the commit counters."""
        lags = list(self._lag.values())
        return {
            "SumOffsetLag": sum(lags),
            "MaxOffsetLag": max(lags, default=0),
            "CommittedEventCount": self.committed_events,
            "CommitErrorCount": self.commit_errors,
        }

    # --- records and rendering ------------------------------------------------------------------

    def _record(self, partition_id: str, message: Any) -> KafkaRecord:
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

    def _render_record(self, record: Record) -> dict[str, Any]:
        # Read straight from the client's record: this runs once per record per invocation.
        message = record.native
        rendered: dict[str, Any] = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": record.ordinal,
            "timestamp": message.timestamp,
            "timestampType": "LOG_APPEND_TIME" if message.timestamp_type == 1 else "CREATE_TIME",
        }
        key = message.key
        if key is not None:
            rendered["key"] = _b64(key)
        value = message.value
        rendered["value"] = None if value is None else _b64(value)
        headers = message.headers
        rendered["headers"] = [{str(n): list(v or b"")} for n, v in headers] if headers else []
        return rendered

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """AWS's Kafka event: records grouped under ``topic-partition``."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            grouped.setdefault(record.partition, []).append(self._render_record(record))
        return {**self._event_head, "records": grouped}

    def item_identifier(self, record: Record) -> tuple[str, int]:
        """``{"partition": "topic-N", "offset": N}`` as the key the engine compares."""
        return (record.partition, record.ordinal)

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``KafkaBatchInfo``: per partition the first and last offsets and timestamps."""
        infos: dict[str, dict[str, Any]] = {}
        for record in records:
            assert isinstance(record, KafkaRecord)
            info = infos.get(record.partition)
            if info is None:
                info = infos[record.partition] = {
                    "firstRecordOffset": str(record.ordinal),
                    "firstRecordTimestamp": _timestamp_text(record.timestamp_ms),
                }
            info["lastRecordOffset"] = str(record.ordinal)
            info["lastRecordTimestamp"] = _timestamp_text(record.timestamp_ms)
        body: dict[str, Any] = {"batchSize": len(records)}
        if self._mapping.event_source_arn:
            body["eventSourceArn"] = self._mapping.event_source_arn
        body["bootstrapServers"] = self._event_head["bootstrapServers"]
        body["payloadSize"] = len(json.dumps(self.render_event(records), separators=(",", ":")))
        body["recordsInfo"] = infos
        return "KafkaBatchInfo", body


class _KafkaReader:
    """Reads one assigned partition from the shared consumer."""

    def __init__(
        self, source: KafkaSource, consumer: AIOKafkaConsumer, tp: TopicPartition, pid: str
    ) -> None:
        self._source = source
        self._consumer = consumer
        self.tp = tp
        self.partition_id = pid
        self._revoked = False
        #: Set once the runner closed this reader (its last batch settled or abandoned).
        self.closed = anyio.Event()
        self._wait_ms = int(source._options.read_wait_seconds * 1000)

    def revoke(self) -> None:
        """The group took the partition away: the next read says so."""
        self._revoked = True

    async def read(self) -> ReadResult:
        if self._revoked:
            return ReadResult((), revoked=True)
        try:
            fetched = await self._consumer.getmany(self.tp, timeout_ms=self._wait_ms)
        except IllegalStateError:
            return ReadResult((), revoked=True)
        if self._revoked:
            # Revoked while waiting: what came back is the next owner's to read.
            return ReadResult((), revoked=True)
        messages = fetched.get(self.tp, ())
        source = self._source
        records = [source._record(self.partition_id, m) for m in messages]
        behind = 0
        highwater = self._consumer.highwater(self.tp)
        if highwater is not None and records:
            lag = max(0, highwater - (records[-1].ordinal + 1))
            source._lag[self.partition_id] = lag
            behind = 1 if lag else 0
        elif not records:
            source._lag[self.partition_id] = 0
        return ReadResult(records, behind_ms=behind)

    async def aclose(self) -> None:
        self._source._forget(self)
        self.closed.set()


if TYPE_CHECKING:

    def _conforms(source: KafkaSource, reader: _KafkaReader) -> None:
        """mypy checks here that the classes satisfy the engine's Protocols."""
        _source: PartitionSource = source
        _reader: PartitionReader = reader
