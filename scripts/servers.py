"""Start and stop the real servers the integration tests talk to.

Used by the test session (tests/conftest.py starts what it needs once per run and stops it at the
end) and by hand::

    python scripts/servers.py start moto      # prints the endpoint, writes .servers/moto.json
    python scripts/servers.py stop moto

Every server listens on 127.0.0.1 only, on a free port, and is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
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


STARTERS = {"moto": start_moto}


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
