"""A function that is an HTTP application (``Url``), against a real aiohttp app on loopback.

No double of poller: a Worker reads an in-memory Kinesis-shaped source and POSTs to the app.
This proves that the app gets AWS's Kinesis event with the ``Lambda-Runtime-*`` headers and the
configured ``Headers`` (``${VAR}`` expanded); that a 2xx body is read whole as the function's
response (``batchItemFailures`` retry from the named record; ``""`` and ``null`` succeed; over
6 MB is a function error); that a non-2xx answer, a refused connection and a slow app are
function errors the batch is retried after, without blocking the worker past the Timeout; that
connections are kept alive and ``ReservedConcurrentExecutions`` caps them (waiting is a throttle,
not a timeout); that https verifies against ``SSL_CERT_FILE``; and that bad configs are refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from poller import ConfigError, Worker, parse_config
from poller.config import PollerConfig
from poller.functions.reply import MAX_RESPONSE_BYTES
from poller.testing import MemorySource, wait_until
from tests.kit import ACCOUNT, KINESIS_ARN, REGION, logged
from tests.unit.engine_harness import fill

pytestmark = pytest.mark.integration

SHARD0, SHARD1 = "shardId-000000000000", "shardId-000000000001"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:app"


@dataclass
class Call:
    """One request as the app received it."""

    headers: dict[str, str]
    event: dict[str, Any]
    client_port: int
    received: float  # epoch seconds
    nth: int = 0  # 1 for the first request of this shard

    @property
    def shard(self) -> str:
        return str(self.event["Records"][0]["eventID"]).split(":")[0]

    @property
    def positions(self) -> list[str]:
        return [r["kinesis"]["sequenceNumber"] for r in self.event["Records"]]


Answer = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]


class App:
    """Records every request, then answers it with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[Call] = []
        self.url = ""
        self.in_flight = self.most_in_flight = 0

    def of(self, shard: str) -> list[list[str]]:
        return [c.positions for c in self.calls if c.shard == shard]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        call = Call(dict(request.headers), await request.json(), peer[1], time.time())
        self.calls.append(call)
        call.nth = sum(c.shard == call.shard for c in self.calls)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.answer(request, call)
        finally:
            self.in_flight -= 1


async def ok(request: web.Request, call: Call) -> web.StreamResponse:
    return web.Response(text="")


@contextlib.asynccontextmanager
async def serve(
    answer: Answer, *, tls: ssl.SSLContext | None = None, sock: socket.socket | None = None
) -> AsyncIterator[App]:
    """The app on 127.0.0.1 (a free port, or ``sock``); a client that hangs up cancels its
    request's handler, so a slow handler ends with the timed-out request."""
    app = App(answer)
    web_app = web.Application()
    web_app.router.add_post("/events", app.handle)
    runner = web.AppRunner(web_app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site: web.BaseSite = (
        web.SockSite(runner, sock)
        if sock is not None
        else web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    )
    await site.start()
    app.url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}/events"
    try:
        yield app
    finally:
        await runner.cleanup()


def config(url: str, *, function: dict[str, Any] | None = None, **mapping: Any) -> PollerConfig:
    """Function "app" at ``url`` (Timeout 2 s); mapping "m" reporting batch item failures."""
    fields = {"UUID": "m", "EventSourceArn": KINESIS_ARN, "StartingPosition": "TRIM_HORIZON"}
    fields |= {"FunctionName": "app", "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    fields |= {"RetryBackoffSeconds": 0.01, "RetryBackoffMaxSeconds": 0.05, **mapping}
    return parse_config(
        {
            "store": {"url": "memory://"},
            "worker": {"idle_poll_seconds": 0.01, "shutdown_grace_seconds": 2},
            "functions": [{"FunctionName": "app", "Url": url, "Timeout": 2, **(function or {})}],
            "mappings": [fields],
        }
    )


@contextlib.asynccontextmanager
async def running(cfg: PollerConfig, source: MemorySource) -> AsyncIterator[Worker]:
    worker = Worker(cfg, sources={"m": source})
    await worker.start()
    try:
        yield worker
    finally:
        async with asyncio.timeout(10):
            await worker.stop_and_wait()


def metrics(worker: Worker) -> dict[str, int]:
    return dict(worker.status()["m"]["metrics"])


async def checkpointed(worker: Worker, *positions: str) -> None:
    """Wait until shard *i* is checkpointed at ``positions[i]``."""
    want = {f"shardId-{i:012d}": position for i, position in enumerate(positions)}

    def now() -> dict[str, Any]:
        return {p: s["checkpoint"] for p, s in worker.status()["m"]["partitions"].items()}

    try:
        await wait_until(lambda: now() == want, what=f"checkpoints {want}")
    except AssertionError as error:
        raise AssertionError(f"{error}; now {now()}, metrics {metrics(worker)}") from None


def reasons(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry["reason"]) for entry in logged(logs, event="batch failed")]


