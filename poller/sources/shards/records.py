"""What a shard stream's records share, as typed handlers receive them."""

from __future__ import annotations

from dataclasses import dataclass

from poller.records import Record

__all__ = ["ShardRecord"]


@dataclass(frozen=True, slots=True)
class ShardRecord(Record):
    """A record of a Kinesis or DynamoDB stream shard: ``position`` is its sequence number."""

    @property
    def sequence_number(self) -> str:
        """The record's sequence number (a big decimal string)."""
        return self.position

    @property
    def shard_id(self) -> str:
        """The shard the record was read from."""
        return self.partition
