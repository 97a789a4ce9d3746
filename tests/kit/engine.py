"""The engine run straight, without a Worker: runners, and the sink and store that log what the
engine did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from poller.config import ResolvedMapping
from poller.engine.discard import Discard, DiscardSink, DroppingSink
from poller.engine.invocation import InvocationContext, Target
from poller.engine.leases import LeaseStore
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import EventCodec, PartitionSource, QueueSource
from poller.engine.queues import QueueMappingRunner
from poller.engine.state import Checkpoint, IdempotencyStore, Store
from poller.engine.streams import StreamMappingRunner
from poller.engine.streams.leasing import FencedCheckpoints, LeaseCoordinator, LeasedSource
from poller.functions import target_for
from poller.stores.memory import MemoryStore
from tests.kit.names import (
    tick,
)

__all__ = ["RecordingSink", "RecordingStore", "queue_runner", "stream_runner"]

# --- what the engine did: sinks and stores that log ----------------------------------------------


class RecordingSink:
    """Records discards with the logical time they were delivered."""

    def __init__(self) -> None:
        self.discards: list[tuple[int, Discard]] = []

    async def deliver(self, discard: Discard) -> None:
        self.discards.append((tick(), discard))


class RecordingStore(MemoryStore):
    """A memory store that also logs every checkpoint write."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, Checkpoint]] = []

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        self.puts.append((partition, checkpoint))
        await super().put_checkpoint(mapping_id, partition, checkpoint)

    def succeeded_snapshot(self, mapping_id: str) -> set[tuple[str, str]]:
        """(partition, position) pairs remembered as succeeded and not expired."""
        now = self._clock()
        return {
            (partition, position)
            for (mid, partition), entries in self._succeeded.items()
            if mid == mapping_id
            for position, expires in entries.items()
            if expires > now
        }


# --- runners built straight on the engine --------------------------------------------------------


def _target(
    handler: Callable[..., Any] | Target, codec: EventCodec, mapping: ResolvedMapping
) -> Target:
    return target_for(handler, codec, report_batch_item_failures=mapping.report_batch_item_failures)


def stream_runner(
    mapping: ResolvedMapping,
    source: PartitionSource,
    handler: Callable[..., Any] | Target,
    *,
    store: Store | None = None,
    sink: DiscardSink | None = None,
    codec: EventCodec | None = None,
    discovery_interval: float = 30.0,
    idle_poll: float | None = 0.001,
    leases: LeaseCoordinator | None = None,
) -> StreamMappingRunner:
    """A stream mapping runner on ``source`` (which renders its own events unless ``codec``);
    with ``leases``, wired as a worker sharing the stream with others (as ``build_runner`` does).
    """
    codec = codec or source  # type: ignore[assignment]
    assert codec is not None
    counters = MappingCounters()
    context = InvocationContext(
        mapping,
        _target(handler, codec, mapping),
        codec,
        counters,
        sink if sink is not None else DroppingSink(counters),
        store=store,
    )
    checkpoints: Store = store if store is not None else MemoryStore()
    if leases is not None:
        assert isinstance(checkpoints, LeaseStore), "leases need a store that holds them"
        source = LeasedSource(source, leases)
        checkpoints = FencedCheckpoints(checkpoints, checkpoints, leases)
    return StreamMappingRunner(
        context,
        source,
        checkpoints,
        discovery_interval=discovery_interval,
        idle_poll=idle_poll,
    )


def queue_runner(
    mapping: ResolvedMapping,
    source: QueueSource,
    handler: Callable[..., Any] | Target,
    *,
    sink: DiscardSink | None = None,
    store: IdempotencyStore | None = None,
    codec: EventCodec | None = None,
    long_poll_seconds: int = 1,
) -> QueueMappingRunner:
    """A queue mapping runner on ``source`` (which renders its own events unless ``codec``)."""
    codec = codec or source  # type: ignore[assignment]
    assert codec is not None
    context = InvocationContext(
        mapping, _target(handler, codec, mapping), codec, sink=sink, store=store
    )
    return QueueMappingRunner(context, source, long_poll_seconds=long_poll_seconds)
