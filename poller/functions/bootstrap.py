"""poller's Python runtime interface client: what runs inside a process environment.

It is started as its own interpreter (``python -c`` running this file, so nothing of poller is
imported and the environment's memory is the handler's own) and does what AWS's runtime clients
do: import the handler named by ``_HANDLER`` once, then ask poller's Runtime API for invocations
one at a time, call ``handler(event, context)`` and post the response or the error. Only the
standard library is used, so it starts in milliseconds.

A handler that leaves the process (``sys.exit``, ``os._exit``, a signal, a native crash) ends the
environment; poller reports the invocation as ``Runtime.ExitError`` and starts another. When the
worker that started it disappears, the environment exits too (Linux also kills it at once with
``PR_SET_PDEATHSIG``, set by the worker before this starts).
"""

from __future__ import annotations

import asyncio
import http.client
import importlib
import inspect
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

_PREFIX = "/2018-06-01/runtime"


class _Connection:
    """One keep-alive HTTP connection to the Runtime API (reopened if it drops)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._conn = http.client.HTTPConnection(address)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in (1, 2):
            try:
                self._conn.request(method, _PREFIX + path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                return response.status, response.headers, response.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                self._conn = http.client.HTTPConnection(self._address)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


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
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    connection = _Connection(os.environ["AWS_LAMBDA_RUNTIME_API"])
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
    loop = asyncio.new_event_loop()
    while True:
        status, headers, body = connection.call("GET", "/invocation/next")
        if status != 200:
            sys.stderr.write(f"Runtime API /next answered {status}; stopping\n")
            sys.exit(1)
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        trace = headers.get("Lambda-Runtime-Trace-Id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = LambdaContext(
            request_id,
            int(headers.get("Lambda-Runtime-Deadline-Ms", "0")),
            headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
        )
        try:
            event = json.loads(body) if body else None
            result = handler(event, context)
            if inspect.isawaitable(result):
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
