"""The seam every way of reaching code implements: one invocation in, one :class:`Reply` out.

A function is shared by every mapping that names it; it owns its environments (processes, a
Runtime API listener, an HTTP connection pool) and closes them with :meth:`Function.aclose`.
The mapping's side renders the event and reads the reply
(:class:`~poller.functions.lambda_target.FunctionTarget`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from poller.engine.invocation import Invocation
from poller.functions.reply import Reply

__all__ = ["Function"]


class Function(Protocol):
    """A function that runs invocations of rendered Lambda events."""

    name: str

    async def call(
        self,
        payload: bytes,
        invocation: Invocation,
        time_limit: float,
        throttled: Callable[[], None],
    ) -> Reply:
        """Run one invocation within ``time_limit`` seconds of an environment taking it.

        ``throttled`` is called once when the invocation has to wait for a free environment.
        Never raises for what the function did: that is a :class:`FunctionError` reply.
        """
        ...

    async def aclose(self) -> None:
        """Stop every environment; nothing of the function keeps running."""
        ...
