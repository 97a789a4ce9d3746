"""One ``[[mappings]]`` entry: the fields every source shares, and the source's own through its spec.

A mapping takes the fields of AWS ``CreateEventSourceMapping`` under their AWS names (``BatchSize``)
or in snake_case (``batch_size``), with AWS's defaults, ranges and cross-field rules. ``Handler``
replaces ``FunctionName``.

Which source a mapping reads is told by ``EventSourceArn`` or ``SelfManagedEventSource``, through
the source registry (:mod:`poller.sources.registry`). The fields here are the ones every source
shares; fields only one kind of source takes (``Topics``, ``Queues``, ``MaximumRedeliveries``...)
are declared by that source's options model and validated with it, so each problem still names the
field, the value and what is allowed. The rules that depend on the source come from its spec: which
shared fields it refuses, which starting positions and access types it takes, its defaults.
"""

from __future__ import annotations

import hashlib
import uuid as uuid_module
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from poller.config.fields import (
    ARN,
    VPC_ACCESS_TYPES,
    ConfigModel,
    DestinationConfig,
    EsmMetricsConfig,
    FilterCriteria,
    ProvisionedPollerConfig,
    SelfManagedEventSource,
    SourceAccess,
    SourceAccessConfiguration,
    SourceOptions,
    StartingPosition,
    in_range,
)
from poller.config.functions import split_handler
from poller.config.redaction import login_of, mask_login, redact_text
from poller.config.resolved import ResolvedMapping
from poller.config.source_fields import (
    error_detail,
    missing_source_message,
    spec_of_raw,
    validate_options,
)
from poller.config.surface import surface_problems
from poller.sources import registry
from poller.sources.spec import SourceSpec

__all__ = ["MappingConfig"]