async def test_events_arrive_as_kinesis_events_with_lambda_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_TOKEN", "parse-time")
    async with serve(ok) as app:
        headers = {"Authorization": "Bearer ${APP_TOKEN}"}
        cfg = config(app.url, function={"Headers": headers}, BatchSize=2)
        monkeypatch.setenv("APP_TOKEN", "s3cret")  # expanded when the worker starts
        async with running(cfg, fill([3])) as worker:
            await checkpointed(worker, "3")
    assert [c.positions for c in app.calls] == [["1", "2"], ["3"]]
    records = [r for c in app.calls for r in c.event["Records"]]
    data = [base64.b64decode(r["kinesis"]["data"]) for r in records]
    assert data == [b"p0-r0", b"p0-r1", b"p0-r2"]
    first = records[0]
    assert first["eventSource"] == "aws:kinesis" and first["eventName"] == "aws:kinesis:record"
    assert first["eventID"] == f"{SHARD0}:1" and first["eventSourceARN"] == KINESIS_ARN
    assert first["kinesis"]["partitionKey"] == "key-0" and first["awsRegion"] == REGION
    request_ids = [c.headers["Lambda-Runtime-Aws-Request-Id"] for c in app.calls]
    assert len({str(uuid.UUID(r)) for r in request_ids}) == 2, request_ids
    for call in app.calls:
        left_ms = int(call.headers["Lambda-Runtime-Deadline-Ms"]) - call.received * 1000
        assert 0 < left_ms <= 2000, f"deadline {left_ms:.0f} ms after the request arrived"
        assert call.headers["Lambda-Runtime-Invoked-Function-Arn"] == FUNCTION_ARN
        assert call.headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
        assert call.headers["Content-Type"] == "application/json"
        assert call.headers["Authorization"] == "Bearer s3cret"


async def test_batch_item_failures_retry_from_the_named_record_and_empty_or_null_succeed() -> None:
    async def answer(request: web.Request, call: Call) -> web.StreamResponse:
        if call.shard == SHARD1:
            return web.Response(text="null")
        if call.nth == 1:
            return web.json_response({"batchItemFailures": [{"itemIdentifier": "3"}]})
        return web.Response(text="")

    async with serve(answer) as app, running(config(app.url), fill([5, 2])) as worker:
        await checkpointed(worker, "5", "2")
        assert metrics(worker)["Invocations"] == 3
    assert app.of(SHARD0) == [["1", "2", "3", "4", "5"], ["3", "4", "5"]]
    assert app.of(SHARD1) == [["1", "2"]]


async def test_a_large_body_is_read_whole_and_one_over_6_mb_is_a_function_error() -> None:
    async def answer(request: web.Request, call: Call) -> web.StreamResponse:
        if call.nth == 1:  # valid JSON of ~1 MB, sent in pieces
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"batchItemFailures": [{"itemIdentifier": "2"}]')
            await response.write(b" " * 1_000_000)
            await response.write(b"}")
            return response
        if call.nth == 2:
            return web.Response(body=b" " * (MAX_RESPONSE_BYTES + 1))
        return web.Response(text="")

    with capture_logs() as logs:
        async with serve(answer) as app, running(config(app.url), fill([4])) as worker:
            await checkpointed(worker, "4")
            assert metrics(worker)["Invocations"] == 3
    assert app.of(SHARD0) == [["1", "2", "3", "4"], ["2", "3", "4"], ["2", "3", "4"]]
    assert reasons(logs) == [
        f"Function.ResponseSizeTooLarge: Response payload size ({MAX_RESPONSE_BYTES + 1} bytes) "
        f"exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
    ]


async def test_http_500_is_a_function_error_logged_with_status_and_body() -> None:
    async def answer(request: web.Request, call: Call) -> web.StreamResponse:
        if call.nth == 1:
            return web.Response(status=500, text="boom: database down")
        return web.Response(text="")

    with capture_logs() as logs:
        async with serve(answer) as app, running(config(app.url), fill([2])) as worker:
            await checkpointed(worker, "2")
            assert metrics(worker)["Errors"] == 1
            assert metrics(worker)["FailedInvokeEventCount"] == 2
    assert app.of(SHARD0) == [["1", "2"], ["1", "2"]]
    answered = logged(logs, event="HTTP function answered an error", function="app")
    assert [(e["status"], e["body"]) for e in answered] == [(500, "boom: database down")]
    assert reasons(logs) == [
        f"Function.HttpError: {app.url} answered HTTP 500: boom: database down"
    ]


