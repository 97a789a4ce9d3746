"""The process-wide tables of a config file: ``[aws]``, ``[store]``, ``[worker]``, ``[logging]``,
and the whole file (:class:`PollerConfig`) with its ``[[functions]]`` and ``[[mappings]]``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from poller.config.fields import ARN, ConfigModel, in_range
from poller.config.functions import FunctionConfig
from poller.config.mapping import MappingConfig
from poller.config.redaction import LOGIN_URL, SECRET, mask_login
from poller.config.regions import check_region
from poller.config.source_fields import error_detail

__all__ = [
    "AwsConfig",
    "HttpConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PollerConfig",
    "StoreConfig",
    "WorkerConfig",
]

#: The process tables use the names as written (snake_case), not AWS's.
_AS_WRITTEN = ConfigDict(
    alias_generator=None,
    populate_by_name=True,
    extra="forbid",
    frozen=True,
    hide_input_in_errors=True,
)


class AwsConfig(ConfigModel):
    """``[aws]``: region, endpoint and (for emulators) static credentials."""

    model_config = _AS_WRITTEN

    #: Where the mappings' sources are: an event source ARN must name this region (Lambda
    #: reads event sources in its own region only, and every client poller makes talks to it).
    region: str = Field(default_factory=lambda: _region_from_environment()[0])
    #: ``None`` for real AWS, an URL for an emulator, ``"embedded"`` for an in-process moto server.
    endpoint_url: Annotated[str | None, LOGIN_URL] = None
    #: Static credentials. The key id is not secret to AWS, but it is redacted like the secret
    #: key: the two are easily swapped in a file, and a swapped pair would print the secret.
    access_key_id: Annotated[str | None, SECRET] = None
    secret_access_key: Annotated[str | None, SECRET] = None

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "embedded":
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"{mask_login(value)!r} is not an endpoint (allowed: an http:// or https:// "
                "URL, or 'embedded')"
            )
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        problem = check_region(value).problem
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def region_origin(self) -> str:
        """Where :attr:`region` comes from when the file does not set it (" (unset: taken from
        AWS_REGION)"), else an empty string."""
        if "region" in self.model_fields_set:
            return ""
        return f" (unset: {_region_from_environment()[1]})"

    @property
    def region_warning(self) -> str | None:
        """What to say about a region accepted though botocore does not know it yet."""
        return check_region(self.region).warning

    @property
    def embedded(self) -> bool:
        """Whether poller should start its own in-process AWS endpoint."""
        return self.endpoint_url == "embedded"


def _region_from_environment() -> tuple[str, str]:
    """The region when ``[aws] region`` is not set, and where it comes from."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name):
            return os.environ[name], f"taken from {name}"
    return "us-east-1", "the default us-east-1"


class StoreConfig(ConfigModel):
    """``[store]``: where checkpoints and idempotency records live."""

    model_config = _AS_WRITTEN

    url: Annotated[str, LOGIN_URL] = "sqlite:///./.poller/state.db"
    #: DynamoDB: create the table (on-demand, with TTL) when it does not exist.
    create: bool = True

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value == "memory://":
            return value
        for scheme in ("sqlite:///", "dynamodb://"):
            if value.startswith(scheme) and len(value) > len(scheme):
                return value
        raise ValueError(
            f"{mask_login(value)!r} is not a store URL (allowed: 'sqlite:///PATH', 'dynamodb://TABLE' or "
            "'memory://')"
        )


class WorkerConfig(ConfigModel):
    """``[worker]``: runtime behaviour of the process."""

    model_config = _AS_WRITTEN

    #: How long SIGTERM waits for in-flight batches before abandoning them.
    shutdown_grace_seconds: Annotated[float, in_range(0, 3600)] = 30.0
    #: How often shards are listed again to find new ones (resharding).
    shard_discovery_seconds: Annotated[float, in_range(0.1, 3600)] = 30.0
    #: How long to wait between reads of a shard that is caught up; unset = the source's AWS pace
    #: (Kinesis 1 s, DynamoDB Streams 0.25 s).
    idle_poll_seconds: Annotated[float | None, in_range(0.01, 60)] = None
    #: Longest SQS long poll (WaitTimeSeconds). A queue mapping counts as idle once a long poll
    #: came back empty, so a shorter wait lets ``--exit-when-idle`` notice an empty queue sooner.
    queue_wait_seconds: Annotated[int, in_range(1, 20)] = 20
    #: How often expired idempotency records are deleted from the store.
    idempotency_purge_seconds: Annotated[float, in_range(1, 86400)] = 3600.0
    #: Kafka: how long the consumer group waits to hear from a poller before it gives the
    #: poller's partitions to the others (a killed process is noticed after this).
    kafka_session_timeout_seconds: Annotated[float, in_range(1, 300)] = 10.0
    #: Kafka: on a rebalance, how long batches in flight get to finish and commit before the
    #: partitions go to their new owner (who then reads those batches again).
    kafka_revoke_grace_seconds: Annotated[float, in_range(0, 900)] = 30.0
    #: Who this worker is in the lease table (unique per process: host name and pid).
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    #: Kinesis, DynamoDB Streams: a lease not renewed for this long is taken by another worker.
    #: Shorter fails over sooner and costs more store writes (a renewal every third of it).
    lease_duration_seconds: Annotated[float, in_range(1, 600)] = 10.0
    #: Most partitions of one mapping this worker leases; unset = no cap.
    max_leases_per_worker: Annotated[int | None, in_range(1, 100000)] = None
    #: Most leases taken from other workers in one pass (a joining worker gets its share over
    #: a few passes, without a storm of moves).
    max_leases_to_steal: Annotated[int, in_range(1, 100)] = 1
    #: Most filters a mapping's FilterCriteria may hold: AWS's quota, 5 by default and up to 10
    #: after an increase (set 10 to run mappings made under the increased quota).
    max_filters_per_mapping: Annotated[int, in_range(5, 10)] = 5


class HttpConfig(ConfigModel):
    """``[http]``: the operators' endpoint (``/metrics``, ``/healthz``, ``/readyz``, ``/status``)."""

    model_config = _AS_WRITTEN

    #: ``HOST:PORT`` to listen on (``0.0.0.0:9464`` for every interface; port 0 picks a free
    #: one); unset, there is no endpoint.
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, colon, port = value.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(
                f"{value!r} is not HOST:PORT (for example '127.0.0.1:9464' or '0.0.0.0:9464'; "
                "the port 0..65535)"
            )
        return value

    @property
    def host_and_port(self) -> tuple[str, int]:
        """The host (brackets of an IPv6 address removed) and port of ``listen``."""
        assert self.listen is not None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class MetricsConfig(ConfigModel):
    """``[metrics]``: where metrics go besides ``/metrics``."""

    model_config = _AS_WRITTEN

    #: Publish every metric to CloudWatch under this namespace (PutMetricData, once a
    #: ``cloudwatch_interval_seconds``), with AWS's dimensions; unset, nothing is published.
    cloudwatch_namespace: str | None = Field(default=None, min_length=1, max_length=255)
    cloudwatch_interval_seconds: Annotated[float, in_range(1, 3600)] = 60.0


