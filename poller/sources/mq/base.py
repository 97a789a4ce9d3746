"""What a broker source is before its client library: the queue, the prefetch, the buffer, counts.

Both broker sources keep one consumer whose broker-side prefetch holds a batch per poller plus one
batch ahead, a :class:`~poller.sources.mq.buffer.DeliveryBuffer` its deliveries wait in, and a
:class:`~poller.sources.mq.buffer.RedeliveryCounter`. Subclasses connect and settle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, cast

import structlog

from poller.config.resolved import ResolvedMapping
from poller.records import Record
from poller.sources.mq.buffer import DeliveryBuffer, RedeliveryCounter
from poller.sources.mq.options import MqSettings
from poller.sources.spec import OpenedSource, SourceEnvironment

if TYPE_CHECKING:
    from poller.aws import AwsClients
    from poller.engine.protocols import AckQueue, EventCodec

__all__ = ["BrokerSource"]

RecordT = TypeVar("RecordT", bound=Record)


class BrokerSource(Generic[RecordT]):
    """The shared half of a broker source (see the module docstring)."""

    #: How messages name the broker ("RabbitMQ").
    engine: ClassVar[str] = ""
    #: The most a broker lets a consumer prefetch (AMQP: 65535), if it caps it.
    max_prefetch: ClassVar[int | None] = None
    #: Most messages one receive may return: a whole buffered batch.
    max_receive: int = 10_000
    #: Renders the queue's messages in AWS's shapes.
    codec: EventCodec

    def __init__(
        self,
        mapping: ResolvedMapping,
        clients: AwsClients | None = None,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        settings = mapping.settings
        if not isinstance(settings, MqSettings) or not settings.queue:
            raise ValueError(f"Queues: a {self.engine} mapping needs exactly one queue")
        self.mapping = mapping
        self.queue = settings.queue
        self._clients = clients
        self._connect_timeout = connect_timeout
        pollers = mapping.maximum_concurrency or 1
        prefetch = (pollers + 1) * mapping.batch_size
        self.prefetch = min(prefetch, self.max_prefetch) if self.max_prefetch else prefetch
        self._buffer: DeliveryBuffer[RecordT] = DeliveryBuffer()
        self._counter = RedeliveryCounter()
        self._received = 0
        self._log = structlog.get_logger(f"poller.sources.{self.engine.lower()}").bind(
            queue=mapping.source_label
        )
        self._init_client()

    def _init_client(self) -> None:
        """Set up the engine's own state (connection, consumer, codec); nothing connects yet."""
        raise NotImplementedError

    @classmethod
    async def opened(cls, mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
        """A mapping's source, ready to run (its engine's opener)."""
        source = cls(mapping, environment.clients)
        # The engines implement AckQueue; this half alone does not (mypy checks each engine).
        return OpenedSource(cast("AckQueue", source), source.codec)

    @property
    def arn(self) -> str:
        """What events name as ``eventSourceArn``: the broker ARN, or the source label."""
        return self.mapping.event_source_arn or self.mapping.source_label

    def receive_count(self, record: Record) -> int:
        """Deliveries of the message, this one included (1 on the first)."""
        return int(record.native.deliveries)
