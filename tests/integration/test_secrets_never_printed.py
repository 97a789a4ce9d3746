"""No credential in what real ``poller`` processes print: ``validate``, ``run`` and ``status``.

Each config holds a unique marker in every secret-bearing field (the fields come from
``secret_fields()``, as in the unit walk), given malformed in one way per case: the JSON string
Secrets Manager stores, numbers, lists, tables, strings with line breaks, URLs with logins. The
processes must refuse it (exit 2) without printing any marker or a traceback.

Then a worker runs at debug level against a real RabbitMQ: one mapping with a good login invokes
an HTTP function whose URL login, ``Authorization`` header and environment carry markers (the
app receives the header: the secret is used, only never printed); the other mappings log in with
a wrong password, in the broker URL and in an inline Secret. Its log lines, ``/status``,
``/healthz``, ``/readyz`` and ``poller status --url`` must hold no marker.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from poller.config.loading import secret_fields
from tests.conftest import BrokerServer
from tests.kit.brokers import RabbitAdmin

pytestmark = pytest.mark.integration

_WITHIN = 60.0


class Markers:
    """Unique strings to hide in secret fields; :meth:`found_in` names those that leaked."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self) -> str:
        marker = f"Lk9{uuid.uuid4().hex[:10]}Q"
        self.issued.append(marker)
        return marker

    def number(self) -> int:
        number = 8_000_000_000 + int(uuid.uuid4().int % 999_999_999)
        self.issued.append(str(number))
        return number

    def found_in(self, text: str) -> list[str]:
        return [marker for marker in self.issued if marker in text]


def toml_value(value: Any) -> str:
    """TOML for strings (JSON escapes are TOML's), numbers, booleans, lists and inline tables."""
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_document(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for table, body in data.items():
        if isinstance(body, list):
            for entry in body:
                lines.append(f"[[{table}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
        else:
            lines.append(f"[{table}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


# --- refused configs ----------------------------------------------------------------------------

#: One way to get each kind of field wrong: (secret field value, login URL value).
Malformed = Callable[[Markers], tuple[Any, Any]]
MALFORMED: dict[str, Malformed] = {
    "json-string": lambda m: (
        json.dumps({"username": "u", "password": m()}),
        f"https://user:{m()}@",
    ),
    "number": lambda m: (m.number(), [f"user:{m()}@broker.example:9092", 7]),
    "list": lambda m: ([m(), {"password": m()}], [f"amqps://user:{m()}@broker.example"]),
    "table": lambda m: ({"password": m(), "deeper": {"token": m()}}, {"url": f"ftp://{m()}@h"}),
    "line-break": lambda m: (f"first\n{m()}", f"amqps://user:{m()}/x@broker.example\nmore"),
}


def malformed_config(markers: Markers) -> dict[str, Any]:
    """A config with every secret field set wrong in every way (and its URLs carrying logins):
    a function and two mappings per way; the ``[aws]`` and ``[store]`` fields one way each."""
    ways = list(MALFORMED.values())

    def secret(way: int) -> Any:
        return ways[way % len(ways)](markers)[0]

    def login_url(way: int) -> Any:
        return ways[way % len(ways)](markers)[1]

    config: dict[str, Any] = {
        "aws": {
            "region": "us-east-1",
            "endpoint_url": login_url(0),
            "access_key_id": secret(1),
            "secret_access_key": secret(2),
        },
        "store": {"url": login_url(3)},
        "functions": [],
        "mappings": [],
    }
    for way in range(len(ways)):
        config["functions"] += [
            {
                "FunctionName": f"web{way}",
                "Url": login_url(way),
                "Headers": {"Authorization": secret(way)},
                "Environment": {"Variables": {"API_TOKEN": secret(way)}},
            },
            {"FunctionName": f"env{way}", "Url": "http://127.0.0.1:9/", "Environment": secret(way)},
        ]
        config["mappings"] += [
            {
                "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": login_url(way)}},
                "Queues": [f"orders{way}"],
                "FunctionName": f"web{way}",
                "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "Secret": secret(way)}],
            },
            {
                "SelfManagedEventSource": {
                    "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": login_url(way)}
                },
                "Topics": [f"orders{way}"],
                "StartingPosition": "LATEST",
                "FunctionName": f"web{way}",
                "SourceAccessConfigurations": [
                    {
                        "Type": "CLIENT_CERTIFICATE_TLS_AUTH",
                        "Secret": {"certificate": "PEM", "privateKey": secret(way)},
                    }
                ],
            },
        ]
    return config


