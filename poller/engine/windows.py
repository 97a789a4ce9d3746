"""Tumbling windows (``TumblingWindowInSeconds``) as a function sees them: the event's window
fields and the response's ``state``.

A windowed invocation's event is the source's event plus ``window`` (``start``/``end``, ISO 8601),
``state``, ``shardId``, ``eventSourceARN``, ``isFinalInvokeForWindow`` and
``isWindowTerminatedEarly``. Its response must carry ``state`` (AWS counts a response without it as
a failed invocation); ``batchItemFailures`` next to it follow the usual rules. Every target that
renders AWS events (in-process Lambda-style handlers, environments, HTTP functions) uses these two
helpers; typed handlers take no windows. How windows are cut and closed is the partition's business
(:mod:`poller.engine.streams.windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from poller.config.resolved import ResolvedMapping, SourceSettings
from poller.engine.outcome import Failed, ItemId, Outcome, parse_lambda_response
from poller.records import Batch, Record, TumblingWindow
from poller.timestamps import iso_seconds

__all__ = [
    "WindowedSettings",
    "parse_window_response",
    "tumbling_window_seconds",
    "window_event",
]


@dataclass(frozen=True, slots=True)
class WindowedSettings(SourceSettings):
    """What a shard stream mapping with ``TumblingWindowInSeconds`` resolves for its source."""

    #: The window's length in seconds (1..900).
    tumbling_window: int


def tumbling_window_seconds(mapping: ResolvedMapping) -> int:
    """The mapping's window length; 0 when it has no tumbling window."""
    settings = mapping.settings
    return settings.tumbling_window if isinstance(settings, WindowedSettings) else 0


def window_event(event: dict[str, Any], batch: Batch, window: TumblingWindow) -> dict[str, Any]:
    """``event`` with the window fields Lambda adds for ``window`` (``event`` is changed)."""
    event["window"] = {"start": iso_seconds(window.start), "end": iso_seconds(window.end)}
    event["state"] = window.state
    event["shardId"] = batch.partition
    event["eventSourceARN"] = window.source_arn
    event["isFinalInvokeForWindow"] = window.final
    event["isWindowTerminatedEarly"] = window.terminated_early
    return event


def parse_window_response(
    response: Any,
    records: Sequence[Record],
    identify: Callable[[Record], ItemId],
    *,
    report_batch_item_failures: bool,
) -> Outcome:
    """A windowed invocation's outcome, carrying the response's ``state``.

    No ``state`` (or one that is not a JSON object) fails the invocation, as on Lambda; otherwise
    ``batchItemFailures`` are read by the usual rules.
    """
    if not isinstance(response, dict) or "state" not in response:
        return Failed(
            "the response has no state (a tumbling window's function must return "
            '{"state": {...}})',
            function_error=None,
        )
    state = response["state"]
    if not isinstance(state, dict):
        return Failed(
            f"the response's state is a {type(state).__name__}, not an object",
            function_error=None,
        )
    outcome = parse_lambda_response(
        response, records, identify, report_batch_item_failures=report_batch_item_failures
    )
    if isinstance(outcome, Failed):
        return outcome
    return replace(outcome, state=state)
