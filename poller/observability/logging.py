"""Logging setup: structlog, JSON when stdout is not a terminal, readable on a terminal.

Every engine line carries ``mapping`` and ``shard`` (and ``batch`` where one exists). Record
payloads are never logged unless ``[logging] payloads = true``; :func:`redact_payloads` drops the
keys that could carry them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "redact_payloads"]

_PAYLOAD_KEYS = frozenset({"data", "payload", "body", "record_data"})


def redact_payloads(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that removes payload-carrying keys from log lines."""
    for key in _PAYLOAD_KEYS & event_dict.keys():
        event_dict[key] = "<redacted>"
    return event_dict


def configure_logging(
    *,
    level: str = "info",
    format: str = "auto",
    payloads: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the process (the CLI calls this; libraries leave it to the host)."""
    out = stream or sys.stdout
    as_json = format == "json" or (format == "auto" and not out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not payloads:
        processors.append(redact_payloads)
    if as_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
