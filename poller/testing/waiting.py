"""Bounded waits for tests: until a condition holds, or until a worker is idle."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from poller.runtime.worker import Worker

__all__ = ["wait_until", "wait_until_idle"]


async def wait_until(
    condition: Callable[[], bool], *, within: float = 10.0, what: str = "the condition"
) -> None:
    """Return once ``condition()`` holds; AssertionError naming ``what`` after ``within`` s.

    For state that has no event to await (a worker's idleness, a count on a server): it looks
    every 10 ms, so it costs nothing while it waits.
    """
    with anyio.move_on_after(within):
        while not condition():  # noqa: ASYNC110 - no event says the condition changed
            await anyio.sleep(0.01)
        return
    raise AssertionError(f"waited {within} s for {what}")


async def wait_until_idle(worker: Worker, *, within: float = 10.0, steady: float = 0.0) -> None:
    """Return once every mapping of ``worker`` is caught up with nothing in flight (and has been
    for ``steady`` seconds); AssertionError with the worker's status after ``within`` s."""
    since: float | None = None
    with anyio.move_on_after(within):
        while True:
            now = anyio.current_time()
            if worker.idle:
                since = now if since is None else since
                if now - since >= steady:
                    return
            else:
                since = None
            await anyio.sleep(0.01)
    raise AssertionError(f"worker not idle after {within} s: {worker.status()}")
