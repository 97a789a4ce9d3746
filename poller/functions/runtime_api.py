"""The Lambda Runtime API (2018-06-01), served by poller to execution environments.

An environment, whatever its language, runs a runtime interface client: it asks
``GET /2018-06-01/runtime/invocation/next`` for work (a long poll), runs the handler, and answers
``POST .../invocation/{id}/response`` or ``.../{id}/error``; an environment that cannot start posts
``/runtime/init/error``. The invocation's facts travel in Lambda's headers
(``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn``, ``-Trace-Id``).

One aiohttp server serves every function. Each :class:`Channel` is where invocations wait for an
environment and replies come back; a channel listens on its own port(s). A process environment
poller starts gets a channel and a port of its own (``AWS_LAMBDA_RUNTIME_API`` names it), so poller
always knows which process runs which invocation; a ``RuntimeApi = "HOST:PORT"`` listener is one
channel that every environment connecting there shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from poller.functions.reply import (
    MAX_RESPONSE_BYTES,
    FunctionError,
    Reply,
    Response,
    response_too_large,
)

__all__ = ["Channel", "PendingInvocation", "RuntimeApiServer", "trace_header"]

_log = structlog.get_logger("poller.functions")

_PREFIX = "/2018-06-01/runtime"
_ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
#: How long stopping the server waits for requests in progress (environments are stopped first).
_SHUTDOWN_SECONDS = 1.0


def trace_header() -> str:
    """A fresh X-Ray trace header, as Lambda passes one with every invocation."""
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Sampled=0"


@dataclass(slots=True, eq=False)
class PendingInvocation:
    """One invocation on its way to an environment, and the reply that comes back."""

    request_id: str
    payload: bytes
    function_arn: str
    #: Epoch milliseconds: Lambda's ``Lambda-Runtime-Deadline-Ms`` (set when it is handed over).
    deadline_ms: int = 0
    #: Seconds the environment has once it takes the invocation.
    timeout: float = 0.0
    trace_id: str = field(default_factory=trace_header)
    taken: asyncio.Future[None] = field(default_factory=lambda: _loop().create_future())
    reply: asyncio.Future[Reply] = field(default_factory=lambda: _loop().create_future())

    def answer(self, reply: Reply) -> bool:
        """Settle the invocation once; later answers are ignored (False)."""
        if self.reply.done():
            return False
        self.reply.set_result(reply)
        return True


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class Channel:
    """Invocations waiting for an environment of one function, and those being run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: deque[PendingInvocation] = deque()
        self._wakeup: asyncio.Event = asyncio.Event()
        self.running: dict[str, PendingInvocation] = {}
        #: Environments waiting in ``/next`` right now.
        self.polling = 0
        #: Set when an environment first asks for work: its init is over.
        self.ready = asyncio.Event()
        #: What ``/runtime/init/error`` reported, if an environment could not start.
        self.init_error: FunctionError | None = None
        self.init_failed = asyncio.Event()
        self.closed = False

    def submit(self, pending: PendingInvocation) -> None:
        """Queue an invocation for the next environment that asks."""
        self._queue.append(pending)
        self._wakeup.set()

    def withdraw(self, pending: PendingInvocation) -> None:
        """Take back an invocation no environment has taken yet (it was cancelled)."""
        with contextlib.suppress(ValueError):
            self._queue.remove(pending)
        self.running.pop(pending.request_id, None)

    def fail_all(self, error: FunctionError) -> None:
        """Answer every queued and running invocation with ``error`` (the environment is gone)."""
        for pending in (*self._queue, *self.running.values()):
            pending.answer(error)
        self._queue.clear()
        self.running.clear()

    async def next_invocation(self) -> PendingInvocation | None:
        """Wait for an invocation to hand to the polling environment (None once closed)."""
        while not self._queue:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """No more invocations here: environments waiting in ``/next`` are told to go."""
        self.closed = True
        self._wakeup.set()

    def put_back(self, pending: PendingInvocation) -> None:
        """Return an invocation whose poller went away before it could be sent."""
        self._queue.appendleft(pending)
        self._wakeup.set()


