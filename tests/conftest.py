"""Shared fixtures: real servers started once per test run, unique names per test."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.kit.tls import ServerTls, TlsRelay

ROOT = Path(__file__).resolve().parent.parent

# Test runs never touch real AWS: static dummy credentials for moto.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
# The tests' resources live in us-east-1 and configs without [aws] region use the environment's:
# pin it, so a developer's own AWS_REGION or AWS_DEFAULT_REGION cannot move them.
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_REGION"] = "us-east-1"


def _servers_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "poller_test_servers", ROOT / "scripts" / "servers.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


#: Tests that use one of these servers run on one pytest-xdist worker per server, so under
#: ``pytest -n`` each broker is started once (and a test that restarts it stops no one else's).
#: The first fixture a test uses, in this order, names its group; moto is cheap and not grouped.
_SERVER_GROUPS = (
    ("activemq_broker", "activemq"),
    ("activemq_tls_broker", "activemq"),
    ("rabbitmq_broker", "rabbitmq"),
    ("rabbitmq_tls_broker", "rabbitmq"),
    ("kafka_bootstrap", "kafka"),
    ("kafka_tls_bootstrap", "kafka"),
    ("kafka_sasl_bootstrap", "kafka"),
)


# First among the hooks: pytest-xdist reads the groups in its own hook of the same name, which
# would otherwise run before this one and see no group.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        group = next((name for fixture, name in _SERVER_GROUPS if fixture in used), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """A test that runs a CLI command in this process configures logging for the process: put
    the configuration back afterwards, so later tests log (and capture logs) as they expect."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server over HTTP on loopback, shared by the whole run (or POLLER_TEST_MOTO_URL)."""
    external = os.environ.get("POLLER_TEST_MOTO_URL")
    if external:
        yield external
        return
    servers = _servers_module()
    server = servers.start_moto()
    try:
        yield server.endpoint
    finally:
        servers.stop(server)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A tansu Kafka-protocol broker (in memory) on loopback as "host:port", shared by the whole run
    and started only when a test asks for it (or POLLER_TEST_KAFKA_BOOTSTRAP)."""
    external = os.environ.get("POLLER_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    servers = _servers_module()
    server = servers.start_kafka()
    try:
        yield server.endpoint
    finally:
        servers.stop(server)


class BrokerServer:
    """A message broker started for the run, which a test may stop and start again.

    ``restart`` keeps the port and the broker's data (durable queues, persistent messages), so
    clients reconnect to the same URL. It blocks while the broker stops and starts: call it from
    a worker thread (``anyio.to_thread.run_sync``) so the event loop under test keeps running.
    """

    def __init__(self, url: str, server: object | None = None) -> None:
        #: The broker's URL without credentials (the default login works on the test brokers).
        self.url = url
        self._server = server

    @property
    def restartable(self) -> bool:
        """False for an external broker (POLLER_TEST_*_URL): tests that restart it skip."""
        return self._server is not None

    def stop(self) -> None:
        """Stop the broker process (RabbitMQ: a clean shutdown; ActiveMQ: SIGTERM)."""
        assert self._server is not None, "an external broker cannot be stopped by the tests"
        _servers_module().stop(self._server, forget=False)

    def start(self) -> None:
        """Start it again on the same port with the same data."""
        assert self._server is not None, "an external broker cannot be started by the tests"
        servers = _servers_module()
        name = self._server.name  # type: ignore[attr-defined]
        starter = servers.start_rabbitmq if name == "rabbitmq" else servers.start_activemq
        self._server = starter(port=self._server.port, keep_data=True)  # type: ignore[attr-defined]

    def restart(self) -> None:
        """Stop, then start on the same port with the same data."""
        self.stop()
        self.start()


def _broker(name: str, env: str, scheme: str) -> Iterator[BrokerServer]:
    external = os.environ.get(env)
    if external:
        yield BrokerServer(external)
        return
    servers = _servers_module()
    server = getattr(servers, f"start_{name}")()
    broker = BrokerServer(f"{scheme}://127.0.0.1:{server.port}", server)
    try:
        yield broker
    finally:
        servers.stop(broker._server)


@pytest.fixture(scope="session")
def rabbitmq_broker() -> Iterator[BrokerServer]:
    """RabbitMQ on loopback, started once per run when a test asks for it (or
    POLLER_TEST_RABBITMQ_URL, which cannot be restarted)."""
    yield from _broker("rabbitmq", "POLLER_TEST_RABBITMQ_URL", "amqp")


@pytest.fixture(scope="session")
def rabbitmq_url(rabbitmq_broker: BrokerServer) -> str:
    """``amqp://127.0.0.1:PORT`` of the run's RabbitMQ (guest login)."""
    return rabbitmq_broker.url


