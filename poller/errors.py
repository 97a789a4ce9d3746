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
    └── StoreError               the state store cannot be opened or written

Handler failures are not exceptions of poller: a handler that raises, times out or answers
malformed JSON produces a *failed outcome* that the retry policy handles (see ``poller.engine``).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DestinationError",
    "HandlerImportError",
    "PollerError",
    "SourceError",
    "SourceNotFoundError",
    "StoreError",
    "causes",
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
