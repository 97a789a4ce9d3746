"""Mapping config: validated before anything starts, AWS field names and snake_case both accepted.

A mapping takes the fields of AWS ``CreateEventSourceMapping`` under their AWS names (``BatchSize``)
or in snake_case (``batch_size``), with AWS's defaults, ranges and cross-field rules. Defaults that
depend on the source (``BatchSize`` 100 for streams, 10 for SQS) are resolved from the event source
ARN by :meth:`MappingConfig.resolved`. ``Handler`` replaces ``FunctionName``.

Every problem becomes one line of a :class:`~poller.errors.ConfigError` that names the field, the
value and what is allowed, for example ``mappings[0].BatchSize: 0 is out of range (allowed 1..10000)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from poller.errors import ConfigError

__all__ = [
    "ARN",
    "AwsConfig",
    "DestinationConfig",
    "LoggingConfig",
    "MappingConfig",
    "OnFailure",
    "PollerConfig",
    "ResolvedMapping",
    "ScalingConfig",
    "SourceKind",
    "StartingPosition",
    "StoreConfig",
    "WorkerConfig",
    "load_config",
    "load_esm_json",
    "parse_config",
]

#: Largest invocation payload, as Lambda's synchronous invoke limit (6 MB).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024

#: Read-only fields that ``aws lambda get-event-source-mapping`` prints and a mapping ignores.
ESM_READ_ONLY_FIELDS = frozenset(
    {
        "State",
        "StateTransitionReason",
        "LastModified",
        "LastProcessingResult",
        "FunctionArn",
        "FunctionName",
        "EventSourceMappingArn",
        "ResponseMetadata",
        "FilterCriteriaError",
        "KMSKeyArn",
        "MetricsConfig",
        "ProvisionedPollerConfig",
    }
)


class SourceKind(StrEnum):
    """The families of event sources, told apart by the service in the ARN."""

    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    SQS = "sqs"
    KAFKA = "kafka"
    MQ = "mq"


class StartingPosition(StrEnum):
    """Where a stream mapping starts reading a shard that has no checkpoint yet."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


@dataclass(frozen=True, slots=True)
class ARN:
    """A parsed Amazon Resource Name."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> ARN:
        """Split ``arn:partition:service:region:account:resource``; ValueError when malformed."""
        parts = text.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or not parts[2] or not parts[5]:
            raise ValueError(
                f"{text!r} is not an ARN (expected arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)"
            )
        return cls(parts[1], parts[2], parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def _in_range(lo: float, hi: float, *, also: float | None = None) -> AfterValidator:
    allowed = f"{lo:g}..{hi:g}" if also is None else f"{also:g} or {lo:g}..{hi:g}"

    def check(value: float | None) -> float | None:
        if value is None or value == also:
            return value
        if not lo <= value <= hi:
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            raise ValueError(f"{shown!r} is out of range (allowed {allowed})")
        return value

    return AfterValidator(check)


def _source_kind(arn_text: str) -> SourceKind:
    arn = ARN.parse(arn_text)
    if arn.service == "kinesis" and arn.resource.startswith("stream/"):
        return SourceKind.KINESIS
    if arn.service == "dynamodb" and "/stream/" in arn.resource:
        return SourceKind.DYNAMODB
    if arn.service == "sqs":
        return SourceKind.SQS
    if arn.service == "kafka":
        return SourceKind.KAFKA
    if arn.service == "mq":
        return SourceKind.MQ
    raise ValueError(
        f"{arn_text!r} is not a supported event source "
        "(Kinesis stream, DynamoDB stream, SQS queue, MSK cluster or Amazon MQ broker ARN)"
    )


class _Model(BaseModel):
    """Base: AWS PascalCase names as aliases, snake_case accepted, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )


class OnFailure(_Model):
    """``DestinationConfig.OnFailure``: where discarded batches are recorded.

    ``OnFailure = {}`` (as ``get-event-source-mapping`` prints it when none is set) means none.
    """

    destination: str | None = None

    @field_validator("destination")
    @classmethod
    def _check_destination(cls, value: str | None) -> str | None:
        if value is None:
            return None
        arn = ARN.parse(value)
        if arn.service not in {"sqs", "sns", "s3"}:
            raise ValueError(
                f"{value!r} is not an allowed on-failure destination "
                "(allowed: an SQS queue, SNS topic or S3 bucket ARN)"
            )
        if arn.service in {"sqs", "sns"} and arn.resource.endswith(".fifo"):
            raise ValueError(
                f"{value!r} is a FIFO {arn.service.upper()} destination, which AWS refuses "
                "for on-failure records (use a standard queue or topic)"
            )
        return value