def test_the_malformed_config_reaches_every_secret_field() -> None:
    """The config below sets each field ``secret_fields()`` names (none is left out)."""
    reached = {
        "aws.endpointurl",
        "aws.accesskeyid",
        "aws.secretaccesskey",
        "store.url",
        "functions.*.environment.variables",
        "functions.*.url",
        "functions.*.headers",
        "mappings.*.selfmanagedeventsource.endpoints",
        "mappings.*.sourceaccessconfigurations.*.secret",
    }
    assert {str(path) for path in secret_fields()} == reached
    data = malformed_config(Markers())
    assert len(data["mappings"]) == 2 * len(MALFORMED)


def poller(args: Sequence[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", ["validate", "run", "status"])
def test_refused_configs_print_no_secret(tmp_path: Path, command: str) -> None:
    markers = Markers()
    config = tmp_path / "config.toml"
    config.write_text(toml_document(malformed_config(markers)))
    done = poller([command, str(config)], tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, f"poller {command}: exit {done.returncode}\n{output}"
    assert "invalid config" in done.stderr
    assert "Traceback" not in output
    assert markers.found_in(output) == [], f"poller {command} printed a secret:\n{output}"
    assert "'***' (a string holding JSON" in done.stderr  # refused values named, not shown
    assert "'***' (a number)" in done.stderr


def test_a_mapping_given_as_aws_json_prints_no_secret(tmp_path: Path) -> None:
    """``--esm`` with an inline Secret pasted as a string, and options carrying logins."""
    markers = Markers()
    esm = tmp_path / "mapping.json"
    esm.write_text(
        json.dumps(
            {
                "SelfManagedEventSource": {
                    "Endpoints": {"MQ_BROKER_URLS": [f"amqps://u:{markers()}@h:5671"]}
                },
                "Queues": ["orders"],
                "SourceAccessConfigurations": [
                    {"Type": "BASIC_AUTH", "Secret": json.dumps({"password": markers()})}
                ],
            }
        )
    )
    for extra in (
        [],
        ["--endpoint-url", f"ftp://u:{markers()}@h"],
        ["--store", f"u:{markers()}@h"],
    ):
        done = poller(["validate", "--esm", str(esm), "--handler", "m:f", *extra], tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert markers.found_in(output) == [], output
        assert "Traceback" not in output


# --- a running worker -----------------------------------------------------------------------------


async def _http_app(received: list[dict[str, str]]) -> AsyncIterator[int]:
    async def invoke(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        await request.read()
        return web.json_response(None)

    app = web.Application()
    app.router.add_post("/invoke", invoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


async def _wait_for(condition: Callable[[], Any], what: str, output: Path) -> Any:
    deadline = time.monotonic() + _WITHIN
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        await anyio.sleep(0.1)
    raise AssertionError(f"no {what} within {_WITHIN:g} s; output:\n{_tail(output)}")


def _tail(output: Path) -> str:
    return output.read_text()[-4000:]


async def test_a_running_worker_prints_no_secret(
    tmp_path: Path, rabbitmq_broker: BrokerServer
) -> None:
    markers = Markers()
    queues = [f"secrets-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    bearer_queue, basic_queue, bad_queue, bad_secret_queue = queues
    async with RabbitAdmin(rabbitmq_broker.url) as admin:
        for queue in queues:
            await admin.create_queue(queue)
        for queue in (bearer_queue, basic_queue):
            await admin.publish(queue, [json.dumps({"order": 1})])
    host_port = rabbitmq_broker.url.removeprefix("amqp://")
    received: list[dict[str, str]] = []
    app = _http_app(received)
    app_port = await app.__anext__()
    bearer = f"Bearer {markers()}"
    login = f"user:{markers()}"
    data = {
        "logging": {"level": "debug", "format": "json"},
        "http": {"listen": "127.0.0.1:0"},
        "store": {"url": "memory://"},
        "functions": [
            {
                "FunctionName": "bearer",
                "Url": f"http://127.0.0.1:{app_port}/invoke",
                "Headers": {"Authorization": bearer},
                "Environment": {"Variables": {"API_TOKEN": markers()}},
                "Timeout": 10,
            },
            {
                "FunctionName": "basic",
                "Url": f"http://{login}@127.0.0.1:{app_port}/invoke",
                "Timeout": 10,
            },
        ],
        "mappings": [
            {
                "UUID": "good-login",
                "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [rabbitmq_broker.url]}},
                "Queues": [bearer_queue],
                "FunctionName": "bearer",
                "SourceAccessConfigurations": [
                    {"Type": "BASIC_AUTH", "Secret": {"username": "guest", "password": "guest"}}
                ],
            },
            {
                "UUID": "login-in-function-url",
                "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [rabbitmq_broker.url]}},
                "Queues": [basic_queue],
                "FunctionName": "basic",
            },
            {
                "UUID": "wrong-password-in-url",
                "SelfManagedEventSource": {
                    "Endpoints": {"MQ_BROKER_URLS": [f"amqp://guest:{markers()}@{host_port}"]}
                },
                "Queues": [bad_queue],
                "FunctionName": "bearer",
            },
            {
                "UUID": "wrong-password-in-secret",
                "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [rabbitmq_broker.url]}},
                "Queues": [bad_secret_queue],
                "FunctionName": "bearer",
                "SourceAccessConfigurations": [
                    {"Type": "BASIC_AUTH", "Secret": {"username": "guest", "password": markers()}}
                ],
            },
        ],
    }
    config = tmp_path / "config.toml"
    config.write_text(toml_document(data))
    output = tmp_path / "output.log"
    documents: list[str] = []
    with output.open("w") as sink:
        process = await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", str(config)],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        listening = await _wait_for(
            lambda: next(
                (
                    line
                    for line in _log_lines(output)
                    if line.get("event") == "operators' endpoint listening"
                ),
                None,
            ),
            "operators' endpoint",
            output,
        )
        base = f"http://127.0.0.1:{listening['port']}"
        await _wait_for(lambda: len(received) >= 2, "invocations of both HTTP functions", output)
        # The secrets are used (the app gets them), only never printed.
        basic = "Basic " + base64.b64encode(login.encode()).decode()
        assert sorted(r.get("Authorization", "") for r in received[:2]) == sorted([basic, bearer])
        async with aiohttp.ClientSession() as session:
            for path in ("/status", "/healthz", "/readyz"):
                async with session.get(base + path) as response:
                    documents.append(await response.text())
        status = await anyio.to_thread.run_sync(
            lambda: poller(["status", "--url", base, "--json"], tmp_path)
        )
        documents += [status.stdout, status.stderr]
        status_table = await anyio.to_thread.run_sync(
            lambda: poller(["status", "--url", base], tmp_path)
        )
        documents += [status_table.stdout, status_table.stderr]
        assert "good-login" in status.stdout
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with anyio.fail_after(_WITHIN):
            await process.wait()
        await app.aclose()
    written = await anyio.Path(output).read_text()
    assert "ACCESS_REFUSED" in written or "refused" in written.lower(), written[-4000:]
    for text in (written, *documents):
        assert markers.found_in(text) == [], f"a secret was printed:\n{text[-4000:]}"
