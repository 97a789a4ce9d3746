"""What the Kinesis and DynamoDB Streams codecs share: the stream, sequence numbers as item
identifiers, the on-failure batch info, and event envelope sizes measured once per shard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from poller.records import Record
from poller.timestamps import iso_millis

__all__ = ["ShardCodec"]


class ShardCodec:
    """The shared half of a shard stream's codec (an ``EventCodec`` once ``render_event`` is
    written); each service says its batch info key, how it spells times, and its envelope."""

    #: The on-failure record's batch info key ("KinesisBatchInfo").
    batch_info_key: ClassVar[str] = ""

    def __init__(self, stream_arn: str, region: str) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self._envelopes: dict[str, int] = {}

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"Records": [...]}`` exactly as Lambda passes the stream's records to a function."""
        raise NotImplementedError

    def item_identifier(self, record: Record) -> str:
        """Lambda names stream records in ``batchItemFailures`` by sequence number."""
        return record.position

    def arrival_text(self, epoch_seconds: float) -> str:
        """How the on-failure record spells an arrival time (with milliseconds)."""
        return iso_millis(epoch_seconds)

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """The on-failure record's batch info for ``records`` (one shard, in order)."""
        if not records:
            raise ValueError("batch_info needs at least one record")
        first, last = records[0], records[-1]
        return (
            self.batch_info_key,
            {
                "shardId": first.partition,
                "startSequenceNumber": first.position,
                "endSequenceNumber": last.position,
                "approximateArrivalOfFirstRecord": self.arrival_text(first.arrival),
                "approximateArrivalOfLastRecord": self.arrival_text(last.arrival),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        )

    def envelope_size(self, shard_id: str) -> int:
        """Bytes a record of ``shard_id`` adds to an event besides its own fields.

        Measured once per shard by rendering an empty record, so the estimate follows the real
        shape (and the ``", "`` between records) instead of a hand-counted constant.
        """
        size = self._envelopes.get(shard_id)
        if size is None:
            size = self._envelopes[shard_id] = self.measure_envelope(shard_id)
        return size

    def measure_envelope(self, shard_id: str) -> int:
        """Render an empty record of ``shard_id`` and say what it took."""
        raise NotImplementedError
