"""A function whose environments are processes poller starts (``Handler`` or ``Command``).

The pool keeps idle environments warm and hands each invocation to one of them, the most recently
used first (as Lambda reuses warm environments). It starts a new environment when none is idle,
up to ``ReservedConcurrentExecutions``; past that an invocation waits for one to come back: that
is back-pressure, counted as a throttle, never an error.

An environment serves one invocation at a time. After a timeout it is killed, and the invocation
returns only once the process is gone, so the retry never overlaps it. After a crash, an init
error or an out-of-memory stop it is replaced by a fresh one on the next invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import anyio
import structlog

from poller.engine.invocation import Invocation
from poller.functions.process import EnvironmentLaunch, ProcessEnvironment, memory_enforced
from poller.functions.reply import FunctionError, Reply, timed_out
from poller.functions.runtime_api import PendingInvocation, RuntimeApiServer

__all__ = ["INIT_LIMIT_SECONDS", "ProcessFunction"]

_log = structlog.get_logger("poller.functions")

#: Lambda's limit on an environment's init; past it (plus the function's Timeout) the invocation
#: times out and the environment is stopped.
INIT_LIMIT_SECONDS = 10.0


class ProcessFunction:
    """Invocations of one function, each in a process environment of its own."""

    def __init__(
        self,
        launch: EnvironmentLaunch,
        server: RuntimeApiServer,
        *,
        arn: str,
        reserved: int | None,
    ) -> None:
        self.name = launch.function
        self._launch = launch
        self._server = server
        self._arn = arn
        self._reserved = reserved
        self._idle: list[ProcessEnvironment] = []
        self._all: set[ProcessEnvironment] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._started = 0
        self._closed = False
        if not memory_enforced():
            _log.warning(
                "MemorySize is not enforced on this system (it needs Linux's /proc)",
                function=self.name,
            )

    @property
    def environments(self) -> int:
        """Environments running now (idle or busy)."""
        return len(self._all)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running environments (tests and status)."""
        return [env.pid for env in self._all if env.pid is not None]

    async def call(
        self,
        payload: bytes,
        invocation: Invocation,
        time_limit: float,
        throttled: Callable[[], None],
    ) -> Reply:
        """Run one invocation in a free environment; wait for one when all are busy."""
        env = await self._acquire(throttled)
        if env is None:
            return FunctionError("Runtime.Stopped", "the worker is stopping its environments")
        try:
            reply = await self._run(env, payload, invocation, time_limit)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._retire(env)
            raise
        if env.alive:
            self._give_back(env)
        else:
            await self._retire(env)
        return reply

    async def warm(self) -> str | None:
        """Start one environment before the first invocation and wait for its init: the init
        error, if it failed (a readiness probe reports it); the environment is then kept for
        the first invocation."""
        env = await self._acquire(lambda: None)
        if env is None:
            return "the worker is stopping its environments"
        try:
            problem = await env.wait_ready(INIT_LIMIT_SECONDS)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._retire(env)
            raise
        if problem is None and not env.channel.ready.is_set():
            problem = FunctionError("Runtime.InitTimeout", f"init took over {INIT_LIMIT_SECONDS} s")
        if problem is not None:
            await self._retire(env)
            return str(problem)
        self._give_back(env)
        return None

    async def _run(
        self, env: ProcessEnvironment, payload: bytes, invocation: Invocation, time_limit: float
    ) -> Reply:
        if not env.channel.ready.is_set():
            problem = await env.wait_ready(INIT_LIMIT_SECONDS + time_limit)
            if problem is not None:
                return problem
            if not env.channel.ready.is_set():
                await env.stop()
                return timed_out(time_limit)
        pending = PendingInvocation(invocation.request_id, payload, self._arn, timeout=time_limit)
        if invocation.trace_header is not None:
            pending.trace_id = invocation.trace_header
        env.channel.submit(pending)
        with anyio.move_on_after(time_limit) as scope:
            reply = await pending.reply
        if scope.cancelled_caught:
            env.channel.withdraw(pending)
            await env.stop()  # nothing of this invocation may run on
            return timed_out(time_limit)
        return reply

    async def _acquire(self, throttled: Callable[[], None]) -> ProcessEnvironment | None:
        counted = False
        while True:
            if self._closed:
                return None
            while self._idle:
                env = self._idle.pop()
                if env.alive:
                    return env
                await self._retire(env)
            if self._reserved is None or len(self._all) < self._reserved:
                return await self._start_one()
            if not counted:
                throttled()
                counted = True
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on: this invocation is not coming
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise

    async def _start_one(self) -> ProcessEnvironment:
        self._started += 1
        env = ProcessEnvironment(self._launch, self._server, self._started)
        self._all.add(env)
        try:
            await env.start()
        except BaseException:
            self._all.discard(env)
            raise
        return env

    def _give_back(self, env: ProcessEnvironment) -> None:
        self._idle.append(env)
        self._wake_one()

    async def _retire(self, env: ProcessEnvironment) -> None:
        if env in self._all:
            self._all.discard(env)
            await env.stop()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        """Stop every environment (busy ones too: the worker is shutting down)."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # it sees the pool closed
        environments = list(self._all)
        self._all.clear()
        self._idle.clear()
        with anyio.CancelScope(shield=True):
            for env in environments:
                await env.stop()
