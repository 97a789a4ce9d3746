"""Moving a queue mapping's dead letters back to its source queue (being built)."""

from __future__ import annotations

from typing import TextIO

from poller.config import MappingConfig, PollerConfig

__all__ = ["redrive_dead_letters"]


async def redrive_dead_letters(
    config: PollerConfig,
    mapping: MappingConfig,
    *,
    dead_letter_queue: str | None,
    rate_per_second: float,
    max_messages: int | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Move messages from ``mapping``'s dead-letter queue back to its source queue; the exit code."""
    raise NotImplementedError("dead-letter redrive")
