"""``poller run``: run every mapping of a config until stopped (or idle)."""

from __future__ import annotations

import argparse
import signal
import sys

import anyio
import structlog

from poller.cli.loading import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from poller.config import PollerConfig
from poller.errors import ConfigError, causes, failure_fields
from poller.observability import configure_logging
from poller.runtime import Worker

__all__ = ["add_run_arguments", "run_command"]


def add_run_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit 0 once every shard has been caught up with nothing in flight this long",
    )


def run_command(config: PollerConfig, args: argparse.Namespace) -> int:
    """Run the worker in this process; the exit code says how it ended."""
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
    except Exception as error:  # a library's own error (no credentials, say): named, no trace
        log.error("worker failed", **failure_fields(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


async def _run(worker: Worker, exit_when_idle: float | None) -> None:
    try:
        await _run_with_signals(worker, exit_when_idle)
    except BaseExceptionGroup as group:
        # Task groups wrap what failed inside them: raise the failure itself so main() reports
        # it cleanly (the first of several, the others are logged).
        found = causes(group)
        for other in found[1:]:
            structlog.get_logger("poller").error("worker failed", **failure_fields(other))
        raise found[0] from None


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
