"""Mappings and configs under AWS field names, with test-friendly defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poller.config import PollerConfig, ResolvedMapping, parse_config
from tests.kit.names import (
    KINESIS_ARN,
    REGION,
)

if TYPE_CHECKING:
    from tests.kit.aws import Queue

__all__ = [
    "mapping",
    "moto_aws",
    "poller_config",
    "sqs_config",
    "sqs_mapping",
    "stream_mapping",
    "worker_config",
]

# --- mappings and configs ------------------------------------------------------------------------


def mapping(**fields: Any) -> ResolvedMapping:
    """A resolved mapping from AWS field names: a Kinesis mapping with test-friendly defaults
    (no backoff) unless ``EventSourceArn`` or ``SelfManagedEventSource`` names another source."""
    base: dict[str, Any] = {}
    if "EventSourceArn" not in fields and "SelfManagedEventSource" not in fields:
        base = {
            "EventSourceArn": KINESIS_ARN,
            "StartingPosition": "TRIM_HORIZON",
            "RetryBackoffSeconds": 0,
            "RetryBackoffMaxSeconds": 0,
        }
    base.update(fields)
    return parse_config({"mappings": [base]}).mappings[0].resolved()


def stream_mapping(
    stream_arn: str, *, uuid: str, on_failure: Queue | None = None, **fields: Any
) -> dict[str, Any]:
    """One Kinesis or DynamoDB Streams mapping under AWS field names: TRIM_HORIZON and quick
    retry backoff by default.

    ``fields`` are further mapping fields (``BatchSize=3``, ``MaximumRetryAttempts=2`` ...) and
    override the defaults.
    """
    mapping: dict[str, Any] = {
        "UUID": uuid,
        "EventSourceArn": stream_arn,
        "StartingPosition": "TRIM_HORIZON",
        "RetryBackoffSeconds": 0.02,
        "RetryBackoffMaxSeconds": 0.05,
        "FunctionTimeout": 10,
    }
    if on_failure is not None:
        mapping["DestinationConfig"] = {"OnFailure": {"Destination": on_failure.arn}}
    mapping.update(fields)
    return mapping


def sqs_mapping(queue: Queue | str, *, uuid: str, **fields: Any) -> dict[str, Any]:
    """One SQS mapping under AWS field names; ``fields`` add to or override the defaults."""
    arn = queue if isinstance(queue, str) else queue.arn
    return {"UUID": uuid, "EventSourceArn": arn, "FunctionTimeout": 10, **fields}


def moto_aws(endpoint: str | None = None) -> dict[str, Any]:
    """A config's ``aws`` table: the test region and credentials, on ``endpoint`` when given."""
    aws: dict[str, Any] = {
        "region": REGION,
        "access_key_id": "testing",
        "secret_access_key": "testing",
    }
    if endpoint is not None:
        aws["endpoint_url"] = endpoint
    return aws


def worker_config(
    *mappings: Mapping[str, Any],
    aws: Mapping[str, Any] | None = None,
    store: str = "memory://",
    **worker: Any,
) -> PollerConfig:
    """A validated config for ``mappings``: ``aws`` when given, a memory store unless ``store``,
    and worker settings (``worker`` overrides a 5 s shutdown grace, so a failing test ends soon).
    """
    data: dict[str, Any] = {
        "store": {"url": store},
        "worker": {"shutdown_grace_seconds": 5, **worker},
        "mappings": [dict(m) for m in mappings],
    }
    if aws is not None:
        data["aws"] = dict(aws)
    return parse_config(data)


def poller_config(
    endpoint: str, *mappings: Mapping[str, Any], store_url: str = "memory://"
) -> PollerConfig:
    """A validated config for stream ``mappings`` against ``endpoint``, with fast polling."""
    return worker_config(
        *mappings,
        aws=moto_aws(endpoint),
        store=store_url,
        idle_poll_seconds=0.05,
        shard_discovery_seconds=0.5,
    )


def sqs_config(endpoint: str, *mappings: Mapping[str, Any], grace: float = 5) -> PollerConfig:
    """A validated config for SQS ``mappings`` against ``endpoint``."""
    return worker_config(*mappings, aws=moto_aws(endpoint), shutdown_grace_seconds=grace)
