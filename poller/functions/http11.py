"""The small HTTP/1.1 server under the Lambda Runtime API.

Why not aiohttp's server: every invocation is two requests (the environment's ``next`` and its
``response``), and aiohttp's web stack spends about 220 us of the worker's CPU on each, a quarter
of what the worker spends per 100-record invocation. The Runtime API needs little of HTTP: one
request at a time per connection, ``Content-Length`` or chunked bodies, keep-alive. This protocol
does that in about 40 us a request, on asyncio's transports.

What it does not do: pipelining (a client sending its next request before the answer; no runtime
client does), ``Expect: 100-continue`` (answered by reading on), trailers, HTTP/2. A malformed
request is answered 400 and the connection closed; a body over the limit 413, then closed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["HttpRequest", "HttpResponse", "serve"]

_MAX_HEAD = 64 * 1024
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 410: "Gone"}
_REASONS |= {413: "Payload Too Large", 500: "Internal Server Error"}


@dataclass(slots=True)
class HttpRequest:
    """One request: method, path, headers (lower-case names), body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    #: The body was over the server's limit: it was not kept (``body`` is empty).
    too_large: bool = False
    #: Whether the client is still connected (an environment may go away during a long poll).
    connected: Callable[[], bool] = field(default=lambda: True)


@dataclass(slots=True)
class HttpResponse:
    """What to answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[HttpRequest], Awaitable[HttpResponse | None]]


class _Malformed(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One client connection: parse requests one at a time, answer each in order."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self._handler = handler
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Bytes of an oversized body still to be read and dropped before it is answered (413):
        #: answering while the client still sends would make the kernel reset the connection.
        self._discarding = 0
        self._oversized: HttpRequest | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()  # a long poll whose environment went away

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            dropped = min(self._discarding, len(data))
            self._discarding -= dropped
            data = data[dropped:]
            if self._discarding or self._oversized is None:
                return
            request, self._oversized = self._oversized, None
            self._task = asyncio.get_running_loop().create_task(self._run(request, True))
            return
        self._buffer += data
        if self._task is None or self._task.done():
            self._next_request()

    def _connected(self) -> bool:
        return not self._closed

    def _next_request(self) -> None:
        try:
            parsed = self._parse()
        except _Malformed as problem:
            self._answer(HttpResponse(400, str(problem).encode()), close=True)
            return
        if parsed is None:
            return  # wait for more bytes
        request, close = parsed
        if self._discarding:
            self._oversized = request  # answered once the rest of its body has been dropped
            return
        self._task = asyncio.get_running_loop().create_task(self._run(request, close))

    async def _run(self, request: HttpRequest, close: bool) -> None:
        try:
            response = await self._handler(request)
        except asyncio.CancelledError:
            return
        except Exception as error:  # a bug must not leave the client hanging
            response = HttpResponse(500, str(error).encode())
        if response is None or self._closed:
            return
        self._answer(response, close=close or request.too_large)
        if not self._closed and self._buffer:
            self._next_request()

    def _answer(self, response: HttpResponse, *, close: bool) -> None:
        if self._transport is None or self._closed:
            return
        reason = _REASONS.get(response.status, "Status")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if close:
            lines.append("Connection: close")
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        if close:
            self._closed = True
            self._transport.close()

    def _parse(self) -> tuple[HttpRequest, bool] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                raise _Malformed("request head too large")
            return None
        head = bytes(self._buffer[:end]).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Malformed(f"not an HTTP/1.x request line: {request_line[:100]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise _Malformed(f"malformed header line: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        body, consumed, too_large = self._body(headers, start)
        if consumed is None:
            return None
        del self._buffer[:consumed]
        request = HttpRequest(parts[0], parts[1], headers, body, too_large, self._connected)
        close = headers.get("connection", "").lower() == "close" or parts[2] == "HTTP/1.0"
        return request, close

    def _body(self, headers: dict[str, str], start: int) -> tuple[bytes, int | None, bool]:
        """The body, how many buffered bytes the request took (None: not all here yet), and
        whether the body was over the limit (then it is dropped, and the connection closes)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked(start)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _Malformed("Content-Length is not a number") from None
        if length < 0:
            raise _Malformed("negative Content-Length")
        if length > self._max_body:
            here = len(self._buffer) - start
            self._discarding = max(0, length - here)
            return b"", min(len(self._buffer), start + length), True
        if len(self._buffer) - start < length:
            return b"", None, False
        return bytes(self._buffer[start : start + length]), start + length, False

    def _chunked(self, start: int) -> tuple[bytes, int | None, bool]:
        body = bytearray()
        position = start
        while True:
            line_end = self._buffer.find(b"\r\n", position)
            if line_end < 0:
                return b"", None, False
            size_text = bytes(self._buffer[position:line_end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Malformed("malformed chunk size") from None
            if size == 0:
                trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return b"", None, False
                return bytes(body), trailer_end + 4, False
            data_start = line_end + 2
            if len(self._buffer) < data_start + size + 2:
                return b"", None, False
            body += self._buffer[data_start : data_start + size]
            if len(body) > self._max_body:
                return b"", len(self._buffer), True
            position = data_start + size + 2


async def serve(sock: socket.socket, handler: Handler, *, max_body: int) -> asyncio.Server:
    """Serve requests on a bound TCP or Unix socket with ``handler``; the caller closes it."""
    loop = asyncio.get_running_loop()
    if sock.family == socket.AF_UNIX:
        return await loop.create_unix_server(lambda: _Connection(handler, max_body), sock=sock)
    return await loop.create_server(lambda: _Connection(handler, max_body), sock=sock)
