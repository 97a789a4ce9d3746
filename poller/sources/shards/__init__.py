"""The shard-reading core that Kinesis and DynamoDB Streams share (a family core, not a source).

Both services keep a stream's records in shards, in order, behind shard iterators, and both roll
shards over (a closed parent, children that must wait for it). What follows from that lives here
once: listing shards with their lineage, one :class:`ShardReader` per shard (iterators, renewal,
trimming, throttling backoff, shard ends, pacing), and the "stream not found" translation.
"""

from poller.sources.shards.parts import (
    IteratorStart,
    Page,
    ShardDescription,
    ShardOptions,
)
from poller.sources.shards.reader import ShardReader
from poller.sources.shards.source import ShardStreamSource

__all__ = [
    "IteratorStart",
    "Page",
    "ShardDescription",
    "ShardOptions",
    "ShardReader",
    "ShardStreamSource",
]
