"""Bounded waits that fail with a message naming what they waited for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio

from poller.engine.protocols import PartitionReader
from poller.engine.queues import QueueMappingRunner
from poller.engine.streams import StreamMappingRunner
from poller.records import Record
from poller.runtime.worker import Worker
from poller.testing import wait_until

__all__ = ["logged", "read_until", "run_until", "run_until_idle", "wait_for_event", "wait_until"]

# --- waits ---------------------------------------------------------------------------------------


async def wait_for_event(event: anyio.Event, *, within: float, failing: Callable[[], str]) -> None:
    """Await ``event`` for at most ``within`` seconds; else AssertionError with ``failing()``,
    which says what had happened by then (how many messages came, ...)."""
    with anyio.move_on_after(within):
        await event.wait()
        return
    raise AssertionError(failing())


async def run_until_idle(worker: Worker, *, within: float = 20.0, idle_for: float = 0.3) -> None:
    """Run ``worker`` until every mapping has been idle for ``idle_for`` seconds.

    Fails the test with the worker's status when that does not happen within ``within`` seconds.
    """
    try:
        with anyio.fail_after(within):
            await worker.run(exit_when_idle=idle_for)
    except TimeoutError:
        raise AssertionError(
            f"the worker did not become idle for {idle_for} s within {within} s; "
            f"status: {worker.status()}"
        ) from None
    assert worker.stopped_by_idle, "the worker stopped, but not because it was idle"


async def run_until(
    runner: StreamMappingRunner | QueueMappingRunner,
    condition: Callable[[], bool],
    *,
    within: float = 15.0,
    every: float = 0.01,
    during: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Run an engine runner until ``condition()`` holds, then stop it gracefully.

    TimeoutError when the whole run, the graceful stop included, takes more than ``within``
    seconds. ``during`` (a test's own step, such as publishing late) runs before each look.
    """
    with anyio.fail_after(within):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run)
            while not condition():
                if during is not None:
                    await during()
                await anyio.sleep(every)
            runner.stop()


async def read_until(reader: PartitionReader, count: int, within: float = 10.0) -> list[Any]:
    """Read until ``count`` records arrived (fails after ``within`` seconds)."""
    records: list[Record] = []
    with anyio.fail_after(within):
        while len(records) < count:
            result = await reader.read()
            records.extend(result.records)
    return records


def logged(logs: Iterable[Mapping[str, Any]], **fields: Any) -> list[Mapping[str, Any]]:
    """The captured log entries (structlog's ``capture_logs``) that carry all of ``fields``."""
    return [entry for entry in logs if all(entry.get(k) == v for k, v in fields.items())]
