"""The stream engine: partitions in lineage order, fetch-ahead, lanes, retries, checkpoints."""

from poller.engine.streams.mapping import StreamMappingRunner

__all__ = ["StreamMappingRunner"]
