"""poller's Python runtime interface client: what runs inside a process environment.

It is started as its own interpreter (``python -c`` running this file, so nothing of poller is
imported and the environment's memory is the handler's own) and does what AWS's runtime clients
do: import the handler named by ``_HANDLER`` once, then ask poller's Runtime API for invocations
one at a time, call ``handler(event, context)`` and post the response or the error. Only the
standard library is used, so it starts in milliseconds.

A handler that leaves the process (``sys.exit``, ``os._exit``, a signal, a native crash) ends the
environment; poller reports the invocation as ``Runtime.ExitError`` and starts another. When the
worker that started it disappears, the environment exits too: Linux kills it at once
(``PR_SET_PDEATHSIG``, set first thing), and a thread watches for the parent to change elsewhere.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

_PREFIX = "/2018-06-01/runtime"
_PR_SET_PDEATHSIG = 1
_CO_VARARGS = 0x04  # a code flag: the function takes *args


def _json_decoder() -> Callable[[bytes], Any]:
    """orjson's decoder when the environment's Python has it (poller depends on it), else json's."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - a handler's own interpreter without orjson
        return json.loads
    return orjson.loads


_loads = _json_decoder()


class _Connection:
    """One kept-alive HTTP/1.1 connection to poller's Runtime API (reopened if it drops).

    A few lines of socket code instead of ``http.client``: this runs once per invocation in every
    environment, and ``http.client`` parses headers with the email package and sends a request's
    headers and body in two writes; here each request is one write with TCP_NODELAY.
    """

    def __init__(self, address: str, unix_path: str | None = None) -> None:
        host, _, port = address.rpartition(":")
        self._address = (host.strip("[]"), int(port))
        self._unix_path = unix_path
        self._host = address
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        if self._unix_path is not None:  # the worker's Unix socket: same API, cheaper transport
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self._unix_path)
        else:
            sock = socket.create_connection(self._address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buffer = sock, b""
        return sock

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return the status, the headers (lower-case names) and the body."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = (
            f"{method} {_PREFIX}{path} HTTP/1.1\r\nHost: {self._host}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body
        for attempt in (1, 2):
            sock = self._sock or self._connect()
            try:
                sock.sendall(request)
                return self._read_response(sock)
            except (OSError, ConnectionError):
                sock.close()
                self._sock = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read_response(self, sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._receive(sock)
        head, rest = self._buffer[:end], self._buffer[end + 4 :]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(rest) >= length:
            body, self._buffer = rest[:length], rest[length:]
        else:  # read the rest of the body straight into place
            whole = bytearray(length)
            whole[: len(rest)] = rest
            view, filled = memoryview(whole), len(rest)
            while filled < length:
                got = sock.recv_into(view[filled:])
                if not got:
                    raise ConnectionError("the Runtime API closed the connection")
                filled += got
            body, self._buffer = bytes(whole), b""
        if headers.get("connection", "").lower() == "close":
            sock.close()
            self._sock = None
        return status, headers, body

    def _receive(self, sock: socket.socket) -> None:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self._buffer += chunk


class LambdaContext:
    """The ``context`` argument, with the attributes and method Lambda's Python runtime gives."""

    def __init__(self, request_id: str, deadline_ms: int, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the real deadline, after which poller stops this environment."""
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error_body(error: BaseException, error_type: str | None = None) -> bytes:
    import traceback  # only when something failed: it is slow to import

    frames = traceback.format_tb(error.__traceback__)
    return json.dumps(
        {
            "errorMessage": str(error),
            "errorType": error_type or type(error).__name__,
            "stackTrace": [line.rstrip("\n") for line in frames],
        }
    ).encode()


def _load(reference: str) -> Any:
    """Import the handler as Lambda does; raise (error_type, message) on failure."""
    module_name, sep, attribute = reference.partition(":")
    if not sep:
        module_name, _, attribute = reference.rpartition(".")
    if not module_name or not attribute:
        raise _InitError("Runtime.MalformedHandlerName", f"Bad handler '{reference}'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise _InitError(
                "Runtime.ImportModuleError",
                f"Unable to import module '{module_name}': No module named '{error.name}'",
            ) from None
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from None
    except SyntaxError as error:
        raise _InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}"
        ) from None
    except Exception as error:
        raise _InitError(type(error).__name__, str(error)) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise _InitError(
                "Runtime.HandlerNotFound",
                f"Handler '{attribute}' missing on module '{module_name}'",
            )
        target = getattr(target, part)
    if _takes_one_argument(target):
        raise _InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{reference}' takes one argument: it is a typed handler(batch), which "
            'runs in the worker; set Isolation = "thread" on its function',
        )
    return target


def _takes_one_argument(handler: Any) -> bool:
    if isinstance(handler, types.FunctionType):  # the usual case, without importing inspect
        code = handler.__code__
        required = code.co_argcount - len(handler.__defaults__ or ())
        return required == 1 and not code.co_flags & _CO_VARARGS
    import inspect

    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 1 and not any(p.kind is p.VAR_POSITIONAL for p in parameters)


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _die_with_parent(parent: int) -> None:
    """Be killed by the kernel when the worker goes away (Linux), and watch for it elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the worker died before the line above ran
        os._exit(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Leave as soon as the worker that started this environment is gone."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def main() -> None:
    """Init, then serve invocations one at a time until the worker stops this process."""
    parent = int(os.environ.get("POLLER_PARENT_PID", "0"))
    if parent:
        _die_with_parent(parent)
    connection = _Connection(
        os.environ["AWS_LAMBDA_RUNTIME_API"], os.environ.get("POLLER_RUNTIME_SOCKET")
    )
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", os.getcwd()))
    started = time.perf_counter()
    try:
        handler = _load(os.environ["_HANDLER"])
    except _InitError as error:
        connection.call(
            "POST",
            "/init/error",
            _error_body(error, error.error_type),
            {"Lambda-Runtime-Function-Error-Type": error.error_type},
        )
        sys.exit(1)
    init_ms = (time.perf_counter() - started) * 1000
    sys.stderr.write(f"INIT_REPORT Init Duration: {init_ms:.2f} ms\n")
    loop = None  # an event loop for async handlers, made on first need (asyncio is slow to import)
    while True:
        status, headers, body = connection.call("GET", "/invocation/next")
        if status != 200:
            sys.stderr.write(f"Runtime API /next answered {status}; stopping\n")
            sys.exit(1)
        request_id = headers["lambda-runtime-aws-request-id"]
        trace = headers.get("lambda-runtime-trace-id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = LambdaContext(
            request_id,
            int(headers.get("lambda-runtime-deadline-ms", "0")),
            headers.get("lambda-runtime-invoked-function-arn", ""),
        )
        try:
            event = _loads(body) if body else None
            result = handler(event, context)
            if hasattr(result, "__await__"):  # an async handler
                if loop is None:
                    import asyncio

                    loop = asyncio.new_event_loop()
                result = loop.run_until_complete(result)
        except Exception as error:
            connection.call("POST", f"/invocation/{request_id}/error", _error_body(error))
            continue
        try:
            payload = json.dumps(result).encode()
        except (TypeError, ValueError) as error:
            connection.call(
                "POST",
                f"/invocation/{request_id}/error",
                _error_body(error, "Runtime.MarshalError"),
            )
            continue
        connection.call("POST", f"/invocation/{request_id}/response", payload)


if __name__ == "__main__":
    main()
