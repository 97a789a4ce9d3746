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
import re
import tomllib
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    "KafkaEventSourceConfig",
    "LoggingConfig",
    "MappingConfig",
    "OnFailure",
    "PollerConfig",
    "ResolvedMapping",
    "ScalingConfig",
    "SelfManagedEventSource",
    "SourceAccess",
    "SourceAccessConfiguration",
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

#: Kafka's rules for topic names and consumer group ids.
_KAFKA_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_KAFKA_GROUP = re.compile(r"[A-Za-z0-9\-/*:_+=.@]+")

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
        if value.startswith("kafka://"):
            topic = value.removeprefix("kafka://")
            if not _KAFKA_TOPIC.fullmatch(topic):
                raise ValueError(
                    f"{value!r} does not name a Kafka topic (expected kafka://TOPIC, the topic "
                    "1..249 characters of letters, digits, '.', '_' and '-')"
                )
            return value
        arn = ARN.parse(value)
        if arn.service not in {"sqs", "sns", "s3"}:
            raise ValueError(
                f"{value!r} is not an allowed on-failure destination "
                "(allowed: an SQS queue, SNS topic or S3 bucket ARN, or kafka://TOPIC for a "
                "Kafka source)"
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
    """``ScalingConfig`` of a queue mapping (SQS, MQ): the most batches in flight at once."""

    maximum_concurrency: Annotated[int | None, _in_range(2, 1000)] = None


#: The ``SelfManagedEventSource.Endpoints`` keys, and the source family each one names.
_ENDPOINT_KINDS: Mapping[str, SourceKind] = {
    "KAFKA_BOOTSTRAP_SERVERS": SourceKind.KAFKA,
    "MQ_BROKER_URLS": SourceKind.MQ,
}
_MQ_SCHEMES = ("amqp", "amqps", "stomp", "stomp+ssl")


class SelfManagedEventSource(_Model):
    """``SelfManagedEventSource``: a broker named by its endpoints instead of an ARN.

    ``Endpoints.KAFKA_BOOTSTRAP_SERVERS`` (``host:port``) names a Kafka cluster;
    ``Endpoints.MQ_BROKER_URLS`` (``amqp://``, ``amqps://``, ``stomp://``, ``stomp+ssl://``) a message
    broker. With an MSK or Amazon MQ ARN they replace the endpoints AWS would look up.
    """

    endpoints: dict[str, tuple[str, ...]]

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if len(value) != 1 or next(iter(value)) not in _ENDPOINT_KINDS:
            raise ValueError(
                f"{sorted(value)!r}: expected exactly one of {', '.join(sorted(_ENDPOINT_KINDS))}"
            )
        key, endpoints = next(iter(value.items()))
        if not 1 <= len(endpoints) <= 10:
            raise ValueError(f"{key}: {len(endpoints)} endpoints (allowed 1..10)")
        for endpoint in endpoints:
            if key == "KAFKA_BOOTSTRAP_SERVERS":
                host, _, port = endpoint.rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(
                        f"{key}: {endpoint!r} is not a bootstrap server (expected host:port)"
                    )
            else:
                scheme, sep, rest = endpoint.partition("://")
                if not sep or scheme not in _MQ_SCHEMES or not rest:
                    raise ValueError(
                        f"{key}: {endpoint!r} is not a broker URL (allowed schemes: "
                        f"{', '.join(_MQ_SCHEMES)})"
                    )
        if key == "MQ_BROKER_URLS":
            families = {e.partition("://")[0].startswith("amqp") for e in endpoints}
            if len(families) > 1:
                raise ValueError(f"{key}: mixes AMQP and STOMP URLs; name one broker")
        return value

    @property
    def kind(self) -> SourceKind:
        """The source family the endpoints name."""
        return _ENDPOINT_KINDS[next(iter(self.endpoints))]

    @property
    def urls(self) -> tuple[str, ...]:
        """The endpoints, in order."""
        return next(iter(self.endpoints.values()))


class KafkaEventSourceConfig(_Model):
    """``SelfManagedKafkaEventSourceConfig`` / ``AmazonManagedKafkaEventSourceConfig``."""

    #: The consumer group; AWS's default is the mapping's UUID.
    consumer_group_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None

    @field_validator("consumer_group_id")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and not _KAFKA_GROUP.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a consumer group id (allowed: letters, digits and "
                "- / * : _ + = . @)"
            )
        return value


#: SourceAccessConfigurations types and the sources that take them. VPC_* only place a mapping
#: in a VPC on AWS; poller accepts and ignores them, so get-event-source-mapping output loads.
_ACCESS_TYPES: Mapping[str, frozenset[SourceKind]] = {
    "BASIC_AUTH": frozenset({SourceKind.KAFKA, SourceKind.MQ}),
    "VIRTUAL_HOST": frozenset({SourceKind.MQ}),
    "SASL_SCRAM_256_AUTH": frozenset({SourceKind.KAFKA}),
    "SASL_SCRAM_512_AUTH": frozenset({SourceKind.KAFKA}),
    "CLIENT_CERTIFICATE_TLS_AUTH": frozenset({SourceKind.KAFKA}),
    "SERVER_ROOT_CA_CERTIFICATE": frozenset({SourceKind.KAFKA}),
    "VPC_SUBNET": frozenset({SourceKind.KAFKA, SourceKind.MQ}),
    "VPC_SECURITY_GROUP": frozenset({SourceKind.KAFKA, SourceKind.MQ}),
}
#: Ways to say where a secret is besides a Secrets Manager ARN (poller's own).
_SECRET_SCHEMES = ("env:", "file:")


class SourceAccessConfiguration(_Model):
    """One ``SourceAccessConfigurations`` entry: how to authenticate to a broker.

    ``URI`` is a Secrets Manager secret ARN (as AWS), ``env:NAME`` (an environment variable holding
    the secret's JSON) or ``file:PATH`` (a file holding it); for ``VIRTUAL_HOST`` it is the virtual
    host's name. ``Secret`` gives the secret's JSON inline instead (poller's own; keep such config
    files private).
    """

    type: str
    uri: str | None = Field(default=None, alias="URI", validation_alias=AliasChoices("URI", "uri"))
    secret: dict[str, str] | None = Field(default=None, repr=False)

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if value not in _ACCESS_TYPES:
            raise ValueError(f"{value!r} is not a known type (allowed: {', '.join(_ACCESS_TYPES)})")
        return value

    @model_validator(mode="after")
    def _check_uri(self) -> SourceAccessConfiguration:
        if self.type.startswith("VPC_"):
            return self
        if (self.uri is None) == (self.secret is None):
            raise ValueError(f"{self.type}: give exactly one of URI and Secret")
        if self.type == "VIRTUAL_HOST":
            if self.secret is not None:
                raise ValueError("VIRTUAL_HOST: the URI is the virtual host's name, not a Secret")
            return self
        if self.uri is not None and not self.uri.startswith(_SECRET_SCHEMES):
            arn = ARN.parse(self.uri)
            if arn.service != "secretsmanager":
                raise ValueError(
                    f"{self.type}: URI {self.uri!r} is not a Secrets Manager secret ARN "
                    "(or env:NAME, file:PATH)"
                )
        return self


@dataclass(frozen=True, slots=True)
class SourceAccess:
    """A resolved access entry: the sources read the secret it points to when they connect."""

    type: str
    uri: str | None
    secret: Mapping[str, str] | None = field(default=None, repr=False)


class MappingConfig(_Model):
    """One event source mapping, with AWS's field names and meaning.

    Fields left as ``None`` take the source's AWS default; :meth:`resolved` applies them.
    """

    uuid: str | None = Field(
        default=None, alias="UUID", validation_alias=AliasChoices("UUID", "uuid")
    )
    event_source_arn: str | None = Field(default=None, alias="EventSourceArn")
    #: Kafka or a message broker named by endpoints (instead of, or overriding, an ARN's).
    self_managed_event_source: SelfManagedEventSource | None = None
    #: Kafka: the one topic to read.
    topics: tuple[str, ...] | None = None
    #: MQ: the one queue to read.
    queues: tuple[str, ...] | None = None
    self_managed_kafka_event_source_config: KafkaEventSourceConfig | None = None
    amazon_managed_kafka_event_source_config: KafkaEventSourceConfig | None = None
    source_access_configurations: tuple[SourceAccessConfiguration, ...] = ()
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
    #: MQ: how many times a message is handed over again after failing before it is dead-lettered
    #: (or sent to the on-failure destination); 6 as Amazon MQ's default maximumRedeliveries.
    maximum_redeliveries: Annotated[int | None, _in_range(0, 1000)] = None

    @field_validator("event_source_arn")
    @classmethod
    def _check_arn(cls, value: str | None) -> str | None:
        if value is not None:
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
        if self.event_source_arn is None and self.self_managed_event_source is None:
            raise ValueError(
                "EventSourceArn: missing; a mapping needs EventSourceArn or, for Kafka and "
                "message brokers, SelfManagedEventSource.Endpoints"
            )
        kind = self.source_kind
        problems: list[str] = []
        problems.extend(self._source_name_rules(kind))
        if kind in (SourceKind.KINESIS, SourceKind.DYNAMODB, SourceKind.KAFKA):
            if self.starting_position is None:
                problems.append(
                    f"StartingPosition: missing; a {kind.value} mapping needs one of "
                    "TRIM_HORIZON, LATEST"
                    + (", AT_TIMESTAMP" if kind is not SourceKind.DYNAMODB else "")
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
        if kind is SourceKind.SQS:
            problems.extend(self._sqs_rules())
        elif kind is SourceKind.MQ:
            problems.extend(self._mq_rules())
        elif self.scaling_config is not None:
            problems.append("ScalingConfig: only allowed on SQS and MQ mappings")
        if kind is SourceKind.KAFKA and self.parallelization_factor != 1:
            problems.append(
                "ParallelizationFactor: not supported for Kafka mappings (leave it unset)"
            )
        if kind is not SourceKind.MQ and self.maximum_redeliveries is not None:
            problems.append("MaximumRedeliveries: only allowed on MQ mappings")
        on_failure = self.destination_config.on_failure if self.destination_config else None
        destination = on_failure.destination if on_failure else None
        if destination and destination.startswith("kafka://") and kind is not SourceKind.KAFKA:
            problems.append(
                f"DestinationConfig.OnFailure.Destination: {destination!r} is a Kafka topic, "
                "allowed only for Kafka sources (use an SQS queue, SNS topic or S3 bucket ARN)"
            )
        problems.extend(self._access_rules(kind))
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

    def _source_name_rules(self, kind: SourceKind) -> list[str]:
        """Topics, Queues, endpoints and the Kafka consumer group config, per source family."""
        problems: list[str] = []
        managed = self.self_managed_event_source
        if managed is not None and self.event_source_arn is not None:
            arn_kind = _source_kind(self.event_source_arn)
            if arn_kind is not managed.kind:
                problems.append(
                    f"SelfManagedEventSource: names a {managed.kind.value} source but "
                    f"EventSourceArn a {arn_kind.value} one"
                )
        if managed is not None and kind not in (SourceKind.KAFKA, SourceKind.MQ):
            problems.append("SelfManagedEventSource: only allowed for Kafka and MQ sources")
        for name, names, owner in (
            ("Topics", self.topics, SourceKind.KAFKA),
            ("Queues", self.queues, SourceKind.MQ),
        ):
            if kind is owner:
                if names is None:
                    problems.append(f"{name}: missing; a {kind.value} mapping reads exactly one")
                elif len(names) != 1:
                    problems.append(f"{name}: {len(names)} given (allowed exactly 1)")
                elif owner is SourceKind.KAFKA and not _KAFKA_TOPIC.fullmatch(names[0]):
                    problems.append(
                        f"Topics[0]: {names[0]!r} is not a topic name (1..249 letters, digits, "
                        "'.', '_' and '-')"
                    )
                elif not names[0] or len(names[0]) > 1000:
                    problems.append(f"{name}[0]: {names[0]!r} (allowed 1..1000 characters)")
            elif names is not None:
                problems.append(f"{name}: only allowed on {owner.value} mappings")
        self_config = self.self_managed_kafka_event_source_config
        msk_config = self.amazon_managed_kafka_event_source_config
        if kind is not SourceKind.KAFKA:
            for name, value in (
                ("SelfManagedKafkaEventSourceConfig", self_config),
                ("AmazonManagedKafkaEventSourceConfig", msk_config),
            ):
                if value is not None:
                    problems.append(f"{name}: only allowed on Kafka mappings")
        elif self.event_source_arn is None and msk_config is not None:
            problems.append(
                "AmazonManagedKafkaEventSourceConfig: only for an MSK cluster ARN; a self-managed "
                "cluster takes SelfManagedKafkaEventSourceConfig"
            )
        elif self.event_source_arn is not None and self_config is not None:
            problems.append(
                "SelfManagedKafkaEventSourceConfig: only for a self-managed cluster; an MSK "
                "cluster ARN takes AmazonManagedKafkaEventSourceConfig"
            )
        return problems

    def _access_rules(self, kind: SourceKind) -> list[str]:
        problems: list[str] = []
        seen: set[str] = set()
        for index, access in enumerate(self.source_access_configurations):
            where = f"SourceAccessConfigurations[{index}]"
            if kind not in _ACCESS_TYPES[access.type]:
                problems.append(
                    f"{where}.Type: {access.type!r} is not allowed on {kind.value} mappings"
                )
            if access.type in seen and not access.type.startswith("VPC_"):
                problems.append(f"{where}.Type: {access.type!r} is given twice")
            seen.add(access.type)
        sasl = seen & {"BASIC_AUTH", "SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH"}
        if kind is SourceKind.KAFKA and len(sasl) > 1:
            problems.append(
                f"SourceAccessConfigurations: {', '.join(sorted(sasl))} together; choose one "
                "SASL mechanism"
            )
        if kind is SourceKind.KAFKA and sasl and "CLIENT_CERTIFICATE_TLS_AUTH" in seen:
            problems.append(
                "SourceAccessConfigurations: CLIENT_CERTIFICATE_TLS_AUTH with a SASL mechanism; "
                "choose one way to authenticate"
            )
        if "VIRTUAL_HOST" in seen:
            urls = self.self_managed_event_source.urls if self.self_managed_event_source else ()
            if any(url.startswith("stomp") for url in urls):
                problems.append("SourceAccessConfigurations: VIRTUAL_HOST applies to RabbitMQ only")
        return problems

    def _mq_rules(self) -> list[str]:
        problems = [
            f"{name}: not supported for MQ mappings (leave it unset)"
            for name, value, default in (
                ("StartingPosition", self.starting_position, None),
                ("BisectBatchOnFunctionError", self.bisect_batch_on_function_error, False),
                ("MaximumRecordAgeInSeconds", self.maximum_record_age_in_seconds, -1),
                ("ParallelizationFactor", self.parallelization_factor, 1),
            )
            if value != default
        ]
        if self.maximum_retry_attempts != -1:
            problems.append(
                "MaximumRetryAttempts: not supported for MQ mappings; MaximumRedeliveries "
                "(0..1000, default 6) says how often a failed message is handed over again"
            )
        if self.function_response_types:
            problems.append(
                "FunctionResponseTypes: not supported for MQ mappings (a failed batch goes back "
                "whole, as AWS)"
            )
        return problems

    def _sqs_rules(self) -> list[str]:
        problems: list[str] = []
        assert self.event_source_arn is not None  # SQS is only ever named by its ARN
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
        """Which source family the event source ARN (or the self-managed endpoints) names."""
        if self.event_source_arn is not None:
            return _source_kind(self.event_source_arn)
        assert self.self_managed_event_source is not None  # the validator requires one
        return self.self_managed_event_source.kind

    @property
    def source_label(self) -> str:
        """The source in one string: its ARN, else the first endpoint and the topic or queue."""
        if self.event_source_arn is not None:
            return self.event_source_arn
        assert self.self_managed_event_source is not None
        endpoint = self.self_managed_event_source.urls[0]
        if self.source_kind is SourceKind.KAFKA:
            endpoint = f"kafka://{endpoint}"
        else:  # a broker URL may carry a login: the label goes into logs and events, it must not
            scheme, _, rest = endpoint.partition("://")
            host, _, path = rest.partition("/")
            endpoint = f"{scheme}://{host.rpartition('@')[2]}" + (f"/{path}" if path else "")
            endpoint = endpoint.rstrip("/")
        name = (self.topics or self.queues or ("",))[0]
        return f"{endpoint}/{name}"

    @property
    def mapping_id(self) -> str:
        """The stable id of the mapping: UUID if given, else derived from source and handler.

        Derived ids are stable across restarts, so checkpoints survive when UUID is not set.
        """
        if self.uuid:
            return self.uuid
        digest = hashlib.sha256(f"{self.source_label}\n{self.handler}".encode()).digest()
        return str(uuid_module.UUID(bytes=digest[:16], version=5))

    def _retry_attempts(self, on_failure: OnFailure | None) -> int:
        # AWS caps Kafka retries at 10 when they are infinite and a destination is set.
        if (
            self.source_kind is SourceKind.KAFKA
            and self.maximum_retry_attempts == -1
            and on_failure is not None
            and on_failure.destination
        ):
            return 10
        return self.maximum_retry_attempts

    def resolved(self) -> ResolvedMapping:
        """Apply the source's AWS defaults and return the settings the engine runs with."""
        defaults = _DEFAULTS[self.source_kind]
        on_failure = self.destination_config.on_failure if self.destination_config else None
        kafka_config = (
            self.self_managed_kafka_event_source_config
            or self.amazon_managed_kafka_event_source_config
        )
        return ResolvedMapping(
            mapping_id=self.mapping_id,
            source_kind=self.source_kind,
            event_source_arn=self.event_source_arn or "",
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
            maximum_retry_attempts=self._retry_attempts(on_failure),
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
            endpoints=(
                self.self_managed_event_source.urls if self.self_managed_event_source else ()
            ),
            topic=self.topics[0] if self.topics else None,
            queue=self.queues[0] if self.queues else None,
            # AWS names the group after the mapping when none is given.
            consumer_group_id=(
                (kafka_config.consumer_group_id if kafka_config else None) or self.mapping_id
            )
            if self.source_kind is SourceKind.KAFKA
            else None,
            source_access=tuple(
                SourceAccess(a.type, a.uri, a.secret)
                for a in self.source_access_configurations
                if not a.type.startswith("VPC_")
            ),
            maximum_redeliveries=(
                self.maximum_redeliveries if self.maximum_redeliveries is not None else 6
            ),
            source_label=self.source_label,
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
    #: Kafka bootstrap servers or MQ broker URLs given in SelfManagedEventSource (else looked up
    #: from the ARN).
    #: (Out of ``repr``: a broker URL may carry a login.)
    endpoints: tuple[str, ...] = field(default=(), repr=False)
    #: Kafka: the topic read.
    topic: str | None = None
    #: MQ: the queue read.
    queue: str | None = None
    #: Kafka: the consumer group (the mapping id when the config gives none, as AWS).
    consumer_group_id: str | None = None
    source_access: tuple[SourceAccess, ...] = ()
    #: MQ: redeliveries of a failing message before it is dead-lettered.
    maximum_redeliveries: int = 6
    #: The source in one string (the ARN, or endpoint and topic/queue): for logs and events.
    source_label: str = ""

    def __post_init__(self) -> None:
        if not self.source_label:
            object.__setattr__(self, "source_label", self.event_source_arn)

    @property
    def window_from_first_record(self) -> bool:
        """The batching window opens with a batch's first record (Kafka, MQ), not when the
        previous invocation ended (streams, SQS)."""
        return self.source_kind in (SourceKind.KAFKA, SourceKind.MQ)

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
    #: Kafka: how long the consumer group waits to hear from a poller before it gives the
    #: poller's partitions to the others (a killed process is noticed after this).
    kafka_session_timeout_seconds: Annotated[float, _in_range(1, 300)] = 10.0
    #: Kafka: on a rebalance, how long batches in flight get to finish and commit before the
    #: partitions go to their new owner (who then reads those batches again).
    kafka_revoke_grace_seconds: Annotated[float, _in_range(0, 900)] = 30.0


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
            pair = (mapping.source_label, mapping.handler)
            source_fields = (
                "EventSourceArn"
                if mapping.event_source_arn
                else "SelfManagedEventSource topic/queue"
            )
            if mapping.handler is not None and pair in seen_pairs:
                problems.append(
                    f"mappings[{index}]: the pair ({source_fields}, Handler) is already mapped by "
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
