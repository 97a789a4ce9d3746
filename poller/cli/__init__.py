"""The ``poller`` command.

::

    poller run CONFIG.toml [--exit-when-idle SECONDS]
    poller run --esm mapping.json --handler module:function [--region R] [--endpoint-url URL]
    poller validate CONFIG.toml | --esm mapping.json --handler module:function
    poller status CONFIG.toml [--mapping UUID]... [--json] | --url http://HOST:PORT [--json]
    poller redrive CONFIG.toml --mapping UUID [--from DESTINATION] [--dry-run] ...
    poller replay CONFIG.toml --mapping UUID (--at-timestamp T | --at-sequence P --partition ID
                  | --trim-horizon | --latest) [--force]

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, or idle with ``--exit-when-idle``); 2 when the
config is refused; 1 when the worker failed (``status``: when the store or worker cannot be read;
``validate``: when the store does not answer).
One module per command.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence

import structlog

from poller import __version__
from poller.cli.loading import EXIT_CONFIG, add_config_arguments, load
from poller.cli.redrive import add_redrive_arguments, redrive_command
from poller.cli.replay import add_replay_arguments, replay_command
from poller.cli.run import add_run_arguments, run_command
from poller.cli.status import add_status_arguments, status_command
from poller.cli.validate import validate_command
from poller.errors import ConfigError

__all__ = ["console", "main"]

#: How long the process may take to exit once the worker stopped before it is ended anyway.
_EXIT_WAIT_SECONDS = 2.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller",
        description="Run AWS Lambda event source mappings anywhere.",
    )
    parser.add_argument("--version", action="version", version=f"poller {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run every mapping of a config until stopped"),
        ("validate", "check a config and print its problems"),
        ("status", "show checkpoints, idempotency records and leases, or a running worker's state"),
        ("redrive", "hand a mapping's discarded records to its function again"),
        ("replay", "move a stream mapping's checkpoints (or a Kafka group's offsets)"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        add_config_arguments(command)
        if name == "run":
            add_run_arguments(command)
        if name == "status":
            add_status_arguments(command)
        if name == "redrive":
            add_redrive_arguments(command)
        if name == "replay":
            add_replay_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``poller`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "status":  # loads its config itself: --url needs none
        return status_command(args)
    try:
        config = load(args)
    except ConfigError as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "validate":
        return validate_command(config)
    if args.command == "redrive":
        return redrive_command(config, args)
    if args.command == "replay":
        return replay_command(config, args)
    return run_command(config, args)


def console() -> None:
    """The ``poller`` command: :func:`main`, then an exit that no stuck handler thread delays."""
    code = main()
    _exit_past_stuck_threads(code)
    sys.exit(code)


def _exit_past_stuck_threads(code: int) -> int:
    """Make sure the process ends soon with ``code``, even if a handler in the worker's threads
    (``Isolation = "thread"``) still runs past its timeout: a thread cannot be stopped, and the
    interpreter would wait for it at exit. A clean exit ends the process before the watchdog."""

    def watchdog() -> None:
        time.sleep(_EXIT_WAIT_SECONDS)
        structlog.get_logger("poller").warning(
            "handler threads still running past their timeout; exiting without them"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=watchdog, name="poller-exit-watchdog", daemon=True).start()
    return code
