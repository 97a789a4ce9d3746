"""From a validated mapping to running parts: handler, source, codec, sink, runner.

Nothing here knows one source from another: the mapping's spec (from the source registry) opens
the source and its codec, and says what else the source brings (its own checkpoints, its own
destinations). The engine gets one :class:`~poller.engine.invocation.InvocationContext` per
mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.config.mapping import MappingConfig
from poller.config.resolved import ResolvedMapping
from poller.config.settings import PollerConfig, WorkerConfig
from poller.destinations import OnFailureSink, destination_for
from poller.destinations.base import Destination
from poller.engine.discard import CountingSink, DiscardSink, DroppingSink
from poller.engine.invocation import FunctionIdentity, InvocationContext, Target
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import (
    EventCodec,
    MappingRunner,
    PartitionSource,
    QueueSource,
)
from poller.engine.queues import QueueMappingRunner
from poller.engine.state import Store
from poller.engine.streams import StreamMappingRunner
from poller.errors import ConfigError, HandlerImportError
from poller.sources import registry
from poller.sources.spec import OpenedSource, SourceEnvironment
from poller.targets import load_handler, target_for

__all__ = [
    "GivenSource",
    "HandlerRef",
    "build_runner",
    "missing_extras",
    "open_source",
    "resolve_handlers",
]

#: A handler given through the Python API: a typed or Lambda-style callable, or a Target.
HandlerRef = Callable[..., Any] | Target
#: A source handed to the Worker instead of the one the config names (tests, custom clients):
#: opened parts, or a source that renders its own events (the in-memory doubles of
#: :mod:`poller.testing`).
GivenSource = OpenedSource | PartitionSource | QueueSource


def resolve_handlers(
    config: PollerConfig, handlers: Mapping[str, HandlerRef] | None
) -> dict[str, HandlerRef]:
    """Import or look up every enabled mapping's handler now, before anything starts."""
    given = dict(handlers or {})
    resolved: dict[str, HandlerRef] = {}
    problems: list[str] = []
    for index, mapping in enumerate(config.mappings):
        mapping_id = mapping.mapping_id
        handler = given.pop(mapping_id, None)
        if handler is None and mapping.uuid is None and mapping.handler in given:
            handler = given.pop(mapping.handler)  # registered under its Handler reference
        if handler is None and mapping.handler is not None:
            try:
                handler = load_handler(mapping.handler)
            except HandlerImportError as error:
                problems.append(f"mappings[{index}].Handler: {error}")
                continue
        if handler is None:
            problems.append(
                f"mappings[{index}]: no Handler given and no handler registered for UUID "
                f"{mapping_id!r}"
            )
            continue
        resolved[mapping_id] = handler
    if given:
        problems.append(
            f"handlers registered for unknown mappings: {', '.join(sorted(given))} "
            "(register handlers by the mapping's UUID)"
        )
    if problems:
        raise ConfigError(problems)
    return resolved


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


def function_identity(mapping: MappingConfig | ResolvedMapping, region: str) -> FunctionIdentity:
    """The Lambda-style function the handler is: a name from the whole handler reference
    (``app.audit:handle`` -> ``app-audit-handle``, so two handlers never share a name or ARN),
    else the mapping id; an ARN in the source's account and region when known."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", mapping.handler) if mapping.handler else None
    name = name or mapping.mapping_id
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


def _destination(uri: str, opened: OpenedSource, clients: AwsClients) -> Destination:
    """The on-failure destination: an AWS one by ARN, or one the source serves (``kafka://``)."""
    if "://" in uri:
        if opened.destination is None:
            raise ConfigError(
                f"on-failure destination {uri!r}: this mapping's source cannot serve it"
            )
        return opened.destination(uri)
    return destination_for(uri, clients)


def build_runner(
    mapping: ResolvedMapping,
    handler: HandlerRef,
    opened: OpenedSource,
    *,
    function: FunctionIdentity,
    clients: AwsClients,
    store: Store,
    worker: WorkerConfig,
    limiter: anyio.CapacityLimiter,
) -> MappingRunner:
    """Everything one mapping needs, assembled."""
    counters = MappingCounters()
    target = target_for(
        handler,
        opened.codec,
        report_batch_item_failures=mapping.report_batch_item_failures,
        limiter=limiter,
        name=f"mapping {mapping.mapping_id}",
    )
    sink: DiscardSink | None = None
    if mapping.on_failure_destination:
        destination = _destination(mapping.on_failure_destination, opened, clients)
        sink = CountingSink(OnFailureSink(opened.codec, function.arn, destination), counters)
    if opened.checkpoints is not None:
        store = opened.checkpoints(store)
    if registry.spec_for_kind(mapping.source_kind).family == "queue":
        # Without a destination, the queue's own redrive policy takes what keeps failing.
        context = InvocationContext(mapping, target, opened.codec, counters, sink, function, store)
        return QueueMappingRunner(
            context,
            cast(QueueSource, opened.source),
            long_poll_seconds=worker.queue_wait_seconds,
        )
    context = InvocationContext(
        mapping, target, opened.codec, counters, sink or DroppingSink(counters), function, store
    )
    return StreamMappingRunner(
        context,
        cast(PartitionSource, opened.source),
        store,
        discovery_interval=worker.shard_discovery_seconds,
        idle_poll=worker.idle_poll_seconds,
    )
