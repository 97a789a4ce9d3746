"""The functions a worker runs: built once from ``[[functions]]``, shared by their mappings.

:class:`FunctionSet` turns a function's config into the :class:`~poller.functions.base.Function`
that reaches it (process pool, Runtime API listener, HTTP application), starts the one Runtime
API server they share when the first needs it, and stops every environment when the worker stops.
Handlers that run in the worker (``Isolation = "thread"``, or passed from Python) are not
functions of this kind; they only share a limit on how many run at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio

from poller.config.functions import FunctionConfig, expand_header
from poller.engine.invocation import FunctionIdentity
from poller.errors import ConfigError
from poller.functions.base import Function
from poller.functions.external import ExternalFunction
from poller.functions.http_app import HttpFunction
from poller.functions.pool import ProcessFunction
from poller.functions.process import EnvironmentLaunch
from poller.functions.runtime_api import RuntimeApiServer

__all__ = ["BOOTSTRAP", "FunctionSet", "lambda_variables"]

#: poller's Python runtime client, run as a file (``python -c``) so nothing of poller is imported.
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
_RUN_FILE = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


def lambda_variables(
    config: FunctionConfig,
    identity: FunctionIdentity,
    *,
    region: str,
    endpoint_url: str | None,
    task_root: str,
) -> dict[str, str]:
    """What an environment finds in its environment: Lambda's variables, then the function's."""
    variables = {
        "AWS_LAMBDA_FUNCTION_NAME": identity.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{config.timeout:g}",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{identity.name}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": "poller",
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
        "TZ": ":UTC",
        "PYTHONUNBUFFERED": "1",
    }
    if config.handler is not None:
        variables["_HANDLER"] = config.handler
    if endpoint_url:
        variables["AWS_ENDPOINT_URL"] = endpoint_url
    variables.update(config.environment.variables)
    return variables


class FunctionSet:
    """Every function of one worker, built on first use and closed together."""

    def __init__(self, *, region: str, endpoint_url: str | None = None) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._server: RuntimeApiServer | None = None
        self._functions: dict[str, Function] = {}
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    def _runtime_api(self) -> RuntimeApiServer:
        if self._server is None:
            self._server = RuntimeApiServer()
        return self._server

    async def function(self, config: FunctionConfig, identity: FunctionIdentity) -> Function:
        """The function ``config`` describes (one instance per name, whatever maps to it)."""
        existing = self._functions.get(config.function_name)
        if existing is not None:
            return existing
        built = await self._build(config, identity)
        self._functions[config.function_name] = built
        return built

    def environments(self, config: FunctionConfig) -> anyio.CapacityLimiter | None:
        """For handlers in the worker: at most ReservedConcurrentExecutions at once (shared)."""
        if config.reserved_concurrent_executions is None:
            return None
        limiter = self._limiters.get(config.function_name)
        if limiter is None:
            limiter = anyio.CapacityLimiter(config.reserved_concurrent_executions)
            self._limiters[config.function_name] = limiter
        return limiter

    @property
    def functions(self) -> Mapping[str, Function]:
        """The functions built so far, by name."""
        return dict(self._functions)

    async def _build(self, config: FunctionConfig, identity: FunctionIdentity) -> Function:
        way = config.way
        if way == "url":
            assert config.url is not None
            try:
                headers = {name: expand_header(value) for name, value in config.headers.items()}
            except KeyError as missing:
                raise ConfigError(
                    f"functions[{config.function_name!r}].Headers: ${{{missing.args[0]}}} is not "
                    "set in the worker's environment"
                ) from None
            return HttpFunction(
                identity.name,
                config.url,
                arn=identity.arn,
                headers=headers,
                concurrency=config.reserved_concurrent_executions,
            )
        if way == "runtime_api":
            assert config.runtime_api is not None
            external = ExternalFunction(
                identity.name, config.runtime_api, self._runtime_api(), arn=identity.arn
            )
            await external.start()
            return external
        if way == "thread":
            raise ValueError(f"function {config.function_name!r} runs in the worker's threads")
        task_root = os.getcwd()
        argv = config.command or (sys.executable, "-c", _RUN_FILE, str(BOOTSTRAP))
        launch = EnvironmentLaunch(
            function=identity.name,
            argv=tuple(argv),
            variables=lambda_variables(
                config,
                identity,
                region=self._region,
                endpoint_url=self._endpoint_url,
                task_root=task_root,
            ),
            memory_mb=config.memory_size,
            cwd=task_root,
            dies_with_worker=config.command is None,
        )
        return ProcessFunction(
            launch,
            self._runtime_api(),
            arn=identity.arn,
            reserved=config.reserved_concurrent_executions,
        )

    async def aclose(self) -> None:
        """Stop every environment of every function, then the Runtime API server."""
        with anyio.CancelScope(shield=True):
            for function in self._functions.values():
                await function.aclose()
            self._functions.clear()
            if self._server is not None:
                await self._server.aclose()
                self._server = None