class LoggingConfig(ConfigModel):
    """``[logging]``: level, format and whether payloads may be logged."""

    model_config = _AS_WRITTEN

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    payloads: bool = False


class PollerConfig(ConfigModel):
    """A whole config file: ``[aws]``, ``[store]``, ``[worker]``, ``[logging]``, ``[http]``,
    ``[metrics]``, ``[[functions]]`` and ``[[mappings]]``."""

    model_config = _AS_WRITTEN

    aws: AwsConfig = Field(default_factory=AwsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    functions: tuple[FunctionConfig, ...] = ()
    mappings: tuple[MappingConfig, ...] = ()

    def function(self, name: str) -> FunctionConfig | None:
        """The ``[[functions]]`` entry of that name, if any."""
        return next((f for f in self.functions if f.function_name == name), None)

    @property
    def warnings(self) -> list[str]:
        """What is accepted but worth a word: regions botocore does not know yet."""
        found: list[str] = []
        if self.aws.region_warning is not None:
            found.append(f"aws.region: {self.aws.region_warning}")
        for index, mapping in enumerate(self.mappings):
            for field, arn in _regional_arns(mapping):
                if arn.region_warning is not None:
                    found.append(f"mappings[{index}].{field}: {arn.region_warning}")
        return found

    @model_validator(mode="wrap")
    @classmethod
    def _with_region_rules(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> PollerConfig:
        """Every ARN poller reads or writes through its AWS clients names ``[aws] region``.

        Checked on the file as written when other parts of it are refused, so these problems are
        reported with all the others.
        """
        try:
            config: PollerConfig = handler(data)
        except ValidationError as error:
            problems = _raw_region_rules(data)
            if not problems:
                raise
            details = [error_detail(e) for e in error.errors()]
            details.append(
                {
                    "type": PydanticCustomError("value_error", _escaped("\n".join(problems))),
                    "loc": (),
                    "input": None,
                }
            )
            raise ValidationError.from_exception_data(
                cls.__name__, details, hide_input=True
            ) from None
        problems = _region_rules(config.aws, _named_arns(config.mappings))
        if problems:
            raise ValueError("\n".join(problems))
        return config

    @model_validator(mode="after")
    def _filters_within_quota(self) -> PollerConfig:
        quota = self.worker.max_filters_per_mapping
        problems = [
            f"mappings[{index}].FilterCriteria.Filters: {len(m.filter_criteria.filters)} filters, "
            f"at most {quota} are allowed ([worker] max_filters_per_mapping; AWS's default "
            "quota is 5, up to 10 after an increase)"
            for index, m in enumerate(self.mappings)
            if m.filter_criteria is not None and len(m.filter_criteria.filters) > quota
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _functions_named(self) -> PollerConfig:
        problems: list[str] = []
        seen: dict[str, int] = {}
        for index, function in enumerate(self.functions):
            if function.function_name in seen:
                problems.append(
                    f"functions[{index}].FunctionName: {function.function_name!r} is already "
                    f"used by functions[{seen[function.function_name]}]"
                )
            seen.setdefault(function.function_name, index)
        for index, mapping in enumerate(self.mappings):
            name = mapping.function_reference
            if name is not None and name not in seen:
                known = ", ".join(repr(n) for n in seen) or "none"
                problems.append(
                    f"mappings[{index}].FunctionName: {mapping.function_name!r} names no "
                    f"[[functions]] entry (defined: {known})"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

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
            pair = (mapping.source_label, mapping.handler or mapping.function_reference)
            source_fields = (
                "EventSourceArn"
                if mapping.event_source_arn
                else "SelfManagedEventSource topic/queue"
            )
            code_field = "Handler" if mapping.handler is not None else "FunctionName"
            if pair[1] is not None and pair in seen_pairs:
                problems.append(
                    f"mappings[{index}]: the pair ({source_fields}, {code_field}) is already "
                    "mapped by "
                    f"mappings[{seen_pairs[pair]}] (AWS refuses a duplicate function and source)"
                )
            seen_pairs.setdefault(pair, index)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _escaped(message: str) -> str:
    return message.replace("{", "{{").replace("}", "}}")


#: An ARN a mapping names: (index of the mapping, field, the ARN, whether it only labels events).
_Named = tuple[int, str, ARN, bool]
_DESTINATION = "DestinationConfig.OnFailure.Destination"


def _regional_arns(mapping: MappingConfig) -> list[tuple[str, ARN]]:
    """The mapping's ARNs that name a region, with the field that holds each."""
    found: list[tuple[str, ARN]] = []
    if mapping.event_source_arn is not None:
        found.append(("EventSourceArn", ARN.parse(mapping.event_source_arn)))
    destination = mapping.on_failure_destination
    if destination is not None and "://" not in destination:
        found.append((_DESTINATION, ARN.parse(destination)))
    return [(field, arn) for field, arn in found if arn.region]


def _named_arns(mappings: Iterable[MappingConfig]) -> list[_Named]:
    """The regional ARNs of valid mappings. An MSK or Amazon MQ ARN given with
    ``SelfManagedEventSource`` endpoints is never looked up: it only labels the events."""
    return [
        (index, field, arn, field == "EventSourceArn" and bool(mapping.self_managed_event_source))
        for index, mapping in enumerate(mappings)
        for field, arn in _regional_arns(mapping)
    ]


def _raw_named_arns(raw_mappings: Any) -> list[_Named]:
    """The regional ARNs the ``[[mappings]]`` of a refused config name, as written (AWS or
    snake_case names), leaving out what is malformed or in no region AWS has: those problems
    are reported by the fields themselves."""

    def get(table: Any, aws_name: str, snake_name: str) -> Any:
        return table.get(aws_name, table.get(snake_name)) if isinstance(table, Mapping) else None

    found: list[_Named] = []
    for index, raw in enumerate(raw_mappings if isinstance(raw_mappings, list | tuple) else ()):
        labels = get(raw, "SelfManagedEventSource", "self_managed_event_source") is not None
        on_failure = get(
            get(raw, "DestinationConfig", "destination_config"), "OnFailure", "on_failure"
        )
        for field, text, labelling in (
            ("EventSourceArn", get(raw, "EventSourceArn", "event_source_arn"), labels),
            (_DESTINATION, get(on_failure, "Destination", "destination"), False),
        ):
            if not isinstance(text, str) or "://" in text:
                continue
            try:
                arn = ARN.parse(text.strip())
                arn.check_region()
            except ValueError:
                continue
            if arn.region:
                found.append((index, field, arn, labelling))
    return found


def _region_rules(aws: AwsConfig, named: Iterable[_Named]) -> list[str]:
    """An ARN poller reaches through AWS must be in ``[aws] region``: Lambda reads event sources
    in its own region, and poller's clients (sources, DescribeBroker, destinations) all talk to
    that region, whatever the endpoint (moto and LocalStack keep regions apart too)."""
    if "region" not in aws.model_fields_set:  # from the environment: no field check ran
        problem = check_region(aws.region).problem
        if problem is not None:
            return [f"aws.region: {problem}{aws.region_origin}"]
    problems: list[str] = []
    for index, field, arn, labels_only in named:
        if arn.region == aws.region or labels_only:
            continue
        why = (
            "Lambda reads an event source in its own region only, and so do poller's clients"
            if field == "EventSourceArn"
            else "poller's clients send on-failure records to [aws] region only"
        )
        problems.append(
            f"mappings[{index}].{field}: region {arn.region!r} is not the [aws] region "
            f"{aws.region!r}{aws.region_origin} (allowed: {aws.region!r}); {why}: set [aws] "
            f"region (--region with --esm) to {arn.region!r}, or run a worker per region"
        )
    return problems


def _raw_region_rules(data: Any) -> list[str]:
    """:func:`_region_rules` for a config that is refused for other problems."""
    if not isinstance(data, Mapping):
        return []
    try:
        aws = AwsConfig.model_validate(data.get("aws", {}))
    except ValidationError:
        return []  # reported as an [aws] problem; no region to compare with
    return _region_rules(aws, _raw_named_arns(data.get("mappings", ())))
