"""``poller redrive``: hand a mapping's discarded records to its function again (being built)."""

from __future__ import annotations

import argparse
import sys

from poller.cli.loading import EXIT_CONFIG
from poller.config import PollerConfig

__all__ = ["add_redrive_arguments", "redrive_command"]


def add_redrive_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--mapping", required=True, metavar="UUID", help="the mapping to redrive")


def redrive_command(config: PollerConfig, args: argparse.Namespace) -> int:
    print("poller: redrive is not available yet", file=sys.stderr)
    return EXIT_CONFIG
