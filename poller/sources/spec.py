"""What a kind of source is, in one object: the :class:`SourceSpec` the registry lists.

A spec says everything the rest of poller needs to know about one kind of source, so that adding a
source is one package and one registry line:

* **recognition**: the ARN it reads (:class:`ArnPattern`) and/or the ``SelfManagedEventSource``
  endpoints key it answers to (:class:`EndpointsKey`);
* **config**: its own options model (the mapping fields only it takes, with their checks and
  cross-field rules, and how they resolve), the shared fields it refuses, the starting positions
  it offers, the ``SourceAccessConfigurations`` types it takes, the on-failure destinations it
  serves itself (``kafka://``), and its AWS defaults;
* **records**: the record type typed handlers receive;
* **running**: its ``opener`` builds the reader and settler and the event codec (named as
  ``module:function`` and imported only when a mapping of its kind opens, so its client library
  is too), ``embedded`` creates its resources on the embedded endpoint;
* **install**: the optional dependency (extra) it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from poller.config.fields import ARN, SourceOptions, StartingPosition
from poller.config.resolved import ResolvedMapping
from poller.records import Record

if TYPE_CHECKING:
    from poller.aws import AwsClients
    from poller.config.settings import WorkerConfig
    from poller.destinations.base import Destination
    from poller.engine.protocols import EventCodec, PartitionSource, QueueSource
    from poller.engine.state import Store

__all__ = [
    "STREAM_ONLY_FIELDS",
    "ArnPattern",
    "DestinationScheme",
    "EndpointsKey",
    "Extra",
    "OpenedSource",
    "SourceDefaults",
    "SourceEnvironment",
    "SourceSpec",
    "load_reference",
]

#: Log sources (checkpoints, partitions) or queue sources (settled message by message).
Family = Literal["stream", "queue"]

#: Shared mapping fields that mean something only on a log (a queue source's ``unsupported``).
STREAM_ONLY_FIELDS = (
    "StartingPosition",
    "BisectBatchOnFunctionError",
    "MaximumRecordAgeInSeconds",
    "ParallelizationFactor",
)


@dataclass(frozen=True, slots=True)
class ArnPattern:
    """The event source ARNs a source reads."""

    service: str
    #: How error messages name it ("Kinesis stream").
    description: str
    #: Whether the ARN's resource part is one this source reads (say, ``stream/NAME``).
    resource: Callable[[str], bool] = lambda _resource: True
    #: The article messages put before the description ("an SQS queue").
    article: str = "a"

    def matches(self, arn: ARN) -> bool:
        """Whether ``arn`` names one of this source's resources."""
        return arn.service == self.service and self.resource(arn.resource)

    def check(self, text: str) -> ARN:
        """``text`` parsed; ValueError when it is not an ARN of this source's resources."""
        arn = ARN.parse(text)
        if not self.matches(arn):
            raise ValueError(f"{text!r} is not {self.article} {self.description} ARN")
        return arn


@dataclass(frozen=True, slots=True)
class EndpointsKey:
    """The ``SelfManagedEventSource.Endpoints`` key a source answers to, and its endpoint check."""

    key: str
    #: Raises ValueError naming the first endpoint that is not well formed.
    check: Callable[[tuple[str, ...]], None]


@dataclass(frozen=True, slots=True)
class DestinationScheme:
    """An on-failure destination a source serves itself (``kafka://TOPIC``)."""

    prefix: str
    #: What such a destination is, for messages ("a Kafka topic").
    description: str
    #: How the allowed-values list shows it ("kafka://TOPIC").
    shape: str
    #: Raises ValueError when the destination is not well formed.
    check: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SourceDefaults:
    """AWS's defaults for a kind of source."""

    batch_size: int
    batching_window: float
    #: Streams back off between retries; SQS waits for the visibility timeout (0 = off).
    retry_backoff: float = 0.5
    #: The batching window opens with a batch's first record (Kafka, MQ) instead of when the
    #: previous invocation ended.
    window_from_first_record: bool = False


