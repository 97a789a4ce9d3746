"""One execution environment as a process: started, watched, and stopped with nothing left over.

The process gets a Runtime API port of its own (``AWS_LAMBDA_RUNTIME_API``), Lambda's variables
and the function's ``Environment.Variables``. It runs in a session (process group) of its own, so
stopping it kills whatever it started too. Three watchers run beside it:

* its exit: a process that ends while it runs an invocation fails it as ``Runtime.ExitError``
  (or ``Runtime.OutOfMemory`` when poller stopped it for its memory);
* its memory (Linux): the resident set of the process and its children, read from ``/proc`` every
  100 ms; over ``MemorySize`` the environment is killed, as Lambda's would be;
* its output: stdout and stderr are logged line by line, tagged with the function and environment.

When the worker dies (even by ``kill -9``), Linux kills the environment too (``PR_SET_PDEATHSIG``:
set between fork and exec for a ``Command``, first thing by poller's own Python client, which
also exits when its parent changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from poller.functions.reply import FunctionError, exit_error
from poller.functions.runtime_api import Channel, RuntimeApiServer

__all__ = ["EnvironmentLaunch", "ProcessEnvironment", "memory_enforced"]

_log = structlog.get_logger("poller.functions")

_MEMORY_SAMPLE_SECONDS = 0.1
_OUTPUT_LINE_LIMIT = 64 * 1024
_PR_SET_PDEATHSIG = 1


def memory_enforced() -> bool:
    """Whether ``MemorySize`` can be enforced here (it needs Linux's /proc)."""
    return Path("/proc/self/status").exists()


@dataclass(frozen=True, slots=True)
class EnvironmentLaunch:
    """How to start one environment of a function."""

    function: str
    argv: tuple[str, ...]
    #: Variables on top of the worker's own (Lambda's, then Environment.Variables).
    variables: Mapping[str, str]
    memory_mb: int
    cwd: str
    #: The program arranges its own death with the worker (poller's Python client does), so the
    #: process is spawned without a ``preexec_fn``: that keeps the fast vfork path, where a
    #: ``preexec_fn`` forces a full fork that stalls the event loop for milliseconds.
    dies_with_worker: bool = False


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _die_with(parent: int) -> Callable[[], None]:
    """Run in the child between fork and exec: be killed when the worker goes away."""

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before the line above ran
            os._exit(1)

    return preexec


def _resident_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc (0 if it is gone)."""
    total = 0
    pending = [pid]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except (OSError, ValueError):
            continue
        pending.extend(int(child) for child in children.split())
    return total


class ProcessEnvironment:
    """A process serving one invocation at a time over its own Runtime API channel."""

    def __init__(self, launch: EnvironmentLaunch, server: RuntimeApiServer, number: int) -> None:
        self.launch = launch
        self.name = f"{launch.function}#{number}"
        self.channel = Channel(launch.function)
        self._server = server
        self._port = 0
        self._socket_dir: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._out_of_memory = False
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        self.started_at = 0.0

    @property
    def alive(self) -> bool:
        """Still running and able to take invocations."""
        return self._process is not None and not self.exited.is_set() and not self.failed

    @property
    def failed(self) -> bool:
        """Its init failed: it will never serve an invocation."""
        return self.channel.init_error is not None

    @property
    def pid(self) -> int | None:
        """The environment's process id, once started."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the process; it is ready once it asks for its first invocation."""
        self._port = await self._server.listen(self.channel)
        local: dict[str, str] = {}
        if self.launch.dies_with_worker:  # poller's own client: a Unix socket beside the port
            self._socket_dir = tempfile.mkdtemp(prefix="poller-env-")
            path = os.path.join(self._socket_dir, "runtime.sock")
            local["POLLER_RUNTIME_SOCKET"] = await self._server.listen_unix(self.channel, path)
        variables = {
            **os.environ,
            **self.launch.variables,
            **local,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._port}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.name,
            "POLLER_PARENT_PID": str(os.getpid()),
        }
        self.started_at = time.perf_counter()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=variables,
                cwd=self.launch.cwd,
                start_new_session=True,
                preexec_fn=None if self.launch.dies_with_worker else _die_with(os.getpid()),
            )
        except OSError as error:
            await self.stop()
            self.channel.init_error = FunctionError(
                "Runtime.InvalidEntrypoint",
                f"cannot start {self.launch.argv[0]!r}: {error.strerror or error}",
            )
            self.channel.init_failed.set()
            self.exited.set()
            _log.error(
                "function environment failed to start", environment=self.name, error=str(error)
            )
            return
        self._tasks = [
            asyncio.create_task(self._watch_exit()),
            asyncio.create_task(self._forward_output()),
        ]
        if memory_enforced():
            self._tasks.append(asyncio.create_task(self._watch_memory()))

    async def wait_ready(self, limit: float) -> FunctionError | None:
        """Wait until the environment asks for work; the init error (or exit) if it never does."""
        waits = [
            asyncio.ensure_future(self.channel.ready.wait()),
            asyncio.ensure_future(self.channel.init_failed.wait()),
            asyncio.ensure_future(self.exited.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.channel.init_error is not None:
            return self.channel.init_error
        if self.exited.is_set():
            return exit_error(self.returncode, out_of_memory=self._out_of_memory)
        if not self.channel.ready.is_set():
            return None  # still initialising: the caller decides (timeout)
        init_ms = (time.perf_counter() - self.started_at) * 1000
        _log.info("function environment ready", environment=self.name, init_ms=round(init_ms, 1))
        return None

    async def stop(self) -> None:
        """Kill the environment and everything it started; return once the process is gone."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process is not None:
            await self.exited.wait()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if self._port:
            port, self._port = self._port, 0
            await self._server.unlisten(port)
        if self._socket_dir is not None:
            directory, self._socket_dir = self._socket_dir, None
            await self._server.unlisten(os.path.join(directory, "runtime.sock"))
            shutil.rmtree(directory, ignore_errors=True)

    async def _watch_exit(self) -> None:
        assert self._process is not None
        self.returncode = await self._process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)  # what it left behind
        error = self.channel.init_error or exit_error(
            self.returncode, out_of_memory=self._out_of_memory
        )
        if self.channel.running:
            _log.warning(
                "function environment exited during an invocation",
                environment=self.name,
                error=str(error),
            )
        self.channel.fail_all(error)
        self.exited.set()

    async def _watch_memory(self) -> None:
        assert self._process is not None
        limit = self.launch.memory_mb * 1024 * 1024
        pid = self._process.pid
        while not self.exited.is_set():
            await asyncio.sleep(_MEMORY_SAMPLE_SECONDS)
            used = _resident_bytes(pid)
            if used > limit:
                self._out_of_memory = True
                _log.warning(
                    "function environment over MemorySize; stopping it",
                    environment=self.name,
                    memory_mb=self.launch.memory_mb,
                    used_mb=round(used / 1024 / 1024, 1),
                )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                return

    async def _forward_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        pending = b""
        while chunk := await stream.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > _OUTPUT_LINE_LIMIT:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._log_line(line)
        if pending:
            self._log_line(pending)

    def _log_line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text:
            _log.info("function output", environment=self.name, line=text)