class DestinationConfig(_Model):
    """``DestinationConfig`` of a mapping; only ``OnFailure`` applies to event source mappings."""

    on_failure: OnFailure | None = None


class ScalingConfig(_Model):
    """``ScalingConfig`` of an SQS mapping: the most batches in flight at once."""

    maximum_concurrency: Annotated[int | None, _in_range(2, 1000)] = None


class MappingConfig(_Model):
    """One event source mapping, with AWS's field names and meaning.

    Fields left as ``None`` take the source's AWS default; :meth:`resolved` applies them.
    """

    uuid: str | None = Field(
        default=None, alias="UUID", validation_alias=AliasChoices("UUID", "uuid")
    )
    event_source_arn: str = Field(alias="EventSourceArn")
    handler: str | None = None
    enabled: bool = True
    batch_size: Annotated[int | None, _in_range(1, 10000)] = None
    maximum_batching_window_in_seconds: Annotated[float | None, _in_range(0, 300)] = None
    starting_position: StartingPosition | None = None
    starting_position_timestamp: datetime | None = None
    maximum_retry_attempts: Annotated[int, _in_range(0, 10000, also=-1)] = -1
    maximum_record_age_in_seconds: Annotated[int, _in_range(60, 604800, also=-1)] = -1
    bisect_batch_on_function_error: bool = False
    function_response_types: tuple[Literal["ReportBatchItemFailures"], ...] = ()
    destination_config: DestinationConfig | None = None
    parallelization_factor: Annotated[int, _in_range(1, 10)] = 1
    tumbling_window_in_seconds: Annotated[int | None, _in_range(0, 900)] = None
    filter_criteria: dict[str, Any] | None = None
    # poller's own fields, beyond CreateEventSourceMapping:
    function_timeout: Annotated[float, _in_range(0.001, 900)] = 60.0
    idempotency: bool = False
    idempotency_ttl_seconds: Annotated[int, _in_range(60, 31_536_000)] = 7 * 24 * 3600
    scaling_config: ScalingConfig | None = None
    #: Streams: wait before retrying a failed batch (default 0.5 s, doubling). SQS: when set, a
    #: failed message is made visible again after this (growing with its receive count) instead of
    #: after the visibility timeout (AWS's behaviour, the default).
    retry_backoff_seconds: Annotated[float | None, _in_range(0, 43200)] = None
    retry_backoff_max_seconds: Annotated[float, _in_range(0, 43200)] = 30.0
    #: SQS: extend the visibility of messages whose handler is still running, so they never
    #: reappear mid-processing. Off = AWS's behaviour (keep FunctionTimeout <= visibility timeout).
    visibility_heartbeat: bool = True

    @field_validator("event_source_arn")
    @classmethod
    def _check_arn(cls, value: str) -> str:
        _source_kind(value)
        return value

    @field_validator("starting_position_timestamp", mode="before")
    @classmethod
    def _epoch_seconds(cls, value: Any) -> Any:
        # AWS prints StartingPositionTimestamp as epoch seconds; TOML gives a datetime.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> MappingConfig:
        kind = self.source_kind
        problems: list[str] = []
        if kind in (SourceKind.KINESIS, SourceKind.DYNAMODB):
            if self.starting_position is None:
                problems.append(
                    "StartingPosition: missing; a stream mapping needs one of "
                    "TRIM_HORIZON, LATEST"
                    + (", AT_TIMESTAMP" if kind is SourceKind.KINESIS else "")
                )
            if (
                kind is SourceKind.DYNAMODB
                and self.starting_position is StartingPosition.AT_TIMESTAMP
            ):
                problems.append(
                    "StartingPosition: 'AT_TIMESTAMP' is not supported for DynamoDB Streams "
                    "(allowed: TRIM_HORIZON, LATEST)"
                )
        if self.starting_position is StartingPosition.AT_TIMESTAMP:
            if self.starting_position_timestamp is None:
                problems.append(
                    "StartingPositionTimestamp: missing, but required when StartingPosition is "
                    "AT_TIMESTAMP (epoch seconds or an ISO 8601 time)"
                )
        elif self.starting_position_timestamp is not None:
            problems.append(
                "StartingPositionTimestamp: only allowed with StartingPosition = AT_TIMESTAMP"
            )
        if self.tumbling_window_in_seconds:
            problems.append(
                f"TumblingWindowInSeconds: {self.tumbling_window_in_seconds} is not supported "
                "yet by poller (allowed: 0 or unset)"
            )
        if self.filter_criteria:
            problems.append("FilterCriteria: not supported yet by poller (leave it unset)")
        if kind not in _SUPPORTED_KINDS:
            problems.append(
                f"EventSourceArn: {self.event_source_arn!r} is a {kind.value} source, which this "
                f"version of poller cannot read yet (supported: "
                f"{', '.join(k.value for k in sorted(_SUPPORTED_KINDS))})"
            )
        if kind is SourceKind.SQS:
            problems.extend(self._sqs_rules())
        elif self.scaling_config is not None:
            problems.append("ScalingConfig: only allowed on SQS mappings")
        if (
            self.retry_backoff_seconds is not None
            and self.retry_backoff_max_seconds < self.retry_backoff_seconds
        ):
            problems.append(
                f"RetryBackoffMaxSeconds: {self.retry_backoff_max_seconds!r} is below "
                f"RetryBackoffSeconds ({self.retry_backoff_seconds!r}); it must be >= it"
            )
        if self.handler is not None and ":" not in self.handler:
            problems.append(
                f"Handler: {self.handler!r} is not a handler reference (expected 'module:function')"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _sqs_rules(self) -> list[str]:
        problems: list[str] = []
        fifo = self.event_source_arn.endswith(".fifo")
        window = self.maximum_batching_window_in_seconds or 0
        if fifo:
            if self.batch_size is not None and self.batch_size > 10:
                problems.append(
                    f"BatchSize: {self.batch_size} is out of range for a FIFO queue (allowed 1..10)"
                )
            if window:
                problems.append(
                    "MaximumBatchingWindowInSeconds: not supported for FIFO queues (leave it unset)"
                )
        elif self.batch_size is not None and self.batch_size > 10 and window < 1:
            problems.append(
                f"MaximumBatchingWindowInSeconds: {window!r} is too small for BatchSize "
                f"{self.batch_size} (allowed 1..300): Maximum batch window in seconds must be "
                "greater than 0 if maximum batch size is greater than 10"
            )
        for name, value, default in (
            ("StartingPosition", self.starting_position, None),
            ("BisectBatchOnFunctionError", self.bisect_batch_on_function_error, False),
            ("MaximumRecordAgeInSeconds", self.maximum_record_age_in_seconds, -1),
            ("ParallelizationFactor", self.parallelization_factor, 1),
        ):
            if value != default:
                problems.append(f"{name}: not supported for SQS mappings (leave it unset)")
        on_failure = self.destination_config.on_failure if self.destination_config else None
        if self.maximum_retry_attempts != -1 and not (on_failure and on_failure.destination):
            problems.append(
                "MaximumRetryAttempts: on an SQS mapping it needs DestinationConfig.OnFailure "
                "(without a destination the queue's redrive policy decides, as in AWS)"
            )
        if on_failure and on_failure.destination and self.maximum_retry_attempts == -1:
            problems.append(
                "MaximumRetryAttempts: an SQS on-failure destination needs it (0..10000): a "
                "message whose receive count passes it + 1 goes to the destination"
            )
        return problems

    @property
    def source_kind(self) -> SourceKind:
        """Which source family the event source ARN names."""
        return _source_kind(self.event_source_arn)

    @property
    def mapping_id(self) -> str:
        """The stable id of the mapping: UUID if given, else derived from source and handler.

        Derived ids are stable across restarts, so checkpoints survive when UUID is not set.
        """
        if self.uuid:
            return self.uuid
        digest = hashlib.sha256(f"{self.event_source_arn}\n{self.handler}".encode()).digest()
        return str(uuid_module.UUID(bytes=digest[:16], version=5))

    def resolved(self) -> ResolvedMapping:
        """Apply the source's AWS defaults and return the settings the engine runs with."""
        defaults = _DEFAULTS[self.source_kind]
        on_failure = self.destination_config.on_failure if self.destination_config else None
        return ResolvedMapping(
            mapping_id=self.mapping_id,
            source_kind=self.source_kind,
            event_source_arn=self.event_source_arn,
            handler=self.handler,
            enabled=self.enabled,
            batch_size=self.batch_size if self.batch_size is not None else defaults.batch_size,
            batching_window=(
                self.maximum_batching_window_in_seconds
                if self.maximum_batching_window_in_seconds is not None
                else defaults.batching_window
            ),
            starting_position=self.starting_position or StartingPosition.LATEST,
            starting_position_timestamp=self.starting_position_timestamp,
            maximum_retry_attempts=self.maximum_retry_attempts,
            maximum_record_age=self.maximum_record_age_in_seconds,
            bisect_on_error=self.bisect_batch_on_function_error,
            report_batch_item_failures="ReportBatchItemFailures" in self.function_response_types,
            on_failure_destination=on_failure.destination if on_failure else None,
            parallelization_factor=self.parallelization_factor,
            function_timeout=self.function_timeout,
            idempotency=self.idempotency,
            idempotency_ttl=self.idempotency_ttl_seconds,
            retry_backoff=(
                self.retry_backoff_seconds
                if self.retry_backoff_seconds is not None
                else defaults.retry_backoff
            ),
            retry_backoff_max=self.retry_backoff_max_seconds,
            maximum_concurrency=(
                self.scaling_config.maximum_concurrency if self.scaling_config else None
            ),
            visibility_heartbeat=self.visibility_heartbeat,
        )


@dataclass(frozen=True, slots=True)
class _SourceDefaults:
    batch_size: int
    batching_window: float
    #: Streams back off between retries; SQS waits for the visibility timeout (0 = off).
    retry_backoff: float = 0.5


_DEFAULTS: Mapping[SourceKind, _SourceDefaults] = {
    SourceKind.KINESIS: _SourceDefaults(100, 0.0),
    SourceKind.DYNAMODB: _SourceDefaults(100, 0.0),
    SourceKind.SQS: _SourceDefaults(10, 0.0, retry_backoff=0.0),
    SourceKind.KAFKA: _SourceDefaults(100, 0.5),
    SourceKind.MQ: _SourceDefaults(100, 0.5),
}

_SUPPORTED_KINDS = frozenset({SourceKind.KINESIS, SourceKind.DYNAMODB, SourceKind.SQS})


@dataclass(frozen=True, slots=True)
class ResolvedMapping:
    """A mapping with every default applied: what the engine and the runtime run with."""

    mapping_id: str
    source_kind: SourceKind
    event_source_arn: str
    handler: str | None
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
    #: SQS: most batches in flight (ScalingConfig.MaximumConcurrency); None = poller's default.
    maximum_concurrency: int | None = None
    visibility_heartbeat: bool = True
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    @property
    def fifo(self) -> bool:
        """The source is a FIFO queue."""
        return self.source_kind is SourceKind.SQS and self.event_source_arn.endswith(".fifo")


class AwsConfig(_Model):
    """``[aws]``: region, endpoint and (for emulators) static credentials."""

    model_config = ConfigDict(
        alias_generator=None, populate_by_name=True, extra="forbid", frozen=True
    )

    region: str = Field(
        default_factory=lambda: (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
    )
    #: ``None`` for real AWS, an URL for an emulator, ``"embedded"`` for an in-process moto server.
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "embedded":
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"{value!r} is not an endpoint (allowed: an http:// or https:// URL, or 'embedded')"
            )
        return value

    @property
    def embedded(self) -> bool:
        """Whether poller should start its own in-process AWS endpoint."""
        return self.endpoint_url == "embedded"


class StoreConfig(_Model):
    """``[store]``: where checkpoints and idempotency records live."""

    model_config = ConfigDict(
        alias_generator=None, populate_by_name=True, extra="forbid", frozen=True
    )

    url: str = "sqlite:///./.poller/state.db"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value == "memory://" or (
            value.startswith("sqlite:///") and len(value) > len("sqlite:///")
        ):
            return value
        raise ValueError(f"{value!r} is not a store URL (allowed: 'sqlite:///PATH' or 'memory://')")


class WorkerConfig(_Model):
    """``[worker]``: runtime behaviour of the process."""

    model_config = ConfigDict(
        alias_generator=None, populate_by_name=True, extra="forbid", frozen=True
    )

    #: How long SIGTERM waits for in-flight batches before abandoning them.
    shutdown_grace_seconds: Annotated[float, _in_range(0, 3600)] = 30.0
    #: How often shards are listed again to find new ones (resharding).
    shard_discovery_seconds: Annotated[float, _in_range(0.1, 3600)] = 30.0
    #: How long to wait between reads of a shard that is caught up; unset = the source's AWS pace
    #: (Kinesis 1 s, DynamoDB Streams 0.25 s).
    idle_poll_seconds: Annotated[float | None, _in_range(0.01, 60)] = None
    #: Longest SQS long poll (WaitTimeSeconds). A queue mapping counts as idle once a long poll
    #: came back empty, so a shorter wait lets ``--exit-when-idle`` notice an empty queue sooner.
    queue_wait_seconds: Annotated[int, _in_range(1, 20)] = 20
    #: How often expired idempotency records are deleted from the store.
    idempotency_purge_seconds: Annotated[float, _in_range(1, 86400)] = 3600.0


class LoggingConfig(_Model):
    """``[logging]``: level, format and whether payloads may be logged."""

    model_config = ConfigDict(
        alias_generator=None, populate_by_name=True, extra="forbid", frozen=True
    )

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    payloads: bool = False


class PollerConfig(_Model):
    """A whole config file: ``[aws]``, ``[store]``, ``[worker]``, ``[logging]``, ``[[mappings]]``."""

    model_config = ConfigDict(
        alias_generator=None, populate_by_name=True, extra="forbid", frozen=True
    )

    aws: AwsConfig = Field(default_factory=AwsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    mappings: tuple[MappingConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_mappings(self) -> PollerConfig:
        problems: list[str] = []
        seen_ids: dict[str, int] = {}
        seen_pairs: dict[tuple[str, str | None], int] = {}
        for index, mapping in enumerate(self.mappings):
            mapping_id = mapping.mapping_id
            if mapping_id in seen_ids:
                problems.append(
                    f"mappings[{index}].UUID: {mapping_id!r} is already used by "
                    f"mappings[{seen_ids[mapping_id]}] (UUIDs must be unique)"
                )
            seen_ids.setdefault(mapping_id, index)
            pair = (mapping.event_source_arn, mapping.handler)
            if mapping.handler is not None and pair in seen_pairs:
                problems.append(
                    f"mappings[{index}]: the pair (EventSourceArn, Handler) is already mapped by "
                    f"mappings[{seen_pairs[pair]}] (AWS refuses a duplicate function and source)"
                )
            seen_pairs.setdefault(pair, index)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _problems(error: ValidationError, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for item in error.errors(include_url=False):
        where = _location([p for p in item["loc"] if p not in ("function-after",)])
        if prefix:
            where = f"{prefix}.{where}" if where and not where.startswith("[") else prefix + where
        message = str(item["msg"]).removeprefix("Value error, ")
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field (check the spelling against the AWS field names)"
        elif kind == "missing":
            message = "missing; this field is required"
        elif (
            "input" in item and kind not in ("value_error",) and not isinstance(item["input"], dict)
        ):
            message = f"{item['input']!r}: {message}"
        for part in message.split("\n"):
            lines.append(f"{where}: {part}" if where else part)
    return lines


def parse_config(data: Mapping[str, Any]) -> PollerConfig:
    """Validate a config given as a mapping (the parsed TOML); ConfigError lists every problem."""
    try:
        return PollerConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None


def load_config(path: str | Path) -> PollerConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return parse_config(data)


def load_esm_json(
    text: str,
    *,
    handler: str | None,
    aws: AwsConfig | None = None,
    store: StoreConfig | None = None,
) -> PollerConfig:
    """Build a config from the JSON that ``aws lambda get-event-source-mapping`` prints.

    Read-only fields (State, LastModified, FunctionArn, ...) are ignored; a ``--handler`` given on the
    command line replaces FunctionName.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"mapping JSON: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError("mapping JSON: expected an object, as get-event-source-mapping prints")
    mapping = {k: v for k, v in raw.items() if k not in ESM_READ_ONLY_FIELDS}
    if handler is not None:
        mapping["Handler"] = handler
    data: dict[str, Any] = {"mappings": [mapping]}
    if aws is not None:
        data["aws"] = aws.model_dump(exclude_none=True)
    if store is not None:
        data["store"] = store.model_dump()
    return parse_config(data)
