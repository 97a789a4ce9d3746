"""The in-memory doubles render their own events with a real source's codec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from poller.engine.outcome import ItemId
from poller.engine.protocols import EventCodec
from poller.records import Record

__all__ = ["RendersWithCodec"]


class RendersWithCodec:
    """Makes a double its own ``EventCodec`` by handing each call to ``self.codec``, the codec
    of the source it stands in for, so ``Worker(sources={uuid: double})`` renders real events."""

    codec: EventCodec

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """The event Lambda would hand over for these records."""
        return self.codec.render_event(records)

    def item_identifier(self, record: Record) -> ItemId:
        """What ``batchItemFailures`` names the record by."""
        return self.codec.item_identifier(record)

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """The on-failure record's batch info."""
        return self.codec.batch_info(records)