@dataclass(frozen=True, slots=True)
class Extra:
    """An optional dependency: the ``pip`` extra that installs a source's client library."""

    name: str
    #: The modules the extra provides (checked without importing them).
    modules: tuple[str, ...]

    @property
    def install(self) -> str:
        """The command that installs it."""
        return f"pip install 'poller[{self.name}]'"

    def missing(self) -> list[str]:
        """The modules of the extra that cannot be imported here."""
        return [module for module in self.modules if not _importable(module)]


def load_reference(reference: str) -> Any:
    """The object ``module:attribute.path`` names, importing the module."""
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class SourceEnvironment:
    """What opening a source may use: the worker's AWS clients and its ``[worker]`` settings."""

    clients: AwsClients
    worker: WorkerConfig

    def region_of(self, mapping: ResolvedMapping) -> str:
        """The source's region: its ARN's, else the configured one."""
        if mapping.event_source_arn:
            region = ARN.parse(mapping.event_source_arn).region
            if region:
                return region
        return self.clients.region


@dataclass(frozen=True, slots=True)
class OpenedSource:
    """A source ready to run: its reader and settler, its codec, and what else it brings."""

    source: PartitionSource | QueueSource
    codec: EventCodec
    #: The source keeps progress itself (Kafka: the consumer group's committed offsets): wraps
    #: the worker's store so checkpoints go there and everything else stays in the store.
    checkpoints: Callable[[Store], Store] | None = None
    #: Builds the on-failure destinations the source serves itself (``kafka://``).
    destination: Callable[[str], Destination] | None = None

    async def aclose(self) -> None:
        """Release what the source holds (a Kafka consumer leaves its group)."""
        await self.source.aclose()


#: ``open(mapping, environment)``: connect nothing yet, but build the parts (imports the client).
OpenSource = Callable[[ResolvedMapping, "SourceEnvironment"], Awaitable[OpenedSource]]
#: ``embedded(mapping, clients, shards)``: create the source's resources on the embedded
#: endpoint (a stream gets ``shards`` shards).
EmbeddedSetup = Callable[[ResolvedMapping, "AwsClients", int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Everything poller knows about one kind of source (see the module docstring)."""

    #: The registry key and ``ResolvedMapping.source_kind`` ("kafka"); logs and messages use it.
    kind: str
    #: How messages name the source ("Kafka").
    title: str
    family: Family
    #: The mapping fields only this source takes, their checks and rules, and their resolution.
    options: type[SourceOptions]
    defaults: SourceDefaults
    #: The records typed handlers receive.
    record_type: type[Record]
    #: ``module:function`` that opens a mapping's source (an :data:`OpenSource`).
    opener: str
    arn: ArnPattern | None = None
    endpoints: EndpointsKey | None = None
    #: The starting positions a mapping must choose from; empty: StartingPosition is refused.
    starting_positions: tuple[StartingPosition, ...] = ()
    #: Shared mapping fields (AWS names) this source refuses unless left at their default.
    unsupported: tuple[str, ...] = ()
    #: ``SourceAccessConfigurations`` types this source takes (VPC_* are accepted and ignored).
    access_types: tuple[str, ...] = ()
    destinations: tuple[DestinationScheme, ...] = ()
    #: The optional dependency the source needs, or a function of the mapping when that depends
    #: on it (an MQ broker's URL scheme); None when the mapping does not tell (an Amazon MQ ARN).
    extra: Extra | Callable[[ResolvedMapping], Extra | None] | None = None
    #: ``module:function`` that creates the source's resources on the embedded endpoint (an
    #: :data:`EmbeddedSetup`), if it has any there.
    embedded: str | None = None

    async def open(self, mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
        """Open ``mapping``'s source: import the opener (and so the client library), call it."""
        open_source = cast(OpenSource, load_reference(self.opener))
        return await open_source(mapping, environment)

    async def set_up_embedded(
        self, mapping: ResolvedMapping, clients: AwsClients, shards: int
    ) -> None:
        """Create what ``mapping`` reads on the embedded endpoint (nothing for brokers)."""
        if self.embedded is not None:
            set_up = cast(EmbeddedSetup, load_reference(self.embedded))
            await set_up(mapping, clients, shards)

    def extra_for(self, mapping: ResolvedMapping) -> Extra | None:
        """The optional dependency this mapping needs, when the mapping says."""
        if self.extra is None or isinstance(self.extra, Extra):
            return self.extra
        return self.extra(mapping)
