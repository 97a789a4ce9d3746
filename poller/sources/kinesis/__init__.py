"""Kinesis Data Streams: shards read with GetRecords, Lambda's ``aws:kinesis`` event.

The package: :mod:`.spec` (what the registry knows), :mod:`.records`, :mod:`.codec` (AWS's
shapes), :mod:`.source` (the reader, on the shared shard core :mod:`poller.sources.shards`).
"""

from poller.sources.kinesis.codec import KinesisCodec
from poller.sources.kinesis.records import KinesisRecord
from poller.sources.kinesis.spec import SPEC

__all__ = ["SPEC", "KinesisCodec", "KinesisRecord"]
