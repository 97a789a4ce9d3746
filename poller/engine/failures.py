"""Failures that repeat: one log line per distinct cause, not one per retry.

A loop that retries with backoff (reading a shard, listing partitions, receiving from a queue,
renewing leases, restarting a crashed partition, delivering an on-failure record) may fail
thousands of times for one reason: a state file that cannot be written, a broker that is down.
A line per attempt buries the cause and the moment it started. :class:`RepeatedFailures` logs

* the first failure of a cause at the caller's level, with ``error``, ``error_type`` and
  ``operation`` (:func:`poller.errors.failure_fields`: exception groups opened, never "unhandled
  errors in a TaskGroup"), and its traceback at debug level;
* a cause already logged at most once per ``remind_every`` seconds: attempts in between go to
  debug level only. While the loop keeps failing, that line is a reminder ("...: still
  failing", with the attempt count); loops whose attempts fail in turn for two reasons log each
  once, and a loop that flaps (fails, works, fails again) does not log each round;
* a new cause at once;
* optionally, one line when the loop works again after a failure that was logged.

It also remembers the last failure, so status can show why a partition is not moving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from structlog.typing import FilteringBoundLogger

from poller.errors import failure_fields

__all__ = ["FailureReport", "RepeatedFailures"]

#: The default least time between two "still failing" lines of one loop.
REMIND_EVERY_SECONDS = 60.0

#: The most distinct causes one loop remembers as logged.
_MOST_CAUSES = 64

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class FailureReport:
    """The latest failure of one loop: its cause, how many attempts in a row failed (whatever
    their cause), and when the current cause was first and last seen (epoch seconds)."""

    cause: Mapping[str, str]
    attempts: int
    since: float
    last: float

    def as_dict(self) -> dict[str, Any]:
        """The report as status documents carry it."""
        return {**self.cause, "attempts": self.attempts, "since": self.since, "last": self.last}


class RepeatedFailures:
    """The failures of one retrying loop, logged once per distinct cause."""

    __slots__ = ("_clock", "_log", "_logged", "_loud", "_remind_every", "_report", "_wall_clock")

    def __init__(
        self,
        log: FilteringBoundLogger,
        *,
        remind_every: float = REMIND_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = log
        self._remind_every = remind_every
        self._clock = clock
        self._wall_clock = wall_clock
        self._report: FailureReport | None = None
        #: When each cause was last logged (``clock``), kept across recoveries.
        self._logged: dict[frozenset[tuple[str, str]], float] = {}
        #: Whether a failure since the loop last worked was logged above debug level.
        self._loud = False

    @property
    def attempts(self) -> int:
        """Failures in a row since the loop last worked (0 while it works)."""
        return self._report.attempts if self._report is not None else 0

    @property
    def last(self) -> FailureReport | None:
        """The latest failure since the loop last worked, or None."""
        return self._report

    def failed(
        self,
        event: str,
        error: BaseException,
        *,
        operation: str | None = None,
        level: Level = "error",
        **fields: Any,
    ) -> None:
        """One more failed attempt: logged when its cause is new, else at most once per
        ``remind_every``.

        ``operation`` names what failed when the error was not marked with one
        (:func:`poller.errors.during`); ``fields`` go on the line as they are.
        """
        cause = failure_fields(error)
        if operation is not None:
            cause.setdefault("operation", operation)
        now, wall = self._clock(), self._wall_clock()
        previous = self._report
        attempts = previous.attempts + 1 if previous is not None else 1
        same = previous is not None and previous.cause == cause
        since = previous.since if previous is not None and same else wall
        self._report = FailureReport(cause, attempts, since=since, last=wall)
        key = frozenset(cause.items())
        logged_at = self._logged.get(key)
        if logged_at is not None and now - logged_at < self._remind_every:
            self._log.debug(event, **cause, attempt=attempts, **fields)
            return
        if len(self._logged) >= _MOST_CAUSES:  # messages that change with every attempt
            self._logged.clear()
        self._logged[key] = now
        self._loud = True
        log = self._log.error if level == "error" else self._log.warning
        if logged_at is not None and same:
            failing_for = round(wall - since, 1)
            log(
                f"{event}: still failing",
                **cause,
                attempts=attempts,
                failing_for=failing_for,
                **fields,
            )
            return
        log(event, **cause, attempt=attempts, **fields)
        self._log.debug(f"{event}: traceback", exc_info=error, **cause)

    def recovered(self, event: str | None = None, **fields: Any) -> None:
        """The loop worked: its failures in a row are over (``event`` is logged if one of them
        was)."""
        report, self._report = self._report, None
        loud, self._loud = self._loud, False
        if report is not None and loud and event is not None:
            self._log.info(event, failed_attempts=report.attempts, **fields)
