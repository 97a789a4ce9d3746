"""The rules of the fields beyond batching and retries: TumblingWindowInSeconds, FilterCriteria,
ProvisionedPollerConfig, MetricsConfig, KMSKeyArn, Tags and DocumentDBEventSourceConfig, each
honoured or refused with the reason (never ignored)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from poller.config.fields import ProvisionedPollerConfig
from poller.sources import registry
from poller.sources.spec import SourceSpec

if TYPE_CHECKING:
    from poller.config.mapping import MappingConfig

__all__ = ["surface_problems"]


def surface_problems(mapping: MappingConfig, spec: SourceSpec) -> list[str]:
    """What the mapping asks of these fields that poller cannot honour, with the reason."""
    problems: list[str] = []
    window = mapping.tumbling_window_in_seconds
    if window and spec.kind not in ("kinesis", "dynamodb"):
        problems.append(
            f"TumblingWindowInSeconds: not supported for {spec.title} mappings (Kinesis and "
            "DynamoDB Streams only; leave it unset or 0)"
        )
    elif window and mapping.parallelization_factor > 1:
        problems.append(
            "TumblingWindowInSeconds: poller keeps one window state per shard; set "
            f"ParallelizationFactor to 1 (it is {mapping.parallelization_factor})"
        )
    if mapping.filter_criteria is not None:
        problems.extend(mapping.filter_criteria.problems())
    if mapping.document_db_event_source_config is not None:
        problems.append(
            "DocumentDBEventSourceConfig: DocumentDB change streams are not a source poller "
            f"reads ({registry.arn_descriptions()})"
        )
    if mapping.provisioned_poller_config is not None:
        problems.extend(_poller_rules(mapping.provisioned_poller_config, spec.kind))
    metrics = mapping.metrics_config
    if metrics is not None and spec.kind != "kafka":
        kafka_only = sorted(set(metrics.metrics) & {"ErrorCount", "KafkaMetrics"})
        if kafka_only:
            problems.append(
                f"MetricsConfig.Metrics: {kafka_only} apply to Kafka mappings only "
                "(allowed here: ['EventCount'])"
            )
    if mapping.kms_key_arn is not None and not _KMS_KEY.fullmatch(mapping.kms_key_arn):
        problems.append(
            f"KMSKeyArn: {mapping.kms_key_arn!r} is not a KMS key ARN "
            "(arn:aws:kms:REGION:ACCOUNT:key/ID)"
        )
    problems.extend(_tag_rules(mapping.tags or {}))
    return problems


_KMS_KEY = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_+=.@-]+")


def _poller_rules(pollers: ProvisionedPollerConfig, kind: str) -> list[str]:
    """AWS's bounds per source: SQS 2..10,000 pollers, Kafka 1..2,000 (one consumer per worker
    here: more pollers are more worker processes)."""
    low, high = pollers.minimum_pollers, pollers.maximum_pollers
    if kind == "sqs":
        problems = []
        if low is not None and low < 2:
            problems.append(f"ProvisionedPollerConfig.MinimumPollers: {low} (SQS: 2..200)")
        if high is not None and high < 2:
            problems.append(f"ProvisionedPollerConfig.MaximumPollers: {high} (SQS: 2..10000)")
        if low is not None and high is not None and low > high:
            problems.append(
                f"ProvisionedPollerConfig.MinimumPollers: {low} is above MaximumPollers ({high})"
            )
        return problems
    if kind == "kafka":
        problems = []
        if high is not None and high > 2000:
            problems.append(f"ProvisionedPollerConfig.MaximumPollers: {high} (Kafka: 1..2000)")
        if low is not None and low > 1:
            problems.append(
                f"ProvisionedPollerConfig.MinimumPollers: {low}; a worker runs one consumer of "
                "the group per Kafka mapping (allowed: 1; run more worker processes for more "
                "pollers, e.g. deploy/kubernetes/keda-kafka.yaml)"
            )
        return problems
    return ["ProvisionedPollerConfig: applies to SQS and Kafka mappings only (leave it unset)"]


def _tag_rules(tags: Mapping[str, str]) -> list[str]:
    """AWS's tag limits: at most 50, keys 1..128 characters, values up to 256."""
    problems = []
    if len(tags) > 50:
        problems.append(f"Tags: {len(tags)} tags, at most 50 are allowed")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128:
            problems.append(f"Tags: key {key[:40]!r} has {len(key)} characters (allowed 1..128)")
        if len(value) > 256:
            problems.append(f"Tags.{key}: {len(value)} characters (allowed 0..256)")
    return problems