async def test_a_refused_connection_is_a_function_error_and_the_worker_recovers() -> None:
    # Bound but not listening: connections are refused, and no one else can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/events"
        with capture_logs() as logs:
            async with running(config(url), fill([2])) as worker:
                await wait_until(
                    lambda: metrics(worker)["Errors"] >= 3, what="three refused invocations"
                )
                sock.listen()
                async with serve(ok, sock=sock) as app:
                    await checkpointed(worker, "2")
    assert app.of(SHARD0) == [["1", "2"]]
    refused = reasons(logs)
    assert len(refused) >= 3
    assert all(r.startswith(f"Function.ConnectionError: {url}: Cannot connect") for r in refused)
    assert logged(logs, event="HTTP function unreachable", function="app")


async def test_a_slow_app_times_out_and_the_retry_does_not_wait_for_it() -> None:
    async def answer(request: web.Request, call: Call) -> web.StreamResponse:
        if call.nth == 1:
            await asyncio.sleep(30)  # cancelled when poller hangs up
        return web.Response(text="")

    with capture_logs() as logs:
        async with (
            serve(answer) as app,
            running(config(app.url, function={"Timeout": 0.5}), fill([2])) as worker,
        ):
            await checkpointed(worker, "2")
            assert metrics(worker)["Errors"] == 1
    assert app.of(SHARD0) == [["1", "2"], ["1", "2"]]
    assert reasons(logs) == ["Sandbox.Timedout: Task timed out after 0.50 seconds"]
    gap = app.calls[1].received - app.calls[0].received
    assert 0.5 <= gap < 2.0, f"retry {gap:.2f} s after the first request (Timeout 0.5 s)"


async def test_connections_are_kept_alive_across_invocations() -> None:
    async with serve(ok) as app, running(config(app.url, BatchSize=1), fill([12])) as worker:
        await checkpointed(worker, "12")
    assert len(app.calls) == 12
    ports = {c.client_port for c in app.calls}
    assert len(ports) <= 2, f"{len(ports)} connections for {len(app.calls)} requests"


async def test_reserved_concurrency_caps_requests_and_waiting_is_a_throttle_not_a_timeout() -> None:
    async def answer(request: web.Request, call: Call) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.Response(text="")

    # One at a time, 0.3 s each: the 3rd and 4th would time out if waiting counted.
    function = {"Timeout": 0.75, "ReservedConcurrentExecutions": 1}
    async with (
        serve(answer) as app,
        running(config(app.url, function=function), fill([1, 1, 1, 1])) as worker,
    ):
        await checkpointed(worker, "1", "1", "1", "1")
        counts = metrics(worker)
    assert app.most_in_flight == 1
    assert counts["Errors"] == 0, counts
    assert counts["Throttles"] >= 1, counts
    for call in app.calls:  # each deadline counts from when the request could be sent
        left_ms = int(call.headers["Lambda-Runtime-Deadline-Ms"]) - call.received * 1000
        assert 0 < left_ms <= 750, f"deadline {left_ms:.0f} ms after the request arrived"


async def test_https_verifies_the_app_against_ssl_cert_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with serve(ok, tls=server_context) as app:
        assert app.url.startswith("https://")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with capture_logs() as logs:
            async with running(config(app.url), fill([2])) as worker:
                await wait_until(lambda: metrics(worker)["Errors"] >= 1, what="an untrusted try")
        assert not app.calls
        assert "CERTIFICATE_VERIFY_FAILED" in reasons(logs)[0]

        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        async with running(config(app.url), fill([2])) as worker:
            await checkpointed(worker, "2")
            assert metrics(worker)["Errors"] == 0
    assert app.of(SHARD0) == [["1", "2"]]


@pytest.mark.parametrize(
    ("function", "problem"),
    [
        (
            {"Url": "http://app/events", "Headers": {"Authorization": "Bearer ${MISSING_VAR}"}},
            "functions[0].Headers: header 'Authorization' uses ${MISSING_VAR}, which is not set "
            "in the worker's environment",
        ),
        (
            {"Url": "ftp://app/events"},
            "functions[0].Url: 'ftp://app/events' is not an http:// or https:// URL",
        ),
        (
            {"Url": "http://app/events", "Handler": "app.handle"},
            "functions[0]: Handler and Url both set; a function is reached one way",
        ),
    ],
    ids=["missing-variable", "not-http", "url-and-handler"],
)
def test_bad_http_function_configs_are_refused(
    monkeypatch: pytest.MonkeyPatch, function: dict[str, Any], problem: str
) -> None:
    monkeypatch.delenv("MISSING_VAR", raising=False)
    with pytest.raises(ConfigError) as refused:
        config(function["Url"], function=function)
    assert refused.value.problems == [problem]
