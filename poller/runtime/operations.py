"""What a worker runs for its operators besides the mappings: the HTTP endpoint, the CloudWatch
publisher, the warm-up that lets ``/readyz`` say the functions initialised, and the store check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog

from poller.config.settings import PollerConfig
from poller.engine.protocols import MappingRunner
from poller.engine.state import Store
from poller.functions import FunctionSet
from poller.functions.pool import ProcessFunction
from poller.observability.health import Health
from poller.observability.http import OperatorsEndpoint
from poller.observability.prometheus import exposition
from poller.observability.views import MappingView

__all__ = ["check_store", "open_endpoint", "warm_functions"]

_log = structlog.get_logger("poller.runtime")


async def open_endpoint(
    stack: contextlib.AsyncExitStack,
    config: PollerConfig,
    health: Health,
    *,
    views: Callable[[], Sequence[MappingView]],
    runners: Callable[[], Sequence[MappingRunner]],
    status: Callable[[], dict[str, Any]],
) -> OperatorsEndpoint | None:
    """Start ``[http] listen`` (closed with ``stack``), or nothing when it is not set."""
    if config.http.listen is None:
        return None
    host, port = config.http.host_and_port
    endpoint = OperatorsEndpoint(
        host,
        port,
        metrics=exposition(views),
        liveness=health.liveness,
        readiness=lambda: health.readiness(runners()),
        status=status,
    )
    await endpoint.start()
    stack.push_async_callback(endpoint.aclose)
    return endpoint


async def check_store(store: Store, health: Health) -> None:
    """One read, so a store that cannot answer fails the start (and readiness says so)."""
    health.store = "checking"
    await store.get_checkpoint("poller-readiness-check", "none")
    health.store = "ok"


async def warm_functions(functions: FunctionSet, health: Health) -> None:
    """Start one environment of each process function, so readiness covers their init."""
    pools = {
        name: function
        for name, function in functions.functions.items()
        if isinstance(function, ProcessFunction)
    }
    for name in pools:
        health.functions[name] = "initialising"

    async def warm(name: str, function: ProcessFunction) -> None:
        problem = await function.warm()
        health.functions[name] = "ready" if problem is None else f"init failed: {problem}"
        if problem is not None:
            _log.error("function environment failed to initialise", function=name, error=problem)

    async with anyio.create_task_group() as group:
        for name, function in pools.items():
            group.start_soon(warm, name, function)
