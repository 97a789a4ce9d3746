"""``poller run`` as a child process: a handler module that logs what it saw, and its output."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

__all__ = ["handler_module", "json_lines", "start_poller"]

# --- ``poller run`` child processes --------------------------------------------------------------

_HANDLER_PRELUDE = """
import json
import os
import time

_PATH = os.environ["SEEN_LOG"]
_DELAY = float(os.environ.get("HANDLER_DELAY", "0"))


def _log(entry):
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
"""


def handler_module(doc: str, handle: str) -> str:
    """The source of a handler module for ``poller run`` children, with docstring ``doc``.

    ``handle`` (its source) may call ``_log(entry)``, which appends ``entry`` to $SEEN_LOG as a
    JSON line and fsyncs it before the handler goes on, so a kill -9 cannot lose what the test
    reads back with :func:`json_lines`; and it may sleep ``_DELAY`` ($HANDLER_DELAY) seconds.
    """
    return f'"""{doc}"""\n{_HANDLER_PRELUDE}\n\n{textwrap.dedent(handle).lstrip()}'


async def start_poller(
    root: Path, *args: str, seen_log: Path, delay: float, output: Path
) -> Process:
    """Start ``poller run config.toml *args`` as a child process in ``root``.

    Its handler module is importable from ``root``; the handler logs to ``seen_log`` and works
    ``delay`` seconds a batch (see :func:`handler_module`); stdout and stderr go to ``output``.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "SEEN_LOG": str(seen_log),
        "HANDLER_DELAY": str(delay),
    }
    with output.open("wb") as out:
        return await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", "config.toml", *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=out,
        )


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The entries a child process appended to ``path`` as JSON lines (none before its first).

    A line cut short by a kill is not a complete entry, so it is left out.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
