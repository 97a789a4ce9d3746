"""From a validated mapping to running parts: handler, source, codec, sink, runner.

Nothing here knows one source from another: the mapping's spec (from the source registry) opens
the source and its codec, and says what else the source brings (its own checkpoints, its own
destinations). The engine gets one :class:`~poller.engine.invocation.InvocationContext` per
mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import anyio

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.config.functions import FunctionConfig
from poller.config.mapping import MappingConfig
from poller.config.resolved import ResolvedMapping
from poller.config.settings import PollerConfig, WorkerConfig
from poller.destinations import OnFailureSink, destination_for
from poller.destinations.base import Destination
from poller.engine.discard import CountingSink, DiscardSink, DroppingSink
from poller.engine.invocation import FunctionIdentity, InvocationContext, Target
from poller.engine.leases import LeaseStore
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import (
    AssignedPartitions,
    EventCodec,
    MappingRunner,
    PartitionSource,
    QueueSource,
)
from poller.engine.queues import QueueMappingRunner
from poller.engine.state import Store
from poller.engine.streams import StreamMappingRunner
from poller.engine.streams.leasing import (
    FencedCheckpoints,
    LeaseCoordinator,
    LeasedSource,
    LeaseSettings,
)
from poller.engine.windows import tumbling_window_seconds
from poller.errors import ConfigError, HandlerImportError
from poller.filtering.records import mapping_filter
from poller.functions import FunctionSet, FunctionTarget, is_typed, load_handler, target_for
from poller.functions.loader import find_handler_module
from poller.functions.typed import TYPED_WINDOW_REFUSAL
from poller.observability.tracing import tracer_for
from poller.sources import registry
from poller.sources.spec import OpenedSource, SourceEnvironment

__all__ = [
    "FunctionPlan",
    "GivenSource",
    "HandlerRef",
    "build_runner",
    "build_target",
    "function_identity",
    "missing_extras",
    "on_failure_destination",
    "open_source",
    "plan_functions",
    "shorthand_function",
]

#: A handler given through the Python API: a typed or Lambda-style callable, or a Target.
HandlerRef = Callable[..., Any] | Target
#: A source handed to the Worker instead of the one the config names (tests, custom clients):
#: opened parts, or a source that renders its own events (the in-memory doubles of
#: :mod:`poller.testing`).
GivenSource = OpenedSource | PartitionSource | QueueSource


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """What one mapping invokes: its function, and the in-process handler if it runs in the
    worker (passed from Python, or ``Isolation = "thread"``); None when environments run it."""

    config: FunctionConfig
    handler: HandlerRef | None


def shorthand_function(
    mapping: MappingConfig, isolation: Literal["process", "thread"] = "process"
) -> FunctionConfig:
    """The function a mapping's own ``Handler`` stands for: Lambda's defaults, the mapping's
    FunctionTimeout, named after the whole handler reference (``app.audit:handle`` ->
    ``app-audit-handle``), else after the mapping."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", mapping.handler) if mapping.handler else None
    return FunctionConfig.model_construct(
        function_name=name or mapping.mapping_id,
        handler=mapping.handler,
        timeout=mapping.function_timeout,
        isolation=isolation,
    )


def _given_handler(mapping: MappingConfig, given: dict[str, HandlerRef]) -> HandlerRef | None:
    handler = given.pop(mapping.mapping_id, None)
    if handler is None and mapping.uuid is None and mapping.handler in given:
        handler = given.pop(mapping.handler)  # registered under its Handler reference
    return handler


