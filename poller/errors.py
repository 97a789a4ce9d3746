"""The one exception tree of poller.

Every error poller raises on purpose derives from :class:`PollerError`, so a host service can catch
the whole family in one place::

    PollerError
    ├── ConfigError              a config value is invalid; raised before anything starts
    │   └── ConfigFileError      the config file is not TOML text (poller.config.loading)
    ├── HandlerImportError       ``Handler = "module:function"`` cannot be imported
    ├── SourceError              a source cannot be read (missing stream, access denied, ...)
    │   └── SourceNotFoundError  the stream, table or queue named by the ARN does not exist
    ├── DestinationError         an on-failure destination refused or could not take a record
    ├── StoreError               the state store cannot be opened or written
    ├── ReplayRefused            ``poller replay`` cannot move a checkpoint as asked
    │                            (poller.recovery.replay)
    └── LeasesHeld               ``poller replay`` found leases a live worker holds
                                 (poller.recovery.replay_leases)

Handler failures are not exceptions of poller: a handler that raises, times out or answers
malformed JSON produces a *failed outcome* that the retry policy handles (see ``poller.engine``).

Logging a failure names its causes, not their wrapping: :func:`causes` opens exception groups
(task groups nest them), :func:`during` marks an error with what poller was doing when it
happened (without changing its type, so callers still catch it by class), and
:func:`failure_fields` turns both into the ``error``, ``error_type`` and ``operation`` fields of
a log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "ConfigError",
    "DestinationError",
    "HandlerImportError",
    "PollerError",
    "SourceError",
    "SourceNotFoundError",
    "StoreError",
    "causes",
    "during",
    "failure_fields",
    "operation_of",
]


class PollerError(Exception):
    """Base class of every error poller raises on purpose."""


class ConfigError(PollerError):
    """A config value is invalid; the message names the field, the value and what is allowed."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid config:\n  " + "\n  ".join(self.problems))


class HandlerImportError(PollerError):
    """The ``module:function`` handler reference cannot be imported or is not callable."""


class SourceError(PollerError):
    """A source cannot be read; the message names the source and the cause."""


class SourceNotFoundError(SourceError):
    """The stream, table or queue named by the event source ARN does not exist."""


class DestinationError(PollerError):
    """An on-failure destination could not take a record (it is retried, never dropped)."""


class StoreError(PollerError):
    """The state store cannot be opened, read or written."""


def causes(error: BaseException) -> list[BaseException]:
    """The errors an exception group holds, however deeply nested (task groups nest); a plain
    error is its own cause. Logs and messages name these, not "unhandled errors in a
    TaskGroup"."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in causes(inner)]
    return [error]


#: How :func:`during` marks an error (an exception note: tracebacks show it too).
_OPERATION_NOTE = "poller was "


@contextmanager
def during(operation: str) -> Iterator[None]:
    """Mark an error raised in the block with ``operation`` ("writing a checkpoint"), so the line
    that finally logs it can say what failed; the innermost mark wins. The error itself passes
    through unchanged (an exception note, PEP 678)."""
    try:
        yield
    except Exception as error:
        if operation_of(error) is None:
            error.add_note(_OPERATION_NOTE + operation)
        raise


def operation_of(error: BaseException) -> str | None:
    """The operation :func:`during` marked ``error`` with, or None."""
    for note in getattr(error, "__notes__", ()):
        if isinstance(note, str) and note.startswith(_OPERATION_NOTE):
            return note[len(_OPERATION_NOTE) :]
    return None


def failure_fields(error: BaseException) -> dict[str, str]:
    """``error`` (the message), ``error_type`` and, when known, ``operation``, for a log line or
    a status document: of the error itself, or of every error an exception group holds (their
    messages joined), never "unhandled errors in a TaskGroup"."""
    found = list(_causes_with_operation(error, None))
    if len(found) == 1:
        ((cause, operation),) = found
        message = str(cause) or type(cause).__name__
    else:
        message = "; ".join(dict.fromkeys(f"{type(c).__name__}: {c}" for c, _ in found))
    fields = {
        "error": message,
        "error_type": ", ".join(dict.fromkeys(type(c).__name__ for c, _ in found)),
    }
    operation = next((op for _, op in found if op is not None), None)
    if operation is not None:
        fields["operation"] = operation
    return fields


def _causes_with_operation(
    error: BaseException, outer: str | None
) -> Iterator[tuple[BaseException, str | None]]:
    """Each cause with the operation marked on it or, failing that, on a group around it."""
    operation = operation_of(error) or outer
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _causes_with_operation(inner, operation)
    else:
        yield error, operation
