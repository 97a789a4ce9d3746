"""The building blocks of the config: the model base, ARNs, ranges and the shared sub-tables.

Every config table is a :class:`ConfigModel`: AWS's PascalCase names (``BatchSize``) and snake_case
(``batch_size``) are both accepted, unknown fields are refused, values are frozen. Sources build
their own options models (``poller.sources.<kind>.options``) from the same base and helpers, so a
problem in any of them reads the same way: the field, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from poller.config.redaction import LOGIN_URL, SECRET, marker_of, mask_login, redacted_field
from poller.config.regions import check_region

if TYPE_CHECKING:
    from poller.config.mapping import MappingConfig
    from poller.config.resolved import ResolvedMapping

from poller.errors import ConfigError
from poller.filtering import MAX_FILTERS_WITH_QUOTA_INCREASE, compile_pattern

__all__ = [
    "ARN",
    "MAX_PAYLOAD_BYTES",
    "VPC_ACCESS_TYPES",
    "ConfigModel",
    "DestinationConfig",
    "EsmMetricsConfig",
    "FilterConfig",
    "FilterCriteria",
    "OnFailure",
    "ProvisionedPollerConfig",
    "ScalingConfig",
    "SelfManagedEventSource",
    "SourceAccess",
    "SourceAccessConfiguration",
    "SourceOptions",
    "StartingPosition",
    "exactly_one",
    "in_range",
]

#: Largest invocation payload, as Lambda's synchronous invoke limit (6 MB).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


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

    def check_region(self) -> None:
        """ValueError when the ARN names a region (or partition) AWS does not have; an ARN
        without a region (S3) passes."""
        if self.region:
            problem = check_region(self.region, self.partition).problem
            if problem is not None:
                raise ValueError(problem)

    @property
    def region_warning(self) -> str | None:
        """What to say about a region that is accepted though botocore does not know it yet."""
        return check_region(self.region, self.partition).warning if self.region else None


def in_range(lo: float, hi: float, *, also: float | None = None) -> AfterValidator:
    """A field check: the value lies in ``lo..hi`` (or equals ``also``), else a message saying so."""
    allowed = f"{lo:g}..{hi:g}" if also is None else f"{also:g} or {lo:g}..{hi:g}"

    def check(value: float | None) -> float | None:
        if value is None or value == also:
            return value
        if not lo <= value <= hi:
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            raise ValueError(f"{shown!r} is out of range (allowed {allowed})")
        return value

    return AfterValidator(check)


class ConfigModel(BaseModel):
    """Base: AWS PascalCase names as aliases, snake_case accepted, unknown fields refused.

    The repr (and str) of every config model shows fields marked :data:`SECRET` as ``'***'`` and
    :data:`LOGIN_URL` fields without their login (:mod:`poller.config.redaction`), so a config
    printed in a log or a traceback carries no credential.
    """

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        # pydantic's own message would quote the refused value (a password, say): poller's
        # problems say what is wrong themselves (poller.config.loading).
        hide_input_in_errors=True,
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            info = fields.get(name) if name is not None else None
            marker = marker_of(info) if info is not None else None
            yield name, value if marker is None else redacted_field(marker, value)


class SourceOptions(ConfigModel):
    """Base of a source's own mapping fields (``Topics`` for Kafka, ``Queues`` for MQ, ...).

    A mapping's fields that only one kind of source takes are declared by that source's options
    model, in the source's package; the mapping validates them with it once it knows the kind.
    The hooks below give the source its say on the whole mapping.
    """

    def rules(self, mapping: MappingConfig) -> list[str]:
        """Problems across this source's fields and the shared ones ("Field: what is wrong")."""
        return []

    def label(self, endpoints: tuple[str, ...]) -> str:
        """The mapping's source in one string when it is named by endpoints (no login in it)."""
        return endpoints[0]

    def resolve(self, mapping: MappingConfig, resolved: ResolvedMapping) -> ResolvedMapping:
        """``resolved`` with what this source sets (its settings, queue settings, caps)."""
        return resolved


class OnFailure(ConfigModel):
    """``DestinationConfig.OnFailure``: where discarded batches are recorded.

    ``OnFailure = {}`` (as ``get-event-source-mapping`` prints it when none is set) means none.
    A destination is an SQS queue, SNS topic or S3 bucket ARN, or a ``scheme://`` destination
    that the mapping's source serves itself (``kafka://TOPIC``); the mapping checks those.
    """

    destination: str | None = None

    @field_validator("destination")
    @classmethod
    def _check_destination(cls, value: str | None) -> str | None:
        if value is None or "://" in value:
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
        arn.check_region()
        return value


class DestinationConfig(ConfigModel):
    """``DestinationConfig`` of a mapping; only ``OnFailure`` applies to event source mappings."""

    on_failure: OnFailure | None = None


class FilterConfig(ConfigModel):
    """One entry of ``FilterCriteria.Filters``: a pattern, JSON in a string, as AWS takes it."""

    pattern: str


