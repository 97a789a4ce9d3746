"""``python -m poller.cli``: the ``poller`` command."""

from poller.cli import console

console()