class MappingConfig(ConfigModel):
    """One event source mapping, with AWS's field names and meaning.

    Fields left as ``None`` take the source's AWS default; :meth:`resolved` applies them. The
    source's own fields are validated by its options model and kept in :attr:`source_options`.
    """

    uuid: str | None = Field(
        default=None, alias="UUID", validation_alias=AliasChoices("UUID", "uuid")
    )
    event_source_arn: str | None = Field(default=None, alias="EventSourceArn")
    #: Kafka or a message broker named by endpoints (instead of, or overriding, an ARN's).
    self_managed_event_source: SelfManagedEventSource | None = None
    source_access_configurations: tuple[SourceAccessConfiguration, ...] = ()
    #: The ``[[functions]]`` entry this mapping invokes (its name, or its Lambda ARN).
    function_name: str | None = None
    handler: str | None = None
    enabled: bool = True
    batch_size: Annotated[int | None, in_range(1, 10000)] = None
    maximum_batching_window_in_seconds: Annotated[float | None, in_range(0, 300)] = None
    starting_position: StartingPosition | None = None
    starting_position_timestamp: datetime | None = None
    maximum_retry_attempts: Annotated[int, in_range(0, 10000, also=-1)] = -1
    maximum_record_age_in_seconds: Annotated[int, in_range(60, 604800, also=-1)] = -1
    bisect_batch_on_function_error: bool = False
    function_response_types: tuple[Literal["ReportBatchItemFailures"], ...] = ()
    destination_config: DestinationConfig | None = None
    parallelization_factor: Annotated[int, in_range(1, 10)] = 1
    tumbling_window_in_seconds: Annotated[int | None, in_range(0, 900)] = None
    filter_criteria: FilterCriteria | None = None
    provisioned_poller_config: ProvisionedPollerConfig | None = None
    metrics_config: EsmMetricsConfig | None = None
    #: Lambda encrypts FilterCriteria at rest with it; poller keeps filters in its own config.
    kms_key_arn: str | None = Field(default=None, alias="KMSKeyArn")
    tags: dict[str, str] | None = None
    #: Named only to be refused by name: DocumentDB change streams are not a source here.
    document_db_event_source_config: dict[str, Any] | None = Field(
        default=None, alias="DocumentDBEventSourceConfig"
    )
    # poller's own fields, beyond CreateEventSourceMapping:
    function_timeout: Annotated[float, in_range(0.001, 900)] = 60.0
    idempotency: bool = False
    idempotency_ttl_seconds: Annotated[int, in_range(60, 31_536_000)] = 7 * 24 * 3600
    #: Streams: wait before retrying a failed batch (default 0.5 s, doubling). SQS: when set, a
    #: failed message is made visible again after this (growing with its receive count) instead of
    #: after the visibility timeout (AWS's behaviour, the default).
    retry_backoff_seconds: Annotated[float | None, in_range(0, 43200)] = None
    retry_backoff_max_seconds: Annotated[float, in_range(0, 43200)] = 30.0

    _source_options: SourceOptions | None = PrivateAttr(default=None)

    # --- validation --------------------------------------------------------------------------

    @model_validator(mode="wrap")
    @classmethod
    def _with_source_options(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> MappingConfig:
        """Validate the shared fields, then the source's own with its options model, then the
        rules across both; every field problem is reported at once, as pydantic does."""
        if not isinstance(data, Mapping):
            validated: MappingConfig = handler(data)  # an instance, or pydantic's own error
            return validated
        owned_keys = set(registry.option_keys())
        shared = {k: v for k, v in data.items() if k not in owned_keys}
        owned = {k: v for k, v in data.items() if k in owned_keys}
        errors: list[ErrorDetails] = []
        config: MappingConfig | None = None
        try:
            config = handler(shared)
        except ValidationError as error:
            errors.extend(error.errors())
        spec = spec_of_raw(data)
        options: SourceOptions | None = None
        foreign: list[str] = []
        if spec is not None:
            options, option_errors, foreign = validate_options(spec, owned)
            errors.extend(option_errors)
        if errors:
            raise ValidationError.from_exception_data(
                cls.__name__, [error_detail(e) for e in errors], hide_input=True
            )
        assert config is not None
        if spec is None:
            raise ValueError(missing_source_message())
        assert options is not None
        config._source_options = options
        problems = [*foreign, *config._rules(spec, options)]
        if problems:
            raise ValueError("\n".join(problems))
        return config

    @field_validator("event_source_arn")
    @classmethod
    def _check_arn(cls, value: str | None) -> str | None:
        if value is None:
            return None
        arn = ARN.parse(value)
        if registry.spec_for_arn(arn) is None:
            raise ValueError(
                f"{value!r} is not a supported event source ({registry.arn_descriptions()})"
            )
        arn.check_region()
        return value

    @field_validator("self_managed_event_source")
    @classmethod
    def _check_endpoints(
        cls, value: SelfManagedEventSource | None
    ) -> SelfManagedEventSource | None:
        if value is None:
            return None
        spec = registry.spec_for_endpoints(value.key)
        if spec is None or spec.endpoints is None:
            raise ValueError(
                f"{[value.key]!r}: expected exactly one of {', '.join(registry.endpoint_keys())}"
            )
        spec.endpoints.check(value.urls)
        return value

    @field_validator("starting_position_timestamp", mode="before")
    @classmethod
    def _epoch_seconds(cls, value: Any) -> Any:
        # AWS prints StartingPositionTimestamp as epoch seconds; TOML gives a datetime.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        return value

    def _rules(self, spec: SourceSpec, options: SourceOptions) -> list[str]:
        """The cross-field rules: the shared ones, the spec's declared ones, the source's own."""
        problems = self._source_name_rules(spec)
        problems.extend(self._starting_position_rules(spec))
        problems.extend(self._unsupported_rules(spec))
        problems.extend(surface_problems(self, spec))
        problems.extend(self._destination_rules(spec))
        problems.extend(self._access_rules(spec))
        if (
            self.retry_backoff_seconds is not None
            and self.retry_backoff_max_seconds < self.retry_backoff_seconds
        ):
            problems.append(
                f"RetryBackoffMaxSeconds: {self.retry_backoff_max_seconds!r} is below "
                f"RetryBackoffSeconds ({self.retry_backoff_seconds!r}); it must be >= it"
            )
        if self.handler is not None and split_handler(self.handler) is None:
            problems.append(
                f"Handler: {self.handler!r} is not a handler reference (expected "
                "'module.function' or 'module:function')"
            )
        if self.handler is not None and self.function_name is not None:
            problems.append(
                "Handler: set together with FunctionName; give one (Handler is shorthand for a "
                "function)"
            )
        problems.extend(options.rules(self))
        return problems

    def _source_name_rules(self, spec: SourceSpec) -> list[str]:
        managed = self.self_managed_event_source
        if managed is None:
            return []
        if spec.endpoints is None:
            takers = registry.self_managed_titles()
            return [f"SelfManagedEventSource: only allowed for {takers} sources"]
        if self.event_source_arn is not None:
            named = registry.spec_for_endpoints(managed.key)
            if named is not None and named is not spec:
                return [
                    f"SelfManagedEventSource: names a {named.kind} source but EventSourceArn "
                    f"a {spec.kind} one"
                ]
        return []

    def _starting_position_rules(self, spec: SourceSpec) -> list[str]:
        problems: list[str] = []
        allowed = spec.starting_positions
        position = self.starting_position
        if allowed and position is None:
            problems.append(
                f"StartingPosition: missing; a {spec.kind} mapping needs one of "
                + ", ".join(p.value for p in allowed)
            )
        elif allowed and position is not None and position not in allowed:
            problems.append(
                f"StartingPosition: {position.value!r} is not supported for {spec.title} "
                f"(allowed: {', '.join(p.value for p in allowed)})"
            )
        if position is StartingPosition.AT_TIMESTAMP:
            if self.starting_position_timestamp is None:
                problems.append(
                    "StartingPositionTimestamp: missing, but required when StartingPosition is "
                    "AT_TIMESTAMP (epoch seconds or an ISO 8601 time)"
                )
        elif self.starting_position_timestamp is not None:
            problems.append(
                "StartingPositionTimestamp: only allowed with StartingPosition = AT_TIMESTAMP"
            )
        return problems

    def _unsupported_rules(self, spec: SourceSpec) -> list[str]:
        problems = []
        for name, info in type(self).model_fields.items():
            alias = info.alias or name
            if alias in spec.unsupported and getattr(self, name) != info.default:
                problems.append(
                    f"{alias}: not supported for {spec.title} mappings (leave it unset)"
                )
        return problems

    def _destination_rules(self, spec: SourceSpec) -> list[str]:
        destination = self.on_failure_destination
        if destination is None or "://" not in destination:
            return []
        where = "DestinationConfig.OnFailure.Destination"
        served = registry.destination_scheme(destination)
        if served is None:
            allowed = ", ".join(
                ["an SQS queue, SNS topic or S3 bucket ARN", *registry.destination_shapes()]
            )
            return [f"{where}: {destination!r} is not an allowed destination (allowed: {allowed})"]
        scheme, owners = served
        if spec not in owners:
            titles = " and ".join(s.title for s in owners)
            return [
                f"{where}: {destination!r} is {scheme.description}, allowed only for {titles} "
                "sources (use an SQS queue, SNS topic or S3 bucket ARN)"
            ]
        try:
            scheme.check(destination)
        except ValueError as error:
            return [f"{where}: {error}"]
        return []

    def _access_rules(self, spec: SourceSpec) -> list[str]:
        problems: list[str] = []
        seen: set[str] = set()
        known = registry.access_types()
        for index, access in enumerate(self.source_access_configurations):
            where = f"SourceAccessConfigurations[{index}].Type"
            vpc = access.type in VPC_ACCESS_TYPES
            if access.type not in known and not vpc:
                problems.append(
                    f"{where}: {access.type!r} is not a known type "
                    f"(allowed: {', '.join([*known, *VPC_ACCESS_TYPES])})"
                )
            elif (not vpc and access.type not in spec.access_types) or (
                vpc and not spec.access_types
            ):
                problems.append(f"{where}: {access.type!r} is not allowed on {spec.kind} mappings")
            if access.type in seen and not vpc:
                problems.append(f"{where}: {access.type!r} is given twice")
            seen.add(access.type)
        return problems

    # --- what the mapping names ----------------------------------------------------------------

    @property
    def spec(self) -> SourceSpec:
        """The spec of the source the mapping reads (from its ARN, else its endpoints)."""
        if self.event_source_arn is not None:
            spec = registry.spec_for_arn(ARN.parse(self.event_source_arn))
        else:
            assert self.self_managed_event_source is not None  # the validator requires one
            spec = registry.spec_for_endpoints(self.self_managed_event_source.key)
        assert spec is not None  # the validators refuse what no source reads
        return spec

    @property
    def source_kind(self) -> str:
        """The registry kind of the source the mapping reads ("kinesis", "kafka", ...)."""
        return self.spec.kind

    @property
    def source_options(self) -> SourceOptions:
        """The source's own fields, validated by its options model."""
        if self._source_options is None:  # built without validation (model_construct)
            self._source_options = self.spec.options()
        return self._source_options

    @property
    def on_failure_destination(self) -> str | None:
        """``DestinationConfig.OnFailure.Destination``, when set."""
        on_failure = self.destination_config.on_failure if self.destination_config else None
        return on_failure.destination if on_failure else None

    @property
    def function_reference(self) -> str | None:
        """The function's name from ``FunctionName``, which may also be its Lambda ARN."""
        name = self.function_name
        if name is None or not name.startswith("arn:"):
            return name
        # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        parts = name.split(":")
        return parts[6] if len(parts) >= 7 and parts[5] == "function" else name

    @property
    def source_label(self) -> str:
        """The source in one string: its ARN, else what its endpoints and options name."""
        if self.event_source_arn is not None:
            return self.event_source_arn
        assert self.self_managed_event_source is not None
        # The label goes into logs, events and status: never with a login, whatever the source
        # makes of a malformed URL (built from the URLs without logins only then, so the label,
        # and the mapping id derived from it, stay as they were for well-formed URLs).
        urls = self.self_managed_event_source.urls
        label = redact_text(self.source_options.label(urls))
        if any(login and login in label for login in map(login_of, urls)):
            label = self.source_options.label(tuple(mask_login(url) for url in urls))
        return label

    @property
    def mapping_id(self) -> str:
        """The stable id of the mapping: UUID if given, else derived from source and handler.

        Derived ids are stable across restarts, so checkpoints survive when UUID is not set.
        """
        if self.uuid:
            return self.uuid
        code = self.handler if self.handler is not None else self.function_name
        digest = hashlib.sha256(f"{self.source_label}\n{code}".encode()).digest()
        return str(uuid_module.UUID(bytes=digest[:16], version=5))

    def resolved(self) -> ResolvedMapping:
        """Apply the source's AWS defaults and return the settings the engine runs with."""
        spec = self.spec
        defaults = spec.defaults
        resolved = ResolvedMapping(
            mapping_id=self.mapping_id,
            source_kind=spec.kind,
            event_source_arn=self.event_source_arn or "",
            handler=self.handler,
            function_name=self.function_reference,
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
            on_failure_destination=self.on_failure_destination,
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
            endpoints=(
                self.self_managed_event_source.urls if self.self_managed_event_source else ()
            ),
            source_access=tuple(
                SourceAccess(a.type, a.uri, a.secret)
                for a in self.source_access_configurations
                if not a.type.startswith("VPC_")
            ),
            source_label=self.source_label,
            window_from_first_record=defaults.window_from_first_record,
            filter_patterns=self.filter_criteria.patterns if self.filter_criteria else (),
            metric_groups=(
                frozenset(self.metrics_config.metrics) if self.metrics_config is not None else None
            ),
            minimum_pollers=(
                self.provisioned_poller_config.minimum_pollers
                if self.provisioned_poller_config
                else None
            ),
            maximum_pollers=(
                self.provisioned_poller_config.maximum_pollers
                if self.provisioned_poller_config
                else None
            ),
            tags=tuple(sorted((self.tags or {}).items())),
        )
        return self.source_options.resolve(self, resolved)
