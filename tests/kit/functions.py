"""Functions under test: handler modules written to disk, configs with ``[[functions]]``, and a
worker run with an in-memory source until a condition holds.

Handler modules log what they saw with ``_log(entry)`` (a JSON line, fsynced) to the file named by
their ``SEEN_LOG`` variable, so a test reads back what every environment did, even after a kill.
"""

from __future__ import annotations

import base64
import contextlib
import os
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from poller import Worker, parse_config
from poller.config import PollerConfig
from poller.testing import wait_until
from tests.kit.names import KINESIS_ARN
from tests.kit.processes import handler_module, json_lines

__all__ = [
    "FunctionBench",
    "kinesis_data",
    "pid_alive",
]


def kinesis_data(record: dict[str, Any]) -> str:
    """The text of one record of a rendered Kinesis event."""
    return base64.b64decode(record["kinesis"]["data"]).decode()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a reaped process does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FunctionBench:
    """A working directory with handler modules, and a worker to run them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen = root / "seen.jsonl"

    def module(self, name: str, handle: str, doc: str = "A handler under test.") -> None:
        """Write ``name.py`` with ``handle`` (its source) after the logging prelude."""
        (self.root / f"{name}.py").write_text(handler_module(doc, textwrap.dedent(handle)))

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """What the handlers logged, optionally only entries with these key/values."""
        return [e for e in json_lines(self.seen) if all(e.get(k) == v for k, v in match.items())]

    def config(
        self,
        functions: list[dict[str, Any]],
        mapping: dict[str, Any] | None = None,
        **worker: Any,
    ) -> PollerConfig:
        """One Kinesis mapping (UUID "m", TRIM_HORIZON) invoking the first function."""
        for function in functions:
            variables = function.setdefault("Environment", {}).setdefault("Variables", {})
            variables.setdefault("SEEN_LOG", str(self.seen))
        fields = {
            "UUID": "m",
            "EventSourceArn": KINESIS_ARN,
            "StartingPosition": "TRIM_HORIZON",
            "FunctionName": functions[0]["FunctionName"],
            "BatchSize": 10,
        }
        fields.update(mapping or {})
        fields = {name: value for name, value in fields.items() if value is not None}
        return parse_config(
            {
                "store": {"url": "memory://"},
                "worker": {"idle_poll_seconds": 0.01, "shutdown_grace_seconds": 5, **worker},
                "functions": functions,
                "mappings": [fields],
            }
        )

    @contextlib.asynccontextmanager
    async def running(self, config: PollerConfig, source: Any) -> AsyncIterator[Worker]:
        """A started worker reading ``source`` for mapping "m"; stopped on exit."""
        worker = Worker(config, sources={"m": source})
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop_and_wait()

    async def until(self, condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
        """Wait for ``condition`` (what the handlers logged, usually)."""
        await wait_until(condition, within=within, what=what)
