"""The records of a Kinesis data stream, as typed handlers receive them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from poller.records import Record

__all__ = ["PLAIN", "KinesisRecord", "encrypted"]


@dataclass(frozen=True, slots=True)
class KinesisRecord(Record):
    """A Kinesis Data Streams record, as typed handlers receive it."""

    @property
    def sequence_number(self) -> str:
        """The record's sequence number (a big decimal string)."""
        return self.position

    @property
    def partition_key(self) -> str:
        """The partition key the producer gave."""
        return self.key

    @property
    def shard_id(self) -> str:
        """The shard the record was read from."""
        return self.partition


#: ``native`` of records without server-side encryption: shared, read-only, empty.
PLAIN: Mapping[str, str] = MappingProxyType({})


@functools.cache
def encrypted(encryption: str) -> Mapping[str, str]:
    """The shared, read-only ``native`` of records with server-side encryption ``encryption``."""
    return MappingProxyType({"encryptionType": encryption})
