"""What every dead-letter redrive shares: the pace of moves, the tally, and how it is printed.

A move is: receive from the dead-letter queue, send (publish) to the source queue, and only once
the send is confirmed delete (acknowledge) the dead letter. A crash between the two leaves the
message in both queues (at least once), never in neither.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

import anyio

from poller.cli.tables import Column, table

__all__ = ["DeadLetter", "Pace", "Tally", "preview", "print_listing", "print_tally"]

#: How much of a text body the dry-run listing shows.
PREVIEW_CHARS = 80


class Pace:
    """At most ``rate`` moves per second: each waits until 1/rate after the one before it, so no
    window of one second ever holds more than ``rate`` moves, however late one of them was."""

    __slots__ = ("_clock", "_gap", "_last", "_sleep")

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._gap = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._last: float | None = None

    async def wait(self) -> None:
        """Return when the next move may start."""
        if self._last is not None:
            delay = self._last + self._gap - self._clock()
            if delay > 0:
                await self._sleep(delay)
        self._last = self._clock()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as the dry-run listing shows it."""

    message_id: str
    group: str | None
    #: How often it was received (SQS ApproximateReceiveCount; MQ: redelivered or not).
    receive_count: str
    preview: str


@dataclass(slots=True)
class Tally:
    """What a redrive did: moved, failed (each with its reason), left in the dead-letter queue."""

    source: str
    dead_letter_queue: str
    moved: int = 0
    failures: list[str] = field(default_factory=list)
    #: Messages still in the dead-letter queue at the end (None: the broker cannot say).
    left: int | None = None


def preview(body: bytes | str) -> str:
    """The first characters of a text body, or the size of a binary one."""
    if isinstance(body, bytes):
        try:
            body = body.decode()
        except UnicodeDecodeError:
            return f"<binary, {len(body)} bytes>"
    text = body.replace("\n", "\\n")
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


def print_listing(letters: list[DeadLetter], tally: Tally, note: str, out: TextIO) -> None:
    """The dry run's output: one line per dead letter, what would be moved, and ``note``."""
    print(f"dry run: {tally.dead_letter_queue} -> {tally.source} (nothing moved)", file=out)
    columns = [
        Column("MESSAGE ID", lambda row: row["id"]),
        Column("GROUP", lambda row: row["group"] or "-"),
        Column("RECEIVES", lambda row: row["count"], right=True),
        Column("BODY", lambda row: row["body"]),
    ]
    rows = [
        {"id": x.message_id, "group": x.group, "count": x.receive_count, "body": x.preview}
        for x in letters
    ]
    for line in table(columns, rows):
        print(line, file=out)
    print(f"{len(letters)} dead letter(s) would be moved; {note}", file=out)


def print_tally(tally: Tally, out: TextIO) -> None:
    """The table of what moved, then one line per failure."""
    print(f"redrive: {tally.dead_letter_queue} -> {tally.source}", file=out)
    columns = [
        Column("MOVED", lambda row: str(row["moved"]), right=True),
        Column("FAILED", lambda row: str(row["failed"]), right=True),
        Column("LEFT", lambda row: "-" if row["left"] is None else str(row["left"]), right=True),
    ]
    row = {"moved": tally.moved, "failed": len(tally.failures), "left": tally.left}
    for line in table(columns, [row]):
        print(line, file=out)
    for failure in tally.failures:
        print(f"failed: {failure}", file=out)
