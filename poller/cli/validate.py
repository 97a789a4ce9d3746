"""``poller validate``: check a config (and the handlers it names) without running it."""

from __future__ import annotations

import sys

from poller.cli.loading import EXIT_CONFIG, EXIT_OK, handler_entries, handler_problems
from poller.config import PollerConfig
from poller.errors import ConfigError
from poller.runtime import Worker
from poller.runtime.wiring import check_handlers

__all__ = ["validate_command"]


def validate_command(config: PollerConfig) -> int:
    """Print every problem of the config's handlers and sources (exit 2), or that it is OK
    (exit 0). Each check runs whatever the others found, so one run reports everything."""
    problems: list[str] = []
    try:
        Worker(config)  # looks handlers up and checks the extras the sources need
    except ConfigError as error:
        problems.extend(error.problems)
    for problem in [*check_handlers(config), *handler_problems(handler_entries(config))]:
        if problem not in problems:  # a missing handler is found by more than one check
            problems.append(problem)
    if problems:
        print(f"poller: {ConfigError(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    count = len(config.mappings)
    print(f"config OK: {count} mapping{'s' if count != 1 else ''}")
    return EXIT_OK
