"""``poller validate``: check a config, the handlers it names, its functions' environments and
its store, without running anything.

Exit codes: 0 when nothing stands in the way of ``poller run`` (notes, such as a DynamoDB table
``poller run`` will create, are printed after "config OK"); 2 with every problem found, one a
line, when the config, a handler, an environment or the store is refused; 1 when the config has
no problem but the store could not be reached (its endpoint did not answer in time): the config
may be right and the service down, so a deploy script can tell the two apart.
"""

from __future__ import annotations

import sys

import anyio

from poller.cli.environment_checks import environment_problems
from poller.cli.loading import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    handler_entries,
    handler_problems,
)
from poller.config import PollerConfig
from poller.errors import ConfigError
from poller.observability import configure_logging
from poller.runtime import Worker
from poller.stores.checks import StoreVerdict, check_store

__all__ = ["validate_command"]


def validate_command(config: PollerConfig) -> int:
    """Print every problem (exit 2), that the store cannot be reached (exit 1), or that the
    config is OK with any notes (exit 0). Each check runs whatever the others found, so one run
    reports everything."""
    # What the checks open logs as it would in a worker; only errors matter here, on stderr.
    configure_logging(level="error", format=config.logging.format, stream=sys.stderr)
    problems: list[str] = []
    try:
        Worker(config)  # looks handlers up and checks the extras the sources need
    except ConfigError as error:
        problems.extend(error.problems)
    # Handlers of process environments are imported in a probe environment of their own (with
    # their variables); the others here, as the worker imports them.
    in_worker = [entry for entry in handler_entries(config) if entry.runs != "process"]
    for problem in [*handler_problems(in_worker), *environment_problems(config)]:
        if problem not in problems:  # a missing handler is found by more than one check
            problems.append(problem)
    verdict: StoreVerdict = anyio.run(check_store, config)
    problems.extend(verdict.problems)
    if problems:
        print(f"poller: {ConfigError(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    if verdict.unreachable is not None:
        print(f"poller: store unreachable: {verdict.unreachable}", file=sys.stderr)
        return EXIT_FAILED
    count = len(config.mappings)
    print(f"config OK: {count} mapping{'s' if count != 1 else ''}")
    for note in verdict.notes:
        print(f"note: {note}")
    return EXIT_OK
