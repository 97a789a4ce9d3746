"""A mapping with every default applied: what the engine, the sources and the runtime run with.

:class:`ResolvedMapping` is plain data, built once by ``MappingConfig.resolved()``. Its fields are
the ones every part of poller may read; what only one source needs (a Kafka topic and consumer
group, an MQ queue) travels in ``settings``, an object of that source's own
:class:`SourceSettings` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from poller.config.fields import MAX_PAYLOAD_BYTES, SourceAccess, StartingPosition

__all__ = ["ResolvedMapping", "SourceSettings"]


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Base of what one kind of source resolves for itself (see its package's ``options``)."""


@dataclass(frozen=True, slots=True)
class ResolvedMapping:
    """A mapping with every default applied: what the engine and the runtime run with."""

    mapping_id: str
    #: The registry kind of the source ("kinesis", "dynamodb", "sqs", "kafka", "mq").
    source_kind: str
    event_source_arn: str
    handler: str | None
    #: The ``[[functions]]`` entry the mapping invokes (by name), when it names one.
    function_name: str | None
    enabled: bool
    batch_size: int
    batching_window: float
    starting_position: StartingPosition
    starting_position_timestamp: datetime | None
    maximum_retry_attempts: int
    maximum_record_age: int
    bisect_on_error: bool
    report_batch_item_failures: bool
    on_failure_destination: str | None
    parallelization_factor: int
    function_timeout: float
    idempotency: bool
    idempotency_ttl: int
    retry_backoff: float
    retry_backoff_max: float
    #: Queues: most batches in flight (ScalingConfig.MaximumConcurrency); None = the default.
    maximum_concurrency: int | None = None
    #: SQS: extend the visibility of messages whose handler still runs.
    visibility_heartbeat: bool = True
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    #: Endpoints given in SelfManagedEventSource (else looked up from the ARN).
    #: (Out of ``repr``: a broker URL may carry a login.)
    endpoints: tuple[str, ...] = field(default=(), repr=False)
    source_access: tuple[SourceAccess, ...] = ()
    #: MQ: redeliveries of a failing message before it is dead-lettered.
    maximum_redeliveries: int = 6
    #: The source in one string (the ARN, or endpoint and topic/queue): for logs and events.
    source_label: str = ""
    #: The batching window opens with a batch's first record (Kafka, MQ), not when the previous
    #: invocation ended (streams, SQS).
    window_from_first_record: bool = False
    #: The source is a FIFO queue: order is kept per message group.
    fifo: bool = False
    #: FilterCriteria's patterns (checked; compiled where records are read). Empty: no filter.
    filter_patterns: tuple[str, ...] = ()
    #: MetricsConfig's groups of mapping metrics to export (None: every group, poller's default).
    metric_groups: frozenset[str] | None = None
    #: ProvisionedPollerConfig: bounds on the pollers (SQS).
    minimum_pollers: int | None = None
    maximum_pollers: int | None = None
    #: Tags, as (key, value) pairs in key order (shown in the mapping's status).
    tags: tuple[tuple[str, str], ...] = ()
    #: What only this mapping's kind of source needs (its own :class:`SourceSettings`).
    settings: SourceSettings = field(default_factory=SourceSettings)

    def __post_init__(self) -> None:
        if not self.source_label:
            object.__setattr__(self, "source_label", self.event_source_arn)
