"""Reading one assigned Kafka partition from the mapping's shared consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from poller.engine.protocols import ReadResult

if TYPE_CHECKING:
    from poller.sources.kafka.source import KafkaSource

__all__ = ["KafkaReader"]


class KafkaReader:
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
        records = [source.to_record(self.partition_id, m) for m in messages]
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