class RuntimeApiServer:
    """One aiohttp server; each port it listens on belongs to one :class:`Channel`."""

    def __init__(self) -> None:
        app = web.Application(client_max_size=MAX_RESPONSE_BYTES + 1)
        app.router.add_get(f"{_PREFIX}/invocation/next", self._next)
        app.router.add_post(f"{_PREFIX}/invocation/{{request_id}}/response", self._response)
        app.router.add_post(f"{_PREFIX}/invocation/{{request_id}}/error", self._error)
        app.router.add_post(f"{_PREFIX}/init/error", self._init_error)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS
        )
        self._started = False
        self._channels: dict[int, Channel] = {}
        self._sites: dict[int, web.SockSite] = {}

    async def _ensure_started(self) -> None:
        if not self._started:
            await self._runner.setup()
            self._started = True

    async def listen(self, channel: Channel, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``channel`` on ``host:port`` (0: a free port); return the port."""
        await self._ensure_started()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        bound = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._channels[bound] = channel
        self._sites[bound] = site
        return bound

    async def unlisten(self, port: int) -> None:
        """Stop serving a port (its environment is gone)."""
        site = self._sites.pop(port, None)
        channel = self._channels.pop(port, None)
        if channel is not None:
            channel.close()
        if site is not None:
            await site.stop()

    async def aclose(self) -> None:
        """Stop every listener."""
        for channel in self._channels.values():
            channel.close()
        if self._started:
            await self._runner.cleanup()
        self._channels.clear()
        self._sites.clear()

    # --- the routes ------------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> Channel:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        channel = self._channels.get(sockname[1]) if sockname else None
        if channel is None or channel.closed:
            raise web.HTTPGone(
                text=_error_body("EnvironmentGone", "this environment was stopped"),
                content_type="application/json",
            )
        return channel

    async def _next(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        channel.ready.set()
        channel.polling += 1
        try:
            while True:
                pending = await channel.next_invocation()
                if pending is None:
                    raise web.HTTPGone(
                        text=_error_body("EnvironmentGone", "this function is stopping"),
                        content_type="application/json",
                    )
                transport = request.transport
                if transport is None or transport.is_closing():
                    channel.put_back(pending)  # the environment hung up while waiting
                    return web.Response(status=410)
                if pending.reply.done():
                    continue  # cancelled or answered while it waited
                break
        finally:
            channel.polling -= 1
        pending.deadline_ms = int((time.time() + pending.timeout) * 1000)
        channel.running[pending.request_id] = pending
        if not pending.taken.done():
            pending.taken.set_result(None)
        return web.Response(
            body=pending.payload,
            content_type="application/json",
            headers={
                "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": pending.function_arn,
                "Lambda-Runtime-Trace-Id": pending.trace_id,
            },
        )

    def _running(self, request: web.Request) -> tuple[Channel, PendingInvocation]:
        channel = self._channel(request)
        request_id = request.match_info["request_id"]
        pending = channel.running.pop(request_id, None)
        if pending is None:
            raise web.HTTPBadRequest(
                text=_error_body(
                    "InvalidRequestID",
                    f"no invocation {request_id!r} is running here (answered already, timed "
                    "out, or never sent)",
                ),
                content_type="application/json",
            )
        return channel, pending

    async def _response(self, request: web.Request) -> web.Response:
        _, pending = self._running(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            size = request.content_length or MAX_RESPONSE_BYTES + 1
            pending.answer(response_too_large(size))
            return web.json_response(
                {"errorMessage": str(response_too_large(size)), "errorType": "RequestTooLarge"},
                status=413,
            )
        pending.answer(Response(body))
        return web.json_response({"status": "OK"}, status=202)

    async def _error(self, request: web.Request) -> web.Response:
        _, pending = self._running(request)
        pending.answer(await _read_error(request, "Unhandled"))
        return web.json_response({"status": "OK"}, status=202)

    async def _init_error(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        error = await _read_error(request, "Runtime.Unknown")
        if channel.init_error is None:
            channel.init_error = error
            _log.error(
                "function environment failed to start",
                function=channel.name,
                error_type=error.error_type,
                error=error.message,
            )
        channel.init_failed.set()
        channel.fail_all(error)
        return web.json_response({"status": "OK"}, status=202)


async def _read_error(request: web.Request, default_type: str) -> FunctionError:
    """An error body (``errorType``, ``errorMessage``) as a :class:`FunctionError`."""
    header_type = request.headers.get(_ERROR_TYPE_HEADER)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return FunctionError(header_type or default_type, "(error body over 6 MB)")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"errorMessage": raw[:1000].decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {"errorMessage": str(body)[:1000]}
    error_type = body.get("errorType") or header_type or default_type
    message = body.get("errorMessage") or ""
    return FunctionError(str(error_type), str(message))


def _error_body(error_type: str, message: str) -> str:
    return json.dumps({"errorType": error_type, "errorMessage": message})
