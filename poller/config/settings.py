"""The process-wide tables of a config file: ``[aws]``, ``[store]``, ``[worker]``, ``[logging]``,
and the whole file (:class:`PollerConfig`) with its ``[[functions]]`` and ``[[mappings]]``.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from poller.config.fields import ConfigModel, in_range
from poller.config.functions import FunctionConfig
from poller.config.mapping import MappingConfig

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
_AS_WRITTEN = ConfigDict(alias_generator=None, populate_by_name=True, extra="forbid", frozen=True)


class AwsConfig(ConfigModel):
    """``[aws]``: region, endpoint and (for emulators) static credentials."""

    model_config = _AS_WRITTEN

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


class StoreConfig(ConfigModel):
    """``[store]``: where checkpoints and idempotency records live."""

    model_config = _AS_WRITTEN

    url: str = "sqlite:///./.poller/state.db"
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
            f"{value!r} is not a store URL (allowed: 'sqlite:///PATH', 'dynamodb://TABLE' or "
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