def plan_functions(
    config: PollerConfig, handlers: Mapping[str, HandlerRef] | None
) -> dict[str, FunctionPlan]:
    """Decide what every mapping invokes, and check it now, before anything starts.

    A mapping's own ``Handler`` is imported here, as it always was: a typed handler runs in the
    worker, a Lambda-style one in process environments. A ``[[functions]]`` handler is imported
    here only with ``Isolation = "thread"``; in process environments its module is only looked
    up (it must exist), and each environment imports it once (``poller validate`` imports it too).
    """
    given = dict(handlers or {})
    plans: dict[str, FunctionPlan] = {}
    problems: list[str] = []
    for index, mapping in enumerate(config.mappings):
        name = mapping.function_reference
        function = config.function(name) if name is not None else None
        handler = _given_handler(mapping, given)
        if handler is not None:
            plans[mapping.mapping_id] = FunctionPlan(
                function or shorthand_function(mapping, "thread"), handler
            )
            continue
        try:
            if function is not None:
                where = f"functions[{name!r}].Handler"
                plans[mapping.mapping_id] = _plan_named(function)
            elif mapping.handler is not None:
                where = f"mappings[{index}].Handler"
                plans[mapping.mapping_id] = _plan_shorthand(mapping)
            else:
                problems.append(
                    f"mappings[{index}]: no FunctionName or Handler given and no handler "
                    f"registered for UUID {mapping.mapping_id!r}"
                )
        except HandlerImportError as error:
            problems.append(f"{where}: {error}")
    for index, mapping in enumerate(config.mappings):
        plan = plans.get(mapping.mapping_id)
        typed = plan is not None and callable(plan.handler) and is_typed(plan.handler)
        if typed and mapping.tumbling_window_in_seconds:
            problems.append(f"mappings[{index}]: {TYPED_WINDOW_REFUSAL}")
    if given:
        problems.append(
            f"handlers registered for unknown mappings: {', '.join(sorted(given))} "
            "(register handlers by the mapping's UUID)"
        )
    if problems:
        raise ConfigError(problems)
    return plans


def _plan_named(function: FunctionConfig) -> FunctionPlan:
    if function.way == "thread":
        assert function.handler is not None
        return FunctionPlan(function, load_handler(function.handler))
    if function.way == "process":
        assert function.handler is not None
        find_handler_module(function.handler)
    return FunctionPlan(function, None)


def _plan_shorthand(mapping: MappingConfig) -> FunctionPlan:
    assert mapping.handler is not None
    handler = load_handler(mapping.handler)
    if is_typed(handler):
        return FunctionPlan(shorthand_function(mapping, "thread"), handler)
    return FunctionPlan(shorthand_function(mapping), None)


def missing_extras(config: PollerConfig, *, replaced: frozenset[str] = frozenset()) -> list[str]:
    """A problem line for each enabled mapping whose source's client library is not installed.

    Mappings whose source is ``replaced`` (handed to the Worker) need nothing.
    """
    problems: list[str] = []
    for index, mapping in enumerate(config.mappings):
        resolved = mapping.resolved()
        if not resolved.enabled or resolved.mapping_id in replaced:
            continue
        spec = mapping.spec
        extra = spec.extra_for(resolved)
        if extra is None or not extra.missing():
            continue
        problems.append(
            f"mappings[{index}]: a {spec.title} source needs the {extra.name} extra, which is "
            f"not installed (missing: {', '.join(extra.missing())}); install it with "
            f"{extra.install}"
        )
    return problems


def function_identity(
    function: FunctionConfig, mapping: MappingConfig | ResolvedMapping, region: str
) -> FunctionIdentity:
    """The function's name and an ARN in the source's account and region when known (so two
    functions never share a name or ARN)."""
    name = function.function_name
    if mapping.event_source_arn:
        arn = ARN.parse(mapping.event_source_arn)
        partition, region, account = arn.partition, arn.region or region, arn.account
    else:  # a self-managed broker belongs to no AWS account
        partition, account = "aws", "000000000000"
    return FunctionIdentity(name, f"arn:{partition}:lambda:{region}:{account}:function:{name}")


async def open_source(
    mapping: MappingConfig, resolved: ResolvedMapping, clients: AwsClients, worker: WorkerConfig
) -> OpenedSource:
    """The source the mapping reads, opened by its spec; the caller closes it."""
    return await mapping.spec.open(resolved, SourceEnvironment(clients, worker))


def as_opened(given: GivenSource, mapping_id: str) -> OpenedSource:
    """A source handed to the Worker, as opened parts."""
    if isinstance(given, OpenedSource):
        return given
    if not isinstance(given, EventCodec):
        raise ConfigError(
            f"sources[{mapping_id!r}]: {type(given).__name__} does not render events; pass an "
            "OpenedSource (the source with its codec) instead"
        )
    return OpenedSource(given, given)


