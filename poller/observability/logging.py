"""Logging setup: structlog, JSON when stdout is not a terminal, readable on a terminal.

Every engine line carries ``mapping`` and ``shard`` (and ``batch`` where one exists). Record
payloads are never logged unless ``[logging] payloads = true``; :func:`redact_payloads` drops the
keys that could carry them. Credentials are never logged, whatever the settings:
:func:`redact_secrets` runs last before rendering, on every line, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog

from poller.config.redaction import REDACTED, redact_text, secret_key_name

__all__ = ["configure_logging", "redact_payloads", "redact_secrets"]

_PAYLOAD_KEYS = frozenset({"data", "payload", "body", "record_data"})


def redact_payloads(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that removes payload-carrying keys from log lines."""
    for key in _PAYLOAD_KEYS & event_dict.keys():
        event_dict[key] = "<redacted>"
    return event_dict


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that keeps credentials out of a line: a value under a key naming a
    credential (``password``, ``token``, ``authorization``...) is replaced, and every string,
    the event and a formatted traceback included, loses the login of any URL in it.

    Why here and not only at the call sites: a library's exception message may quote the URL it
    connected to, and a call site cannot know what the message holds.
    """
    for key, value in event_dict.items():
        if value is None:
            continue
        if secret_key_name(key) and not isinstance(value, Mapping | list | tuple):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redacted(value)
    return event_dict


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED
            if isinstance(k, str) and secret_key_name(k) and isinstance(v, str | int | float)
            else _redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


class _StandardStream:
    """``sys.stdout`` or ``sys.stderr`` as it is at each write, not as it was when logging was
    configured: a program (or a test runner) that swaps the standard stream later, and closes the
    old one, must not leave the log writing to a closed file. (structlog keeps a lock per stream
    in a weak-keyed table, hence ``__weakref__``.)"""

    __slots__ = ("__weakref__", "_name")

    def __init__(self, name: str) -> None:
        self._name = name

    def _current(self) -> TextIO:
        stream: TextIO = getattr(sys, self._name)
        return stream

    def write(self, text: str) -> int:
        return self._current().write(text)

    def flush(self) -> None:
        self._current().flush()

    def isatty(self) -> bool:
        return self._current().isatty()


def _standard(stream: TextIO) -> TextIO | _StandardStream:
    """``stream``, or a late-bound stand-in when it is the process's stdout or stderr."""
    for name in ("stdout", "stderr"):
        if stream is getattr(sys, name):
            return _StandardStream(name)
    return stream


def configure_logging(
    *,
    level: str = "info",
    format: str = "auto",
    payloads: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the process (the CLI calls this; libraries leave it to the host)."""
    out: TextIO | _StandardStream = _standard(stream or sys.stdout)
    as_json = format == "json" or (format == "auto" and not out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not payloads:
        processors.append(redact_payloads)
    # Tracebacks are formatted as plain text before the secrets are redacted from them, on the
    # console too: a pretty formatter (rich) would print the frames' local variables, which may
    # hold a password, after any processor could see them.
    processors += [structlog.processors.format_exc_info, redact_secrets]
    if as_json:
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", out)),
        cache_logger_on_first_use=False,
    )
