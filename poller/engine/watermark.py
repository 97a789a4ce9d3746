"""The checkpoint of a partition whose records settle out of order.

Records are registered in source order. They may settle out of order (lanes run side by side, an
expired record is discarded before an earlier one succeeds); the checkpoint may only move to the last
record of the settled *prefix*, so a crash never skips an unsettled record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from poller.records import Record

__all__ = ["Watermark"]


class Watermark:
    """Tracks registered records and returns the end of the settled prefix."""

    __slots__ = ("_open", "_settled")

    def __init__(self) -> None:
        self._open: deque[Record] = deque()
        self._settled: set[int] = set()

    def register(self, records: Iterable[Record]) -> None:
        """Add records in source order, before any of them can settle."""
        self._open.extend(records)

    def settle(self, records: Iterable[Record]) -> Record | None:
        """Mark records settled; return the new last record of the settled prefix, if it moved."""
        settled = self._settled
        for record in records:
            settled.add(record.ordinal)
        pending = self._open
        last: Record | None = None
        while pending and pending[0].ordinal in settled:
            last = pending.popleft()
            settled.discard(last.ordinal)
        return last

    @property
    def outstanding(self) -> int:
        """Registered records not yet in the settled prefix."""
        return len(self._open)
