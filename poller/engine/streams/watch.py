"""What a lane's batch is doing, for status: in the handler now, failing since when, at which
attempt. The lane's target is wrapped so each invocation reports itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from poller.engine.invocation import Invocation, Target, TimedTarget
from poller.engine.outcome import Outcome, Succeeded
from poller.records import Batch

__all__ = ["LaneWatch", "WatchedTarget", "WatchedTimedTarget"]


class LaneWatch:
    """What one lane's batch is doing, for status."""

    __slots__ = ("attempts", "failing_since", "in_handler")

    def __init__(self) -> None:
        self.in_handler = False
        #: Epoch seconds of the batch's first failed invocation; None once it settled.
        self.failing_since: float | None = None
        #: ``Batch.attempt`` of the latest invocation.
        self.attempts = 0


class WatchedTarget:
    """The mapping's target, telling a lane's watch when a batch enters and leaves the handler
    and whether it came back failed (a timeout or a target error, which the caller turns into a
    failed outcome, counts as a failure here too)."""

    __slots__ = ("_clock", "_inner", "_watch")

    def __init__(self, inner: Target, watch: LaneWatch, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._watch = watch
        self._clock = clock

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        return await self._watched(batch, self._inner.invoke(batch, invocation))

    async def _watched(self, batch: Batch, call: Awaitable[Outcome]) -> Outcome:
        watch = self._watch
        watch.in_handler = True
        watch.attempts = batch.attempt
        outcome: Outcome | None = None
        try:
            outcome = await call
            return outcome
        finally:
            watch.in_handler = False
            if not isinstance(outcome, Succeeded) and watch.failing_since is None:
                watch.failing_since = self._clock()


class WatchedTimedTarget(WatchedTarget):
    """A watched :class:`~poller.engine.invocation.TimedTarget` (it starts the timeout itself)."""

    __slots__ = ()

    async def invoke_timed(
        self, batch: Batch, invocation: Invocation, time_limit: float
    ) -> Outcome:
        inner = cast(TimedTarget, self._inner)
        return await self._watched(batch, inner.invoke_timed(batch, invocation, time_limit))
