"""A function served by environments that run elsewhere (``RuntimeApi = "HOST:PORT"``).

poller listens on the address; any Lambda runtime interface client pointed at it with
``AWS_LAMBDA_RUNTIME_API`` (a sidecar container from an unmodified Lambda base image, say) asks
for invocations there. Each environment runs one invocation at a time, so the function's
concurrency is the number of environments connected: an invocation that finds none waiting
queues until one asks (back-pressure, counted as a throttle).

The function's Timeout starts when an environment takes the invocation. poller does not own
these environments and cannot stop one: an environment that answers late, or vanishes
mid-invocation, fails that invocation at its deadline (a function error the mapping retries), and
its late answer is refused as an unknown request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import structlog

from poller.engine.invocation import Invocation
from poller.functions.reply import Reply, timed_out
from poller.functions.runtime_api import Channel, PendingInvocation, RuntimeApiServer

__all__ = ["ExternalFunction"]

_log = structlog.get_logger("poller.functions")


class ExternalFunction:
    """Invocations handed to whichever connected environment asks next."""

    def __init__(self, name: str, listen: str, server: RuntimeApiServer, *, arn: str) -> None:
        self.name = name
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._server = server
        self._arn = arn
        self.channel = Channel(name)
        self.port = 0

    async def start(self) -> None:
        """Listen for environments."""
        self.port = await self._server.listen(self.channel, self._host, self._port)
        _log.info(
            "listening for function environments (Lambda Runtime API)",
            function=self.name,
            address=f"{self._host}:{self.port}",
        )

    async def call(
        self,
        payload: bytes,
        invocation: Invocation,
        time_limit: float,
        throttled: Callable[[], None],
    ) -> Reply:
        """Queue the invocation for the next environment; time it once one takes it."""
        pending = PendingInvocation(invocation.request_id, payload, self._arn, timeout=time_limit)
        if invocation.trace_header is not None:
            pending.trace_id = invocation.trace_header
        if self.channel.polling == 0:
            throttled()
        self.channel.submit(pending)
        try:
            waits: list[asyncio.Future[Any]] = [pending.taken, pending.reply]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            with anyio.move_on_after(time_limit) as scope:
                reply = await asyncio.shield(pending.reply)
        finally:
            self.channel.withdraw(pending)
        if scope.cancelled_caught:
            pending.answer(timed_out(time_limit))
            _log.warning(
                "function environment did not answer in time; it may have gone away",
                function=self.name,
                request_id=invocation.request_id,
            )
            return timed_out(time_limit)
        return reply

    async def aclose(self) -> None:
        """Stop listening (connected environments see their connection refused)."""
        if self.port:
            port, self.port = self.port, 0
            await self._server.unlisten(port)
