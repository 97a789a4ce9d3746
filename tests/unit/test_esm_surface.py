"""Every field of an event source mapping as ``aws lambda get-event-source-mapping`` prints it, for
each source, is either honoured or refused by name: nothing AWS accepts is silently ignored.

The JSON documents follow the shape of the API's EventSourceMappingConfiguration, with every
field a mapping of that source can carry set to a value AWS accepts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.config import ESM_READ_ONLY_FIELDS, load_esm_json
from poller.errors import ConfigError

ACCOUNT, REGION = "123456789012", "us-east-1"
READ_ONLY = {
    "State": "Enabled",
    "StateTransitionReason": "USER_INITIATED",
    "LastModified": 1700000000.0,
    "LastProcessingResult": "OK",
    "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders",
    "EventSourceMappingArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:x",
}
COMMON = {
    "UUID": "6f1c2a57-0000-4000-8000-00000000c0de",
    "BatchSize": 10,
    "MaximumBatchingWindowInSeconds": 1,
    "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"kind": ["keep"]}}'}]},
    "KMSKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "MetricsConfig": {"Metrics": ["EventCount"]},
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
    "Tags": {"team": "orders"},
}
STREAM = {
    **COMMON,
    "StartingPosition": "TRIM_HORIZON",
    "ParallelizationFactor": 2,
    "MaximumRecordAgeInSeconds": 3600,
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": 3,
    "TumblingWindowInSeconds": 0,
    "DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"}},
}
DOCUMENTS = {
    "kinesis": {**STREAM, "EventSourceArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"},
    "dynamodb": {
        **STREAM,
        "FilterCriteria": {"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]},
        "EventSourceArn": (
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders/stream/2024-01-01T00:00:00.000"
        ),
    },
    "sqs": {
        **COMMON,
        "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"kind": ["keep"]}}'}]},
        "EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders",
        "ScalingConfig": {"MaximumConcurrency": 50},
        "ProvisionedPollerConfig": {"MinimumPollers": 2, "MaximumPollers": 20},
    },
    "kafka": {
        **COMMON,
        "FunctionResponseTypes": [],
        "FilterCriteria": {"Filters": [{"Pattern": '{"value": {"kind": ["keep"]}}'}]},
        "StartingPosition": "TRIM_HORIZON",
        "Topics": ["orders"],
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker:9092"]}},
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "orders-poller"},
        "MetricsConfig": {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]},
        "ProvisionedPollerConfig": {
            "MinimumPollers": 1,
            "MaximumPollers": 10,
            "PollerGroupName": "orders",
        },
    },
    "mq": {
        **COMMON,
        "FunctionResponseTypes": [],
        "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"kind": ["keep"]}}'}]},
        "Queues": ["orders"],
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": ["stomp://broker:61613"]}},
    },
}


def load(document: dict[str, Any]) -> Any:
    return load_esm_json(json.dumps({**READ_ONLY, **document}), handler="handlers:handle")


@pytest.mark.parametrize("kind", sorted(DOCUMENTS))
def test_every_field_of_a_real_mapping_is_honoured(kind: str) -> None:
    document = DOCUMENTS[kind]
    resolved = load(document).mappings[0].resolved()
    assert resolved.source_kind == kind
    assert resolved.batch_size == 10
    assert resolved.filter_patterns == (document["FilterCriteria"]["Filters"][0]["Pattern"],)
    assert resolved.metric_groups == frozenset(document["MetricsConfig"]["Metrics"])
    assert resolved.tags == (("team", "orders"),)
    pollers = document.get("ProvisionedPollerConfig")
    if pollers is not None:
        assert resolved.minimum_pollers == pollers["MinimumPollers"]
        assert resolved.maximum_pollers == pollers["MaximumPollers"]
    if kind in ("kinesis", "dynamodb"):
        assert resolved.parallelization_factor == 2
        assert resolved.maximum_retry_attempts == 3
        assert resolved.on_failure_destination is not None
    # Only true read-only fields are dropped on the way in.
    assert set(READ_ONLY) <= ESM_READ_ONLY_FIELDS
    assert not {"KMSKeyArn", "MetricsConfig", "ProvisionedPollerConfig"} & ESM_READ_ONLY_FIELDS


REFUSED = [
    (
        "kinesis",
        {"ProvisionedPollerConfig": {"MaximumPollers": 5}},
        "ProvisionedPollerConfig: applies to SQS and Kafka mappings only",
    ),
    (
        "sqs",
        {"ProvisionedPollerConfig": {"MinimumPollers": 1}},
        "ProvisionedPollerConfig.MinimumPollers: 1 (SQS: 2..200)",
    ),
    (
        "sqs",
        {"ProvisionedPollerConfig": {"MinimumPollers": 30, "MaximumPollers": 20}},
        "ProvisionedPollerConfig.MinimumPollers: 30 is above MaximumPollers (20)",
    ),
    (
        "kafka",
        {"ProvisionedPollerConfig": {"MinimumPollers": 3}},
        "ProvisionedPollerConfig.MinimumPollers: 3; a worker runs one consumer",
    ),
    (
        "sqs",
        {"MetricsConfig": {"Metrics": ["ErrorCount"]}},
        "MetricsConfig.Metrics: ['ErrorCount'] apply to Kafka mappings only",
    ),
    ("sqs", {"KMSKeyArn": "not-a-key"}, "KMSKeyArn: 'not-a-key' is not a KMS key ARN"),
    ("sqs", {"Tags": {"": "x"}}, "Tags: key '' has 0 characters (allowed 1..128)"),
    (
        "kinesis",
        {"DocumentDBEventSourceConfig": {"DatabaseName": "orders", "FullDocument": "Default"}},
        "DocumentDBEventSourceConfig: DocumentDB change streams are not a source poller reads",
    ),
    ("sqs", {"TumblingWindowInSeconds": 60}, "TumblingWindowInSeconds"),
]


@pytest.mark.parametrize(("kind", "change", "message"), REFUSED)
def test_what_cannot_be_honoured_is_refused_by_name(
    kind: str, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load({**DOCUMENTS[kind], **change})
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


def test_a_documentdb_mapping_is_refused_naming_its_source() -> None:
    document = {
        "EventSourceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:orders",
        "StartingPosition": "LATEST",
        "DocumentDBEventSourceConfig": {"DatabaseName": "orders"},
    }
    with pytest.raises(ConfigError) as refused:
        load(document)
    text = "\n".join(refused.value.problems)
    assert "EventSourceArn" in text, text
