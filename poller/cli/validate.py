"""``poller validate``: check a config (and the handlers it names) without running it."""

from __future__ import annotations

import sys

from poller.cli.loading import EXIT_CONFIG, EXIT_OK
from poller.config import PollerConfig
from poller.errors import ConfigError
from poller.runtime import Worker
from poller.runtime.wiring import check_handlers

__all__ = ["validate_command"]


def validate_command(config: PollerConfig) -> int:
    """Print the config's problems (exit 2), or that it is OK (exit 0)."""
    try:
        Worker(config)  # looks handlers up: a missing module is a config problem too
        problems = check_handlers(config)  # imports what environments would import
        if problems:
            raise ConfigError(problems)
    except ConfigError as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    count = len(config.mappings)
    print(f"config OK: {count} mapping{'s' if count != 1 else ''}")
    return EXIT_OK
