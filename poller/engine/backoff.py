"""Jittered exponential backoff between retries, using tenacity's wait strategies.

The engine sleeps between attempts itself (it must stay cancellable and keep per-batch state), so
it asks a tenacity wait strategy for the delay of attempt *n* instead of wrapping a call.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential_jitter

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry *n*: ``initial * 2**(n-1)`` plus up to ``initial`` of jitter, capped."""

    initial: float
    maximum: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
        if self.initial <= 0 or attempt <= 0:
            return 0.0
        wait = wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.initial
        )
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(min(wait(state), self.maximum))
