"""Committing a Kafka mapping's progress: settled offsets queued per partition, sent in batches.

Each settled prefix queues its offset and the batch's lane goes on at once; :meth:`run` commits
every partition's latest queued offset in one request, as often as the broker answers. A commit
request per batch and partition was the largest cost of reading a busy topic (each lane waited a
round trip before its next batch); batching them changes nothing that is committed, only when: a
crash may lose the last commits, and their records are read again (at-least-once). Revocation and
shutdown flush what is queued before they go on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)
from structlog.typing import FilteringBoundLogger

from poller.engine.backoff import Backoff

__all__ = ["OffsetCommitter", "partition_id", "topic_partition"]

_COMMIT_BACKOFF = Backoff(0.2, 5.0)


def partition_id(tp: TopicPartition) -> str:
    """AWS's name for a topic partition: ``topic-N``."""
    return f"{tp.topic}-{tp.partition}"


def topic_partition(partition: str) -> TopicPartition:
    """The topic partition ``topic-N`` names."""
    topic, _, number = partition.rpartition("-")
    return TopicPartition(topic, int(number))


class OffsetCommitter:
    """Queues settled offsets and commits them to the group (see the module docstring)."""

    def __init__(
        self,
        *,
        consumer: Callable[[], AIOKafkaConsumer | None],
        owns: Callable[[TopicPartition], bool],
        log: FilteringBoundLogger,
    ) -> None:
        self._consumer = consumer
        #: Whether a partition is still ours to commit (assigned, or revoked and draining).
        self._owns = owns
        self._log = log
        #: Commits that failed (CommitErrorCount) and records committed (CommittedEventCount).
        self.commit_errors = 0
        self.committed_events = 0
        self._committed: dict[str, int] = {}
        #: Offsets settled and waiting to be committed, per partition (the latest wins).
        self._pending: dict[str, int] = {}
        self._pending_added = anyio.Event()
        #: One commit request at a time (the committer, a revocation's flush, the final flush).
        self._lock = anyio.Lock()

    def note_committed(self, partition: str, offset: int) -> None:
        """The group's offset of a partition as read (CommittedEventCount counts from it)."""
        self._committed[partition] = offset

    def queue(self, partition: str, next_offset: int) -> bool:
        """Queue ``next_offset``; False when the partition is no longer ours."""
        if not self._owns(topic_partition(partition)):
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

    async def run(self) -> None:
        """Commit queued offsets until cancelled, then flush what is left (shielded)."""
        failures = 0
        try:
            while True:
                await self._pending_added.wait()
                self._pending_added = anyio.Event()
                if await self.flush():
                    failures = 0
                    continue
                failures += 1
                await anyio.sleep(_COMMIT_BACKOFF.delay(failures))
                self._pending_added.set()  # what failed is still queued
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def flush(self, partitions: Collection[str] | None = None) -> bool:
        """Commit the queued offsets (of ``partitions``, or all) in one request now.

        Offsets of partitions no longer ours are dropped (their next owner reads on from the
        last commit). False when the broker could not be reached; the offsets stay queued.
        """
        async with self._lock:
            consumer = self._consumer()
            wanted = {
                p: o for p, o in self._pending.items() if partitions is None or p in partitions
            }
            if not wanted or consumer is None:
                return True
            offsets: dict[TopicPartition, int] = {}
            for partition, offset in wanted.items():
                tp = topic_partition(partition)
                if self._owns(tp):
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
            return await self._commit(consumer, offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as error:
            self.commit_errors += 1
            self._log.warning(
                "offsets not committed: the group is rebalancing; the partitions' owners "
                "read on from the last commit",
                partitions=sorted(partition_id(tp) for tp in offsets),
                error=type(error).__name__,
            )
            return True
        except KafkaError as error:
            self.commit_errors += 1
            for tp, offset in offsets.items():  # keep them queued, unless newer ones came
                partition = partition_id(tp)
                if offset > self._pending.get(partition, -1):
                    self._pending[partition] = offset
            self._log.warning("commit failed; retrying", error=str(error))
            return False
        for tp, offset in offsets.items():
            partition = partition_id(tp)
            previous = self._committed.get(partition)
            if previous is not None and offset > previous:
                self.committed_events += offset - previous
            self._committed[partition] = offset
        return True
