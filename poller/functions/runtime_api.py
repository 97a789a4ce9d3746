"""The Lambda Runtime API (2018-06-01), served by poller to execution environments.

An environment, whatever its language, runs a runtime interface client: it asks
``GET /2018-06-01/runtime/invocation/next`` for work (a long poll), runs the handler, and answers
``POST .../invocation/{id}/response`` or ``.../{id}/error``; an environment that cannot start posts
``/runtime/init/error``. The invocation's facts travel in Lambda's headers
(``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn``, ``-Trace-Id``).

Each :class:`Channel` is where invocations wait for an environment and replies come back; a
channel listens on a port of its own, served by the small HTTP/1.1 server of
:mod:`poller.functions.http11`. A process environment
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

from poller.functions.http11 import HttpRequest, HttpResponse, serve
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
_ERROR_TYPE_HEADER = "lambda-runtime-function-error-type"


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
    """Listeners of the Runtime API; each port poller listens on belongs to one :class:`Channel`."""

    def __init__(self) -> None:
        self._servers: dict[int | str, tuple[asyncio.Server, Channel]] = {}

    async def listen(self, channel: Channel, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``channel`` on ``host:port`` (0: a free port); return the port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        bound = int(sock.getsockname()[1])
        await self._serve(bound, sock, channel)
        return bound

    async def listen_unix(self, channel: Channel, path: str) -> str:
        """Serve ``channel`` on a Unix socket as well: poller's own Python client uses it, as the
        kernel moves a 40 KB event through it for less CPU than through TCP on loopback."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        await self._serve(path, sock, channel)
        return path

    async def _serve(self, key: int | str, sock: socket.socket, channel: Channel) -> None:
        async def handle(request: HttpRequest) -> HttpResponse | None:
            return await _route(channel, request)

        server = await serve(sock, handle, max_body=MAX_RESPONSE_BYTES)
        self._servers[key] = (server, channel)

    async def unlisten(self, key: int | str) -> None:
        """Stop serving a port or Unix socket (its environment is gone): waiting long polls
        are answered 410."""
        entry = self._servers.pop(key, None)
        if entry is not None:
            server, channel = entry
            channel.close()
            server.close()

    async def aclose(self) -> None:
        """Stop every listener."""
        for port in list(self._servers):
            await self.unlisten(port)


# --- the routes ----------------------------------------------------------------------------------


async def _route(channel: Channel, request: HttpRequest) -> HttpResponse | None:
    path = request.path.split("?", 1)[0]
    if not path.startswith(_PREFIX):
        return _error(404, "UnknownPath", f"no route {path!r}")
    rest = path[len(_PREFIX) :]
    if channel.closed:
        return _error(410, "EnvironmentGone", "this function is stopping")
    if rest == "/invocation/next" and request.method == "GET":
        return await _next(channel, request)
    if rest == "/init/error" and request.method == "POST":
        return _init_error(channel, request)
    if rest.startswith("/invocation/") and request.method == "POST":
        request_id, _, action = rest[len("/invocation/") :].partition("/")
        if action in ("response", "error"):
            return _answer(channel, request, request_id, action)
    return _error(404, "UnknownPath", f"no route {request.method} {path!r}")


async def _next(channel: Channel, request: HttpRequest) -> HttpResponse:
    channel.ready.set()
    channel.polling += 1
    try:
        while True:
            pending = await channel.next_invocation()
            if pending is None:
                return _error(410, "EnvironmentGone", "this function is stopping")
            if not request.connected():
                channel.put_back(pending)  # the environment hung up while it waited
                return _error(410, "EnvironmentGone", "the environment went away")
            if not pending.reply.done():
                break  # (one answered or cancelled while it waited is skipped)
    finally:
        channel.polling -= 1
    pending.deadline_ms = int((time.time() + pending.timeout) * 1000)
    channel.running[pending.request_id] = pending
    if not pending.taken.done():
        pending.taken.set_result(None)
    return HttpResponse(
        200,
        pending.payload,
        {
            "Lambda-Runtime-Aws-Request-Id": pending.request_id,
            "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": pending.function_arn,
            "Lambda-Runtime-Trace-Id": pending.trace_id,
        },
    )


def _answer(channel: Channel, request: HttpRequest, request_id: str, action: str) -> HttpResponse:
    pending = channel.running.pop(request_id, None)
    if pending is None:
        return _error(
            400,
            "InvalidRequestID",
            f"no invocation {request_id!r} is running here (answered already, timed out, or "
            "never sent)",
        )
    if request.too_large:
        size = int(request.headers.get("content-length", "0") or 0) or MAX_RESPONSE_BYTES + 1
        error = response_too_large(size)
        pending.answer(error)
        return _error(413, "RequestTooLarge", error.message)
    if action == "response":
        pending.answer(Response(request.body))
    else:
        pending.answer(_read_error(request, "Unhandled"))
    return _ACCEPTED


def _init_error(channel: Channel, request: HttpRequest) -> HttpResponse:
    error = _read_error(request, "Runtime.Unknown")
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
    return _ACCEPTED


def _read_error(request: HttpRequest, default_type: str) -> FunctionError:
    """An error body (``errorType``, ``errorMessage``) as a :class:`FunctionError`."""
    header_type = request.headers.get(_ERROR_TYPE_HEADER)
    if request.too_large:
        return FunctionError(header_type or default_type, "(error body over 6 MB)")
    try:
        body = json.loads(request.body) if request.body else {}
    except ValueError:
        body = {"errorMessage": request.body[:1000].decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {"errorMessage": str(body)[:1000]}
    error_type = body.get("errorType") or header_type or default_type
    message = body.get("errorMessage") or ""
    return FunctionError(str(error_type), str(message))


def _error(status: int, error_type: str, message: str) -> HttpResponse:
    return HttpResponse(
        status, json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    )


_ACCEPTED = HttpResponse(202, b'{"status":"OK"}')
