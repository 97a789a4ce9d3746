"""Moving an ActiveMQ mapping's dead letters back to its source queue (being built)."""

from __future__ import annotations

from typing import TextIO

from poller.aws import AwsClients
from poller.config.resolved import ResolvedMapping
from poller.errors import SourceError

__all__ = ["redrive_activemq"]


async def redrive_activemq(
    mapping: ResolvedMapping,
    clients: AwsClients,
    *,
    dead_letter_queue: str | None,
    rate_per_second: float,
    max_messages: int | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Move (or list) the dead letters; 0 when all moved, 1 when one failed."""
    raise SourceError("ActiveMQ dead-letter redrive is not available yet")
