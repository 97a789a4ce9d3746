"""Resuming at a moment instead of a position: skip what arrived before it.

A partition that first opened at LATEST and has no checkpoint yet resumes from the moment it
opened, so records written while no worker ran are not skipped. Where the source cannot start
AT_TIMESTAMP (DynamoDB Streams), the reader starts at the oldest record instead and passes over
what arrived before that moment: that is this cutoff, shared by the engine and the shard readers.
"""

from __future__ import annotations

from collections.abc import Sequence

from poller.records import Record

__all__ = ["CLOCK_SKEW_ALLOWANCE", "ArrivalCutoff"]

#: Resuming from a moment starts this many seconds earlier, so a clock running ahead of the
#: source's cannot hide records (at-least-once: a few may be handed over twice).
CLOCK_SKEW_ALLOWANCE = 2.0


class ArrivalCutoff:
    """Drops records that arrived before ``moment``, until the first one at or after it."""

    __slots__ = ("moment",)

    def __init__(self, moment: float | None = None) -> None:
        #: Epoch seconds; None once a record at or after it was seen (nothing is dropped then).
        self.moment = moment

    @property
    def active(self) -> bool:
        """Whether records are still being screened."""
        return self.moment is not None

    def screen(self, records: Sequence[Record]) -> Sequence[Record]:
        """``records`` without those before the moment (records come in arrival order)."""
        moment = self.moment
        if moment is None or not records:
            return records
        kept = next((i for i, r in enumerate(records) if r.arrival >= moment), len(records))
        if kept < len(records):
            self.moment = None  # the rest are newer
        return records[kept:]
