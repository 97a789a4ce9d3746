"""The Worker: runs every mapping of a config, and stops them gracefully.

Two ways to run it:

* ``await worker.run()`` runs until :meth:`Worker.stop` (the CLI calls ``stop`` on SIGTERM/SIGINT),
  or until every mapping has been idle for ``exit_when_idle`` seconds.
* In a host asyncio service: ``await worker.start()`` returns once the mappings run, and
  ``await worker.stop_and_wait()`` shuts them down; ``async with Worker(...)`` does both.

Stopping means: no new reads or batches, in-flight batches finish within
``shutdown_grace_seconds`` (then they are abandoned and their records are read again on the next
start), checkpoints are already saved as records settle, clients and the store are closed.
Everything that can be refused (config, handler imports, store URL) is refused in the constructor
or at the start of :meth:`run`, before any record is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Self

import anyio
import structlog

from poller.aws import AwsClients
from poller.config.settings import PollerConfig
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import MappingRunner
from poller.engine.state import Store
from poller.errors import ConfigError, SourceError, causes, failure_fields
from poller.functions import FunctionSet
from poller.observability.cloudwatch import CloudWatchPublisher
from poller.observability.health import Health
from poller.observability.views import MappingView
from poller.runtime.embedded import EmbeddedAws, create_resources
from poller.runtime.operations import check_store, open_endpoint, warm_functions
from poller.runtime.wiring import (
    GivenSource,
    HandlerRef,
    as_opened,
    build_runner,
    build_target,
    function_identity,
    missing_extras,
    open_source,
    plan_functions,
)
from poller.sources import registry
from poller.stores import open_store
from poller.stores.dynamodb import DynamoDBStore

__all__ = ["Worker"]

_log = structlog.get_logger("poller.runtime")

#: With ``exit_when_idle``: how long a mapping's source may go without answering at start
#: before the worker gives up (at least the idle time itself).
_SOURCE_ANSWER_SECONDS = 30.0


class Worker:
    """Runs the mappings of a :class:`~poller.config.PollerConfig`."""

    def __init__(
        self,
        config: PollerConfig,
        *,
        handlers: Mapping[str, HandlerRef] | None = None,
        store: Store | None = None,
        wrap_client: Callable[[str, Any], Any] | None = None,
        sources: Mapping[str, GivenSource] | None = None,
        embedded_shards: int = 1,
        max_handler_threads: int = 64,
    ) -> None:
        """Validate handlers now; ``handlers`` maps a mapping's UUID to a typed or Lambda handler.

        ``wrap_client(service, client)`` wraps every AWS client (the seam tests use to inject
        faults); ``sources`` replaces the source of a mapping by UUID (an in-memory source of
        :mod:`poller.testing`, or an ``OpenedSource``); ``store`` replaces the configured store.
        A mapping whose source needs an extra that is not installed is refused here.
        """
        self.config = config
        missing = missing_extras(config, replaced=frozenset(sources or ()))
        try:
            self._plans = plan_functions(config, handlers)
        except ConfigError as error:
            raise ConfigError([*error.problems, *missing]) from None
        if missing:
            raise ConfigError(missing)
        self._store_override = store
        self._wrap_client = wrap_client
        self._sources = dict(sources or {})
        self._embedded_shards = embedded_shards
        self._max_threads = max_handler_threads
        self._runners: list[MappingRunner] = []
        self._stop_requested = anyio.Event()
        self._started = anyio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped_by_idle = False
        self._endpoint_url: str | None = None
        self._functions: FunctionSet | None = None
        #: Liveness and readiness, as ``/healthz`` and ``/readyz`` report them.
        self.health = Health()
        self._views: list[MappingView] = []
        self._http_port: int | None = None

    # --- status ----------------------------------------------------------------------------------

    @property
    def runners(self) -> list[MappingRunner]:
        """The running mappings."""
        return list(self._runners)

    @property
    def idle(self) -> bool:
        """Every mapping is caught up with nothing in flight."""
        return bool(self._runners) and all(r.idle for r in self._runners)

    @property
    def endpoint_url(self) -> str | None:
        """The AWS endpoint in use once started (the embedded server's URL with "embedded")."""
        return self._endpoint_url

    @property
    def functions(self) -> FunctionSet | None:
        """The functions the running mappings invoke (None before the worker starts)."""
        return self._functions

    @property
    def http_port(self) -> int | None:
        """The port of the operators' endpoint once listening (``[http] listen``), else None."""
        return self._http_port

    @property
    def views(self) -> list[MappingView]:
        """The running mappings as the metrics exporters read them."""
        return list(self._views)

    @property
    def stopped_by_idle(self) -> bool:
        """True when :meth:`run` returned because of ``exit_when_idle``."""
        return self._stopped_by_idle

    def status(self) -> dict[str, Any]:
        """Per mapping: checkpoints (streams) or pollers (queues), idle flags, and counters."""
        return {
            runner.mapping.mapping_id: (
                {**runner.status(), "tags": dict(runner.mapping.tags)}
                if runner.mapping.tags
                else runner.status()
            )
            for runner in self._runners
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop gracefully (safe to call more than once)."""
        self._stop_requested.set()

    async def run(self, *, exit_when_idle: float | None = None) -> None:
        """Run every enabled mapping until stopped (or idle for ``exit_when_idle`` seconds)."""
        try:
            try:
                await self._run(exit_when_idle)
            except BaseExceptionGroup as group:
                # Task groups wrap what failed inside them: raise the failure itself, so callers
                # catch SourceError, StoreError, ... (the first of several; the others logged).
                found = causes(group)
                if any(not isinstance(cause, Exception) for cause in found):
                    raise
                for other in found[1:]:
                    _log.error("worker failed", **failure_fields(other))
                raise found[0] from None
        except BaseException as error:
            self.health.fail(f"{type(error).__name__}: {error}")
            raise
        finally:
            if self.health.phase != "failed":
                self.health.phase = "stopped"

    async def _run(self, exit_when_idle: float | None) -> None:
        self.health = Health()
        async with contextlib.AsyncExitStack() as stack:
            operators = await open_endpoint(
                stack,
                self.config,
                self.health,
                views=lambda: self._views,
                runners=lambda: self._runners,
                status=self.status,
            )
            self._http_port = operators.port if operators is not None else None
            endpoint = self.config.aws.endpoint_url
            embedded: EmbeddedAws | None = None
            if self.config.aws.embedded:
                embedded = EmbeddedAws()
                endpoint = await anyio.to_thread.run_sync(embedded.start)
                stack.callback(embedded.stop)
            self._endpoint_url = endpoint
            clients = AwsClients(self.config.aws, endpoint_url=endpoint, wrap=self._wrap_client)
            stack.push_async_callback(clients.aclose)
            if embedded is not None:
                await create_resources(self.config, clients, shards=self._embedded_shards)
            store = self._store_override or open_store(
                self.config.store.url, clients=clients, create=self.config.store.create
            )
            if self._store_override is None:
                stack.push_async_callback(store.aclose)
                if isinstance(store, DynamoDBStore):
                    await store.open()
            await check_store(store, self.health)
            limiter = anyio.CapacityLimiter(self._max_threads)
            worker_settings = self.config.worker
            functions = FunctionSet(region=clients.region, endpoint_url=endpoint)
            stack.push_async_callback(functions.aclose)
            self._functions = functions
            self._runners = []
            self._views = []
            for mapping_config in self.config.mappings:
                mapping = mapping_config.resolved()
                if not mapping.enabled:
                    _log.info("mapping disabled; not started", mapping=mapping.mapping_id)
                    continue
                plan = self._plans[mapping.mapping_id]
                mapping = replace(mapping, function_timeout=plan.config.timeout)
                given = self._sources.get(mapping.mapping_id)
                if given is None:
                    # Sources opened here are closed here (a Kafka source leaves its group);
                    # sources handed in belong to the caller.
                    opened = await open_source(mapping_config, mapping, clients, worker_settings)
                    stack.push_async_callback(opened.aclose)
                else:
                    opened = as_opened(given, mapping.mapping_id)
                identity = function_identity(plan.config, mapping, clients.region)
                counters = MappingCounters()
                target = await build_target(
                    mapping,
                    plan,
                    opened.codec,
                    identity=identity,
                    functions=functions,
                    counters=counters,
                    limiter=limiter,
                )
                runner = build_runner(
                    mapping,
                    target,
                    opened,
                    function=identity,
                    counters=counters,
                    clients=clients,
                    store=store,
                    worker=worker_settings,
                )
                self._runners.append(runner)
                self._views.append(
                    MappingView(
                        mapping.mapping_id,
                        identity.name,
                        mapping.source_kind,
                        registry.spec_for_kind(mapping.source_kind).family,
                        runner,
                        worker_settings.worker_id,
                    )
                )
            _log.info("worker started", mappings=[r.mapping.mapping_id for r in self._runners])
            self._started.set()
            self.health.phase = "running"
            async with anyio.create_task_group() as outer:
                if operators is not None:
                    outer.start_soon(warm_functions, functions, self.health)
                if self.config.metrics.cloudwatch_namespace:
                    publisher = CloudWatchPublisher(
                        lambda: clients.client("cloudwatch"),
                        self.config.metrics.cloudwatch_namespace,
                        lambda: self._views,
                        interval=self.config.metrics.cloudwatch_interval_seconds,
                    )
                    outer.start_soon(publisher.run)
                if exit_when_idle is not None:
                    outer.start_soon(self._stop_when_idle, exit_when_idle)
                if any(r.mapping.idempotency for r in self._runners):
                    outer.start_soon(
                        self._purge_idempotency, store, worker_settings.idempotency_purge_seconds
                    )
                async with anyio.create_task_group() as inner:
                    for runner in self._runners:
                        inner.start_soon(runner.run)
                    inner.start_soon(self._shutdown_on_request, inner.cancel_scope, worker_settings)
                outer.cancel_scope.cancel()
        _log.info("worker stopped")

    async def _shutdown_on_request(self, scope: anyio.CancelScope, settings: Any) -> None:
        await self._stop_requested.wait()
        self.health.phase = "stopping"
        _log.info(
            "stopping: no new batches; waiting for in-flight ones",
            grace_seconds=settings.shutdown_grace_seconds,
        )
        for runner in self._runners:
            runner.stop()
        with anyio.move_on_after(settings.shutdown_grace_seconds):
            for runner in self._runners:
                await runner.done.wait()
        if not all(r.done.is_set() for r in self._runners):
            _log.warning("grace period over; abandoning in-flight batches (they will be re-read)")
        scope.cancel()

    async def _purge_idempotency(self, store: Store, every: float) -> None:
        """Delete expired idempotency records now and then, so the table stays small."""
        while True:
            try:
                removed = await store.purge_expired(time.time())
                if removed:
                    _log.info("expired idempotency records purged", removed=removed)
            except Exception as error:  # the store may be briefly unavailable; try next time
                fields = {"operation": "purging idempotency records", **failure_fields(error)}
                _log.warning("idempotency purge failed", **fields)
            await anyio.sleep(every)

    async def _stop_when_idle(self, seconds: float) -> None:
        """Stop once every mapping was idle ``seconds``; fail (so a script exits non-zero with
        the reason, instead of waiting forever) when there is nothing to run or a mapping's
        source never answers."""
        if not self._runners:
            raise ConfigError("every mapping is disabled: nothing to run until idle")
        started = anyio.current_time()
        limit = max(seconds, _SOURCE_ANSWER_SECONDS)
        idle_since: float | None = None
        while not self._stop_requested.is_set():
            now = anyio.current_time()
            silent = [runner for runner in self._runners if not runner.ready]
            if silent and now - started > limit:
                raise SourceError(
                    "; ".join(
                        f"mapping {runner.mapping.mapping_id}: its source did not answer in "
                        f"{limit:g} s ({runner.counters.polling_errors} failed reads; the log "
                        "has each error)"
                        for runner in silent
                    )
                )
            if self.idle:
                idle_since = idle_since if idle_since is not None else now
                if now - idle_since >= seconds:
                    _log.info("every mapping idle; exiting", idle_seconds=seconds)
                    self._stopped_by_idle = True
                    self.stop()
                    return
            else:
                idle_since = None
            await anyio.sleep(min(0.05, seconds / 4) if seconds > 0 else 0.01)

    # --- host-loop API ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start :meth:`run` as a task of the running asyncio loop; return once mappings run."""
        if self._task is not None:
            raise RuntimeError("worker already started")
        self._task = asyncio.get_running_loop().create_task(self.run())
        started = asyncio.ensure_future(self._started.wait())
        done, _ = await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            started.cancel()
            self._task.result()  # raises the start-up error

    async def stop_and_wait(self) -> None:
        """Stop gracefully and wait until everything is closed."""
        self.stop()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_and_wait()
