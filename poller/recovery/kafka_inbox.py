"""Reading on-failure records back from a ``kafka://TOPIC`` destination.

Such a topic holds the failed records themselves, each with the on-failure record of its discard
in the ``poller-on-failure`` header (:mod:`poller.sources.kafka.destination`); the records of one
discard share that header, so one on-failure record here is the set of messages carrying the same
header, wherever the producer's partitioner put them.

Nothing is deleted from a topic: "removed" means the redrive consumer group (``poller-redrive-``
and the mapping's UUID, its own and no other's) commits past it. A group's offset is a prefix,
so a partition's offset can only move up to the first message still kept there; an on-failure
record with a message behind a kept one is therefore held back (not redriven), because removing
it is impossible and redriving it again on every run would duplicate its records forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from poller.errors import SourceError
from poller.recovery.failure_records import FailureRecord
from poller.sources.kafka.connection import KafkaConnection
from poller.sources.kafka.destination import FAILURE_HEADER

__all__ = ["KafkaInbox", "redrive_group"]

#: How long one fetch waits for messages before the read checks where it stands.
_FETCH_WAIT_MS = 500
#: How many fetches in a row must return nothing before the topic is judged read to its end.
_EMPTY_FETCHES = 3
#: The same while the broker's end offsets still say records are due (a slow broker).
_PATIENCE = 60

#: Where one message of an on-failure record is: (topic partition, offset).
Place = tuple[TopicPartition, int]


def redrive_group(mapping_id: str) -> str:
    """The consumer group that records which on-failure records of a mapping were redriven."""
    return f"poller-redrive-{mapping_id}"


class KafkaInbox:
    """The on-failure records in a ``kafka://`` topic not yet committed by the redrive group."""

    def __init__(self, connection: KafkaConnection, topic: str, group: str) -> None:
        self._connection = connection
        self._topic = topic
        self._group = group
        self._consumer: AIOKafkaConsumer | None = None
        #: Per partition: the offset the read started at and the end it read up to.
        self._ends: dict[TopicPartition, int] = {}
        self._read: list[FailureRecord] = []
        self.description = f"kafka://{topic} (group {group})"

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                group_id=self._group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **self._connection.client_kwargs(),
            )
            try:
                await consumer.start()
            except KafkaError as error:
                await consumer.stop()
                raise SourceError(
                    f"cannot reach Kafka to read {self.description}: {error}"
                ) from None
            self._consumer = consumer
        return self._consumer

    async def read(self) -> list[FailureRecord]:
        """Every message after the group's committed offsets, grouped by discard."""
        consumer = await self._started()
        await consumer.topics()
        numbers = consumer.partitions_for_topic(self._topic)
        if not numbers:
            raise SourceError(f"{self.description}: the topic does not exist")
        partitions = [TopicPartition(self._topic, n) for n in sorted(numbers)]
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp)
            start = committed if committed is not None and committed >= 0 else beginnings[tp]
            consumer.seek(tp, start)
        by_header: dict[bytes, list[Place]] = {}
        loose: list[FailureRecord] = []
        ends = await consumer.end_offsets(partitions)
        empty = 0
        # Read while the end offsets say more is due, then until fetches bring nothing more:
        # some brokers answer end offsets per produced batch, not per record, so they are a
        # floor, not the end.
        while empty < (_PATIENCE if await _due(consumer, ends) else _EMPTY_FETCHES):
            batches = await consumer.getmany(timeout_ms=_FETCH_WAIT_MS)
            empty = 0 if any(batches.values()) else empty + 1
            for tp, messages in batches.items():
                for message in messages:
                    place = (tp, message.offset)
                    header = dict(message.headers or ()).get(FAILURE_HEADER)
                    if header:
                        by_header.setdefault(bytes(header), []).append(place)
                    else:
                        where = f"{tp.topic}-{tp.partition}@{message.offset}"
                        loose.append(FailureRecord(where, "", (place,)))
        self._ends = {tp: int(await consumer.position(tp)) for tp in partitions}
        records = [
            FailureRecord(
                f"{places[0][0].topic}-{places[0][0].partition}@{places[0][1]}",
                header.decode("utf-8", errors="replace"),
                tuple(places),
            )
            for header, places in by_header.items()
        ]
        self._read = sorted(
            [*records, *loose], key=lambda r: (r.handle[0][0].partition, r.handle[0][1])
        )
        return list(self._read)

    def held_back(self, kept: Sequence[FailureRecord]) -> list[FailureRecord]:
        """Records with a message after a kept one's first message in the same partition."""
        return held_back_among(self._read, kept)

    async def settle(
        self,
        removed: Sequence[FailureRecord],
        kept: Sequence[FailureRecord],
        foreign: Sequence[FailureRecord],
    ) -> dict[str, str]:
        """Commit each partition up to the first message of a kept record. Other mappings'
        records do not hold the offset back: the group is this mapping's alone, so committing
        past them hides them from nobody else (their own mapping's redrive reads them)."""
        if not removed:
            return {}
        consumer = await self._started()
        removed_places = {place for record in removed for place in record.handle}
        blocking: dict[TopicPartition, int] = {}
        for record in kept:
            for tp, offset in record.handle:
                if (tp, offset) not in removed_places:
                    blocking[tp] = min(offset, blocking.get(tp, offset))
        offsets = {tp: blocking.get(tp, end) for tp, end in self._ends.items()}
        try:
            await consumer.commit(offsets)
        except KafkaError as error:
            return {self.description: f"{self.description}: offsets not committed ({error})"}
        return {}

    async def aclose(self) -> None:
        """Leave the cluster."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


async def _due(consumer: Any, ends: dict[TopicPartition, int]) -> bool:
    """Whether some partition has not been read up to the end offset the broker gave."""
    return any([await consumer.position(tp) < end for tp, end in ends.items()])


def held_back_among(
    records: Sequence[FailureRecord], kept: Sequence[FailureRecord]
) -> list[FailureRecord]:
    """The records of ``records`` that a kept record blocks (see the module docstring): a message
    after the first kept message of its partition. Blocking spreads: a held-back record is kept
    too, and may block records in its other partitions."""
    blocked = {id(r) for r in kept}
    held: list[FailureRecord] = []
    changed = True
    while changed:
        changed = False
        first_kept: dict[Any, int] = {}
        for record in records:
            if id(record) in blocked:
                for tp, offset in record.handle:
                    first_kept[tp] = min(offset, first_kept.get(tp, offset))
        for record in records:
            if id(record) in blocked:
                continue
            if any(offset > first_kept.get(tp, offset) for tp, offset in record.handle):
                blocked.add(id(record))
                held.append(record)
                changed = True
    return held
