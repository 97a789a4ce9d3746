"""The checkpoint of a partition whose records settle out of order.

Records are registered in source order. They may settle out of order (lanes run side by side, an
expired record is discarded before an earlier one succeeds); the checkpoint may only move to the last
record of the settled *prefix*, so a crash never skips an unsettled record.

The common case (one lane, a whole batch succeeds) settles exactly the next registered records; it
is recognised in O(1) per batch, and only out-of-order settling pays for a set per record.
"""

from __future__ import annotations

from collections.abc import Sequence

from poller.records import Record

__all__ = ["Watermark"]

_COMPACT_AFTER = 4096


class Watermark:
    """Tracks registered records and returns the end of the settled prefix."""

    __slots__ = ("_head", "_open", "_settled")

    def __init__(self) -> None:
        self._open: list[Record] = []
        self._head = 0
        self._settled: set[int] = set()

    def register(self, records: Sequence[Record]) -> None:
        """Add records in source order, before any of them can settle."""
        self._open.extend(records)

    def settle(self, records: Sequence[Record]) -> Record | None:
        """Mark records settled; return the new last record of the settled prefix, if it moved."""
        if not records:
            return None
        pending, head = self._open, self._head
        end = head + len(records)
        if (
            not self._settled
            and end <= len(pending)
            and pending[head] is records[0]
            and pending[end - 1] is records[-1]
        ):
            # The records are distinct, registered and ascending: spanning head..end-1 they are
            # exactly that slice, so the prefix simply grows by them.
            self._advance(end)
            return records[-1]
        settled = self._settled
        for record in records:
            settled.add(record.ordinal)
        last: Record | None = None
        size = len(pending)
        while head < size and pending[head].ordinal in settled:
            last = pending[head]
            settled.discard(last.ordinal)
            head += 1
        self._advance(head)
        return last

    def _advance(self, head: int) -> None:
        if head >= _COMPACT_AFTER and head * 2 >= len(self._open):
            del self._open[:head]
            head = 0
        self._head = head

    @property
    def outstanding(self) -> int:
        """Registered records not yet in the settled prefix."""
        return len(self._open) - self._head
