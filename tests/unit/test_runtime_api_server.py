"""The Runtime API server on raw sockets: what any runtime client may send, answered as Lambda's.

The server is poller's own small HTTP/1.1 protocol, so these tests speak bytes to it: keep-alive,
chunked bodies, malformed requests, bodies over 6 MB, unknown request ids, a long poll whose client
goes away (its invocation goes to the next environment), and a listener that stops.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from poller.functions.reply import MAX_RESPONSE_BYTES, FunctionError, Response
from poller.functions.runtime_api import Channel, PendingInvocation, RuntimeApiServer

PREFIX = "/2018-06-01/runtime"


class Client:
    """One connection, one request at a time, parsed by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {PREFIX}{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        await self.send((head + headers + "\r\n").encode() + body)
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(5):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode().split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines if line)
            }
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def served() -> tuple[RuntimeApiServer, Channel, int]:
    server = RuntimeApiServer()
    channel = Channel("fn")
    port = await server.listen(channel)
    yield server, channel, port  # type: ignore[misc]
    await server.aclose()


async def long_poll(port: int, channel: Channel) -> Client:
    """A client waiting in ``/next`` (the server has seen it)."""
    client = await Client.connect(port)
    await client.send(f"GET {PREFIX}/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    async with asyncio.timeout(5):
        while channel.polling == 0:
            await asyncio.sleep(0.01)
    return client


async def taken(channel: Channel, port: int) -> tuple[Client, PendingInvocation]:
    """A client that took an invocation from ``/next`` and has yet to answer it."""
    client = await Client.connect(port)
    invocation = pending()
    channel.submit(invocation)
    status, _, _ = await client.request("GET", "/invocation/next")
    assert status == 200
    return client, invocation


def pending(request_id: str = "req-1", payload: bytes = b'{"Records":[]}') -> PendingInvocation:
    return PendingInvocation(
        request_id, payload, "arn:aws:lambda:us-east-1:1:function:fn", timeout=3
    )


async def test_next_hands_over_the_event_with_lambdas_headers_and_a_response_settles_it(
    served: tuple[RuntimeApiServer, Channel, int],
) -> None:
    _, channel, port = served
    client = await Client.connect(port)
    invocation = pending()
    channel.submit(invocation)
    status, headers, body = await client.request("GET", "/invocation/next")
    assert status == 200 and body == b'{"Records":[]}'
    assert headers["lambda-runtime-aws-request-id"] == "req-1"
    assert headers["lambda-runtime-invoked-function-arn"].endswith(":function:fn")
    assert headers["lambda-runtime-trace-id"].startswith("Root=1-")
    assert int(headers["lambda-runtime-deadline-ms"]) > 0
    status, _, _ = await client.request("POST", "/invocation/req-1/response", b'{"ok":1}')
    assert status == 202
    assert invocation.reply.result() == Response(b'{"ok":1}')
    # The same connection serves the next poll (keep-alive), and a second answer is refused.
    status, _, body = await client.request("POST", "/invocation/req-1/response", b"{}")
    assert status == 400 and json.loads(body)["errorType"] == "InvalidRequestID"
    await client.close()


async def test_an_error_with_a_chunked_body_is_read_as_lambdas_error(
    served: tuple[RuntimeApiServer, Channel, int],
) -> None:
    client, invocation = await taken(*served[1:])
    body = json.dumps({"errorType": "ValueError", "errorMessage": "bad record"}).encode()
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:])
    )
    await client.send(
        f"POST {PREFIX}/invocation/req-1/error HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + chunks
        + b"0\r\n\r\n"
    )
    status, _, _ = await client.response()
    assert status == 202
    assert invocation.reply.result() == FunctionError("ValueError", "bad record")
    await client.close()


async def test_a_response_over_6_mb_is_refused_and_fails_the_invocation(
    served: tuple[RuntimeApiServer, Channel, int],
) -> None:
    client, invocation = await taken(*served[1:])
    status, _, body = await client.request(
        "POST", "/invocation/req-1/response", b"x" * (MAX_RESPONSE_BYTES + 1)
    )
    assert status == 413 and b"RequestTooLarge" in body
    reply = invocation.reply.result()
    assert isinstance(reply, FunctionError) and reply.error_type == "Function.ResponseSizeTooLarge"
    await client.close()


async def test_init_error_fails_what_waits_and_is_remembered(
    served: tuple[RuntimeApiServer, Channel, int],
) -> None:
    _, channel, port = served
    client = await Client.connect(port)
    invocation = pending()
    channel.submit(invocation)
    body = json.dumps({"errorType": "Runtime.ImportModuleError", "errorMessage": "no module"})
    status, _, _ = await client.request("POST", "/init/error", body.encode())
    assert status == 202
    assert invocation.reply.result() == FunctionError("Runtime.ImportModuleError", "no module")
    assert channel.init_error is not None and channel.init_failed.is_set()
    await client.close()


@pytest.mark.parametrize(
    "raw",
    [b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"GET / SPDY/3\r\n\r\n"],
)
async def test_a_malformed_request_is_answered_400_and_the_connection_closed(
    served: tuple[RuntimeApiServer, Channel, int], raw: bytes
) -> None:
    _, _, port = served
    client = await Client.connect(port)
    await client.send(raw)
    status, headers, _ = await client.response()
    assert status == 400 and headers.get("connection") == "close"
    async with asyncio.timeout(5):
        assert await client.reader.read() == b""


async def test_unknown_paths_are_404(served: tuple[RuntimeApiServer, Channel, int]) -> None:
    _, _, port = served
    client = await Client.connect(port)
    status, _, _ = await client.request("GET", "/invocation/abc/response")
    assert status == 404
    status, _, _ = await client.request("DELETE", "/init/error")
    assert status == 404
    await client.close()


async def test_an_invocation_taken_by_no_one_goes_to_the_next_poller_after_a_hang_up(
    served: tuple[RuntimeApiServer, Channel, int],
) -> None:
    _, channel, port = served
    gone = await long_poll(port, channel)
    await gone.close()
    async with asyncio.timeout(5):
        while channel.polling:
            await asyncio.sleep(0.01)
    invocation = pending()
    channel.submit(invocation)
    fresh = await Client.connect(port)
    status, headers, _ = await fresh.request("GET", "/invocation/next")
    assert status == 200 and headers["lambda-runtime-aws-request-id"] == "req-1"
    await fresh.close()


async def test_stopping_a_listener_answers_waiting_polls_410(
    served: tuple[RuntimeApiServer, Channel, int],
) -> None:
    server, channel, port = served
    client = await long_poll(port, channel)
    await server.unlisten(port)
    status, _, body = await client.response()
    assert status == 410 and b"EnvironmentGone" in body