class FilterCriteria(ConfigModel):
    """``FilterCriteria``: records matching none of the patterns are settled without a hand-over
    (the patterns are checked here; ``poller.filtering`` compiles and applies them)."""

    filters: tuple[FilterConfig, ...] = ()

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(f.pattern for f in self.filters)

    def problems(self) -> list[str]:
        """What AWS would refuse in the patterns (the count is checked against the quota, which
        is a worker setting, by the whole config)."""
        problems: list[str] = []
        if len(self.filters) > MAX_FILTERS_WITH_QUOTA_INCREASE:
            problems.append(
                f"FilterCriteria.Filters: {len(self.filters)} filters, at most "
                f"{MAX_FILTERS_WITH_QUOTA_INCREASE} are allowed (AWS's largest quota)"
            )
        for index, pattern in enumerate(self.patterns):
            try:
                compile_pattern(pattern, index=index)
            except ConfigError as error:
                problems.extend(error.problems)
        return problems


class ScalingConfig(ConfigModel):
    """``ScalingConfig`` of a queue mapping (SQS, MQ): the most batches in flight at once."""

    maximum_concurrency: Annotated[int | None, in_range(2, 1000)] = None


class ProvisionedPollerConfig(ConfigModel):
    """``ProvisionedPollerConfig`` (SQS, Kafka): the bounds on the mapping's pollers."""

    minimum_pollers: Annotated[int | None, in_range(1, 200)] = None
    maximum_pollers: Annotated[int | None, in_range(1, 10000)] = None
    #: Kafka: AWS groups mappings that share provisioned capacity (billing); no effect here.
    poller_group_name: str | None = Field(default=None, min_length=1, max_length=128)


class EsmMetricsConfig(ConfigModel):
    """``MetricsConfig`` of a mapping: which groups of event source mapping metrics it exports."""

    metrics: tuple[Literal["EventCount", "ErrorCount", "KafkaMetrics"], ...] = ()


class SelfManagedEventSource(ConfigModel):
    """``SelfManagedEventSource``: a broker named by its endpoints instead of an ARN.

    ``Endpoints`` holds exactly one list, under a key that says which kind of source it names
    (``KAFKA_BOOTSTRAP_SERVERS``, ``MQ_BROKER_URLS``): the mapping asks that source whether the
    endpoints are well formed. With an MSK or Amazon MQ ARN they replace the endpoints AWS would
    look up.
    """

    endpoints: Annotated[dict[str, tuple[str, ...]], LOGIN_URL]

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if len(value) != 1:
            raise ValueError(f"{sorted(value)!r}: expected exactly one list of endpoints")
        key, endpoints = next(iter(value.items()))
        if not 1 <= len(endpoints) <= 10:
            raise ValueError(f"{key}: {len(endpoints)} endpoints (allowed 1..10)")
        for index, endpoint in enumerate(endpoints):
            if "@" in endpoint and "://" not in endpoint:
                # host:port with a login: no client would send it, and every message quoting the
                # server would print the password.
                raise ValueError(
                    f"{key}[{index}]: {mask_login(endpoint)!r} holds a login (credentials go in "
                    "SourceAccessConfigurations, not in a server address)"
                )
        return value

    @property
    def key(self) -> str:
        """The ``Endpoints`` key (``KAFKA_BOOTSTRAP_SERVERS``, ``MQ_BROKER_URLS``)."""
        return next(iter(self.endpoints))

    @property
    def urls(self) -> tuple[str, ...]:
        """The endpoints, in order."""
        return next(iter(self.endpoints.values()))


#: Access types that place a mapping in a VPC on AWS; poller accepts and ignores them, so the
#: output of ``get-event-source-mapping`` loads.
VPC_ACCESS_TYPES = ("VPC_SUBNET", "VPC_SECURITY_GROUP")
#: Ways to say where a secret is besides a Secrets Manager ARN (poller's own).
_SECRET_SCHEMES = ("env:", "file:")


class SourceAccessConfiguration(ConfigModel):
    """One ``SourceAccessConfigurations`` entry: how to authenticate to a broker.

    ``URI`` is a Secrets Manager secret ARN (as AWS), ``env:NAME`` (an environment variable holding
    the secret's JSON) or ``file:PATH`` (a file holding it); for ``VIRTUAL_HOST`` it is the virtual
    host's name. ``Secret`` gives the secret's JSON inline instead (poller's own; keep such config
    files private). Which types a mapping may use is its source's to say.
    """

    type: str
    uri: str | None = Field(default=None, alias="URI", validation_alias=AliasChoices("URI", "uri"))
    secret: Annotated[dict[str, str] | None, SECRET] = None

    @model_validator(mode="after")
    def _check_uri(self) -> SourceAccessConfiguration:
        if self.type in VPC_ACCESS_TYPES:
            return self
        if (self.uri is None) == (self.secret is None):
            raise ValueError(f"{self.type}: give exactly one of URI and Secret")
        if self.type == "VIRTUAL_HOST":
            if self.secret is not None:
                raise ValueError("VIRTUAL_HOST: the URI is the virtual host's name, not a Secret")
            return self
        if self.uri is not None and self.uri.lstrip().startswith(("{", "[")):
            # The secret's JSON pasted where its address goes: say so without quoting it.
            raise ValueError(
                f"{self.type}: URI holds JSON text (not shown: it may be the secret); URI "
                "names where the secret is (a Secrets Manager ARN, env:NAME or file:PATH), "
                "the secret itself goes in Secret = { ... }"
            )
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


def exactly_one(field: str, names: tuple[str, ...] | None, kind: str) -> list[str]:
    """The rule for ``Topics`` and ``Queues``: a mapping of ``kind`` reads exactly one."""
    if names is None:
        return [f"{field}: missing; a {kind} mapping reads exactly one"]
    if len(names) != 1:
        return [f"{field}: {len(names)} given (allowed exactly 1)"]
    return []
