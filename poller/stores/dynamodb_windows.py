"""A tumbling window's start and state on a DynamoDB checkpoint item.

``window_start`` (N) and ``window_state`` (B: the state's JSON, zlib-compressed, so a state near
Lambda's 1 MB limit usually fits DynamoDB's 400 KB item) are present while a window is open.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

from poller.engine.state import Checkpoint

__all__ = ["window_attributes", "with_window"]


def window_attributes(checkpoint: Checkpoint) -> dict[str, Any]:
    """The item attributes that carry ``checkpoint``'s window (none when no window is open)."""
    if checkpoint.window_start is None:
        return {}
    state = (checkpoint.window_state or "{}").encode()
    return {
        "window_start": {"N": str(checkpoint.window_start)},
        "window_state": {"B": zlib.compress(state)},
    }


def with_window(checkpoint: Checkpoint, item: dict[str, Any]) -> Checkpoint:
    """``checkpoint`` with the window the item it was read from carries."""
    if "window_start" not in item:
        return checkpoint
    state = item.get("window_state", {}).get("B")
    return dataclasses.replace(
        checkpoint,
        window_start=int(item["window_start"]["N"]),
        window_state=zlib.decompress(state).decode() if state is not None else "{}",
    )