def on_failure_destination(uri: str, opened: OpenedSource, clients: AwsClients) -> Destination:
    """The on-failure destination: an AWS one by ARN, or one the source serves (``kafka://``)."""
    if "://" in uri:
        if opened.destination is None:
            raise ConfigError(
                f"on-failure destination {uri!r}: this mapping's source cannot serve it"
            )
        return opened.destination(uri)
    return destination_for(uri, clients)


async def build_target(
    mapping: ResolvedMapping,
    plan: FunctionPlan,
    codec: EventCodec,
    *,
    identity: FunctionIdentity,
    functions: FunctionSet,
    counters: MappingCounters,
    limiter: anyio.CapacityLimiter,
) -> Target:
    """How the mapping's batches reach its function: in the worker, or through environments."""
    if plan.handler is not None:
        if tumbling_window_seconds(mapping) and callable(plan.handler) and is_typed(plan.handler):
            raise ConfigError(f"mapping {mapping.mapping_id}: {TYPED_WINDOW_REFUSAL}")
        return target_for(
            plan.handler,
            codec,
            report_batch_item_failures=mapping.report_batch_item_failures,
            limiter=limiter,
            name=f"mapping {mapping.mapping_id}",
            environments=functions.environments(plan.config),
            counters=counters,
        )
    function = await functions.function(plan.config, identity)
    return FunctionTarget(
        function,
        codec,
        report_batch_item_failures=mapping.report_batch_item_failures,
        counters=counters,
    )


def build_runner(
    mapping: ResolvedMapping,
    target: Target,
    opened: OpenedSource,
    *,
    function: FunctionIdentity,
    counters: MappingCounters,
    clients: AwsClients,
    store: Store,
    worker: WorkerConfig,
) -> MappingRunner:
    """Everything one mapping needs, assembled."""
    sink: DiscardSink | None = None
    if mapping.on_failure_destination:
        destination = on_failure_destination(mapping.on_failure_destination, opened, clients)
        sink = CountingSink(OnFailureSink(opened.codec, function.arn, destination), counters)
    if opened.checkpoints is not None:
        store = opened.checkpoints(store)
    if registry.spec_for_kind(mapping.source_kind).family == "queue":
        # Without a destination, the queue's own redrive policy takes what keeps failing.
        context = InvocationContext(
            mapping,
            target,
            opened.codec,
            counters,
            sink,
            function,
            store,
            tracer=tracer_for(mapping.mapping_id, mapping.source_kind),
            filters=mapping_filter(mapping, opened.codec),
        )
        return QueueMappingRunner(
            context,
            cast(QueueSource, opened.source),
            long_poll_seconds=worker.queue_wait_seconds,
        )
    context = InvocationContext(
        mapping,
        target,
        opened.codec,
        counters,
        sink or DroppingSink(counters),
        function,
        store,
        tracer=tracer_for(mapping.mapping_id, mapping.source_kind),
        filters=mapping_filter(mapping, opened.codec),
    )
    source = cast(PartitionSource, opened.source)
    checkpoints: Store = store
    if isinstance(store, LeaseStore) and not isinstance(source, AssignedPartitions):
        # Kinesis, DynamoDB Streams: partitions are shared between workers by leases (a source
        # whose partitions are handed out by someone else, Kafka's group, needs none).
        coordinator = LeaseCoordinator(
            store,
            mapping.mapping_id,
            LeaseSettings(
                worker.worker_id,
                duration=worker.lease_duration_seconds,
                max_leases=worker.max_leases_per_worker,
                max_steal=worker.max_leases_to_steal,
            ),
        )
        source = LeasedSource(source, coordinator)
        checkpoints = FencedCheckpoints(store, store, coordinator)
    return StreamMappingRunner(
        context,
        source,
        checkpoints,
        discovery_interval=worker.shard_discovery_seconds,
        idle_poll=worker.idle_poll_seconds,
    )
