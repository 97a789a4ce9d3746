"""``poller replay``: move a stream mapping's checkpoints (being built)."""

from __future__ import annotations

import argparse
import sys

from poller.cli.loading import EXIT_CONFIG
from poller.config import PollerConfig

__all__ = ["add_replay_arguments", "replay_command"]


def add_replay_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--mapping", required=True, metavar="UUID", help="the mapping to replay")


def replay_command(config: PollerConfig, args: argparse.Namespace) -> int:
    print("poller: replay is not available yet", file=sys.stderr)
    return EXIT_CONFIG
