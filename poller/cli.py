"""The ``poller`` command.

::

    poller run CONFIG.toml [--exit-when-idle SECONDS]
    poller run --esm mapping.json --handler module:function [--region R] [--endpoint-url URL]
    poller validate CONFIG.toml | --esm mapping.json --handler module:function

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, or idle with ``--exit-when-idle``); 2 when the
config is refused; 1 when the worker failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import structlog

from poller import __version__
from poller.config import AwsConfig, PollerConfig, StoreConfig, load_config, load_esm_json
from poller.errors import ConfigError, PollerError
from poller.observability import configure_logging
from poller.runtime import Worker
from poller.runtime.wiring import check_handlers

__all__ = ["console", "main"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
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
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("config", nargs="?", help="TOML config file")
        command.add_argument(
            "--esm",
            metavar="JSON",
            help="a mapping as `aws lambda get-event-source-mapping` prints",
        )
        command.add_argument("--handler", metavar="MODULE:FUNCTION", help="handler for --esm")
        command.add_argument("--region", help="AWS region for --esm (default: AWS_REGION)")
        command.add_argument(
            "--endpoint-url", help="AWS endpoint for --esm (an emulator, or 'embedded')"
        )
        command.add_argument(
            "--store", help="store URL for --esm (default sqlite:///./.poller/state.db)"
        )
        if name == "run":
            command.add_argument(
                "--exit-when-idle",
                type=float,
                metavar="SECONDS",
                help="exit 0 once every shard has been caught up with nothing in flight this long",
            )
    return parser


def _load(args: argparse.Namespace) -> PollerConfig:
    if args.esm and args.config:
        raise ConfigError("give either a CONFIG file or --esm, not both")
    if args.esm:
        try:
            text = Path(args.esm).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"{args.esm}: cannot read the mapping JSON ({error.strerror})"
            ) from None
        aws_fields: dict[str, str] = {}
        if args.region:
            aws_fields["region"] = args.region
        if args.endpoint_url:
            aws_fields["endpoint_url"] = args.endpoint_url
        try:
            aws = AwsConfig.model_validate(aws_fields)
            store = StoreConfig(url=args.store) if args.store else None
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return load_esm_json(text, handler=args.handler, aws=aws, store=store)
    if not args.config:
        raise ConfigError("give a CONFIG file, or --esm mapping.json --handler module:function")
    if args.handler or args.region or args.endpoint_url or args.store:
        raise ConfigError("--handler, --region, --endpoint-url and --store go with --esm only")
    config = load_config(args.config)
    # Handler modules are found in the current directory, PYTHONPATH, and next to the config file.
    config_dir = str(Path(args.config).resolve().parent)
    if config_dir not in sys.path:
        sys.path.append(config_dir)
    return config


async def _run(worker: Worker, exit_when_idle: float | None) -> None:
    try:
        await _run_with_signals(worker, exit_when_idle)
    except BaseExceptionGroup as group:
        # One failure inside the task group: raise it as itself so main() can report it cleanly.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _run_with_signals(worker: Worker, exit_when_idle: float | None) -> None:
    async with anyio.create_task_group() as group:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    structlog.get_logger("poller").info(
                        "signal received; stopping", signal=signal.Signals(signum).name
                    )
                    worker.stop()

        group.start_soon(stop_on_signal)
        await worker.run(exit_when_idle=exit_when_idle)
        group.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``poller`` console script."""
    args = _parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "validate":
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
    configure_logging(
        level=config.logging.level, format=config.logging.format, payloads=config.logging.payloads
    )
    log = structlog.get_logger("poller")
    try:
        worker = Worker(config)
        anyio.run(_run, worker, args.exit_when_idle)
    except ConfigError as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except PollerError as error:
        log.error("worker failed", error=str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


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


if __name__ == "__main__":
    console()
