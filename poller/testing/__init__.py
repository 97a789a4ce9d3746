"""The test kit: run your handlers under the real engine, without servers.

* In-memory sources with the semantics the engine relies on, rendering events exactly as the
  real sources do: :class:`MemorySource` (log partitions, Kinesis-shaped; it can also revoke and
  give back partitions as a Kafka group does), :class:`MemoryQueue` (SQS, standard or FIFO) and
  :class:`MemoryBroker` (a RabbitMQ or ActiveMQ queue, ``aws:mq``-shaped).
* Recording handlers: :class:`RecordingHandler` (typed) and :class:`RecordingLambdaHandler`
  (Lambda-style, optionally wrapping your own handler).
* Bounded waits: :func:`wait_until` and :func:`wait_until_idle`.

Hand a source to the worker in place of the one the config names::

    source = MemorySource([MemoryPartition("shard-0")])
    recorder = RecordingHandler()
    async with Worker(config, handlers={"orders": recorder}, sources={"orders": source}):
        source.partitions["shard-0"].put(b"hello")
        await recorder.wait_for(1)
"""

from poller.testing.brokers import MemoryBroker
from poller.testing.queues import MemoryQueue, QueuedMessage
from poller.testing.recording import RecordingHandler, RecordingLambdaHandler
from poller.testing.streams import MemoryPartition, MemorySource
from poller.testing.waiting import wait_until, wait_until_idle

__all__ = [
    "MemoryBroker",
    "MemoryPartition",
    "MemoryQueue",
    "MemorySource",
    "QueuedMessage",
    "RecordingHandler",
    "RecordingLambdaHandler",
    "wait_until",
    "wait_until_idle",
]