@pytest.fixture(scope="session")
def activemq_broker() -> Iterator[BrokerServer]:
    """ActiveMQ (STOMP) on loopback, started once per run when a test asks for it (or
    POLLER_TEST_ACTIVEMQ_URL, which cannot be restarted)."""
    yield from _broker("activemq", "POLLER_TEST_ACTIVEMQ_URL", "stomp")


@pytest.fixture(scope="session")
def activemq_url(activemq_broker: BrokerServer) -> str:
    """``stomp://127.0.0.1:PORT`` of the run's ActiveMQ (no login needed)."""
    return activemq_broker.url


@dataclass(frozen=True)
class TlsBroker:
    """A broker with a TLS listener that requires a client certificate, started for the run.

    ``url`` reaches the TLS listener by ``localhost``, the one name its certificate holds (so
    ``127.0.0.1`` is a hostname mismatch); ``plain_url`` is its plaintext listener, for the
    admin helpers. ``tls`` holds the broker's CA and a client certificate it signed.
    """

    url: str
    plain_url: str
    port: int
    tls: ServerTls
    #: RabbitMQ: a virtual host made for the run (guest may use it).
    vhost: str = ""


@contextlib.contextmanager
def _tls_broker(name: str, scheme: str, directory: Path, **options: Any) -> Iterator[TlsBroker]:
    servers = _servers_module()
    tls = ServerTls.create(directory, f"{name}-tls")
    files = servers.TlsFiles(str(tls.ca_file), str(tls.certificate_file), str(tls.key_file))
    server = getattr(servers, f"start_{name}")(tls=files, name=f"{name}-tls", **options)
    broker = TlsBroker(
        f"{scheme}://localhost:{server.tls_port}",
        server.endpoint.replace("guest:guest@", "").replace("admin:admin@", "").rstrip("/"),
        server.tls_port,
        tls,
    )
    try:
        yield broker
    finally:
        servers.stop(server)


@pytest.fixture(scope="session")
def rabbitmq_tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A second RabbitMQ with an amqps listener (client certificate required) and a virtual
    host, started once per run when a test asks for it; skipped with POLLER_TEST_RABBITMQ_URL."""
    if os.environ.get("POLLER_TEST_RABBITMQ_URL"):
        pytest.skip("the TLS broker is started by the tests (POLLER_TEST_RABBITMQ_URL is set)")
    directory, vhost = tmp_path_factory.mktemp("rabbitmq-tls"), "poller-tls"
    with _tls_broker("rabbitmq", "amqps", directory, vhosts=[vhost]) as broker:
        yield dataclasses.replace(broker, vhost=vhost)


@pytest.fixture(scope="session")
def activemq_tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A second ActiveMQ with a stomp+ssl connector (client certificate required), started once
    per run when a test asks for it; skipped with POLLER_TEST_ACTIVEMQ_URL."""
    if os.environ.get("POLLER_TEST_ACTIVEMQ_URL"):
        pytest.skip("the TLS broker is started by the tests (POLLER_TEST_ACTIVEMQ_URL is set)")
    directory = tmp_path_factory.mktemp("activemq-tls")
    with _tls_broker("activemq", "stomp+ssl", directory) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_tls_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A tansu of its own behind a TLS relay that requires client certificates: ``url`` is the
    bootstrap server (``localhost:PORT``, the relay, which the broker advertises), started once
    per run when a test asks for it. tansu 0.6 serves no TLS itself (README, Quick start)."""
    servers = _servers_module()
    tls = ServerTls.create(tmp_path_factory.mktemp("kafka-tls"), "kafka-tls")
    upstream = servers.free_port()
    with TlsRelay(tls.server, ("127.0.0.1", upstream), client_ca=tls.authority) as relay:
        server = servers.start_kafka(
            name="kafka-tls", port=upstream, advertised=f"localhost:{relay.port}"
        )
        try:
            yield TlsBroker(f"localhost:{relay.port}", server.endpoint, relay.port, tls)
        finally:
            servers.stop(server)


@pytest.fixture(scope="session")
def kafka_sasl_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A tansu of its own that requires a SASL login, behind a TLS relay (AWS offers SASL only
    over TLS): ``url`` is the bootstrap server. tansu 0.6 offers SCRAM only and keeps no SCRAM
    users in memory, so it refuses every login: what the tests of a refused login need."""
    servers = _servers_module()
    tls = ServerTls.create(tmp_path_factory.mktemp("kafka-sasl"), "kafka-sasl")
    upstream = servers.free_port()
    with TlsRelay(tls.server, ("127.0.0.1", upstream)) as relay:
        server = servers.start_kafka(
            name="kafka-sasl",
            port=upstream,
            advertised=f"localhost:{relay.port}",
            authentication=True,
        )
        try:
            yield TlsBroker(f"localhost:{relay.port}", server.endpoint, relay.port, tls)
        finally:
            servers.stop(server)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses, so tests can share one server."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"
