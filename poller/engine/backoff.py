"""Jittered exponential backoff: the one delay rule of poller, built on tenacity's wait strategies.

Two ways to jitter, for two kinds of waiting:

* retries of a batch (and of reads, listings, deliveries) wait ``initial * 2**(n-1)`` plus up to
  ``initial`` of jitter: steady, so a blocked shard retries on a predictable schedule;
* "full jitter" (``full_jitter=True``) draws each wait uniformly from zero to the exponential
  bound, which spreads the retries of many throttled callers over time instead of letting them
  collide again: throttled AWS calls and failed settle requests use it.

The engine sleeps between attempts itself (it must stay cancellable and keep per-batch state), so
it asks for the delay of attempt *n* (:meth:`Backoff.delay`); a call retried by tenacity takes the
strategy itself (:meth:`Backoff.strategy`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential_jitter, wait_random_exponential
from tenacity.wait import wait_base

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry *n*: exponential from ``initial``, jittered, capped at ``maximum``."""

    #: The first delay (or, with full jitter, its upper bound), in seconds; 0 turns waiting off.
    initial: float
    #: The largest delay, in seconds.
    maximum: float
    full_jitter: bool = False

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError(
                f"invalid backoff initial={self.initial!r} maximum={self.maximum!r} "
                "(allowed: 0 <= initial <= maximum)"
            )

    def strategy(self) -> wait_base:
        """The tenacity wait strategy for these bounds."""
        if self.full_jitter:
            return wait_random_exponential(multiplier=self.initial, max=self.maximum)
        return wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.initial
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
        if self.initial <= 0 or attempt <= 0:
            return 0.0
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(min(self.strategy()(state), self.maximum))
