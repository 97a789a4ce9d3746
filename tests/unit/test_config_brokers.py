"""Config of broker sources (Kafka, MQ): naming the broker, topics/queues, groups, access rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.config import ConfigError, StartingPosition, load_esm_json, parse_config

MSK = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/abcd-1234"
AMAZON_MQ = "arn:aws:mq:us-east-1:123456789012:broker:demo:b-1234"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-user-AbCdEf"


def kafka(**fields: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}},
        "Topics": ["orders"],
        "StartingPosition": "TRIM_HORIZON",
        "Handler": "app:handle",
    }
    mapping.update(fields)
    return {"mappings": [mapping]}


def mq(**fields: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": ["amqp://127.0.0.1:5672"]}},
        "Queues": ["orders"],
        "Handler": "app:handle",
    }
    mapping.update(fields)
    return {"mappings": [mapping]}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    # Every line starts with the mapping's place in the file; the tests read what follows.
    return [
        p.removeprefix("mappings[0]: ").removeprefix("mappings[0].") for p in caught.value.problems
    ]


def test_self_managed_kafka_takes_aws_defaults_and_the_mapping_as_group() -> None:
    mapping = parse_config(kafka()).mappings[0]
    resolved = mapping.resolved()
    assert resolved.source_kind == "kafka"
    assert (resolved.batch_size, resolved.batching_window) == (100, 0.5)
    assert resolved.endpoints == ("127.0.0.1:9092",)
    assert resolved.settings.topic == "orders"
    assert resolved.event_source_arn == ""
    assert resolved.source_label == "kafka://127.0.0.1:9092/orders"
    # AWS names the consumer group after the mapping when the config gives none.
    assert resolved.settings.consumer_group_id == resolved.mapping_id


def test_kafka_consumer_group_and_sasl_secret_are_resolved() -> None:
    data = kafka(
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "billing"},
        SourceAccessConfigurations=[
            {"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET},
            {"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"},
        ],
    )
    resolved = parse_config(data).mappings[0].resolved()
    assert resolved.settings.consumer_group_id == "billing"
    # VPC entries place a mapping in a VPC on AWS; they mean nothing here and are dropped.
    assert [(a.type, a.uri) for a in resolved.source_access] == [("SASL_SCRAM_512_AUTH", SECRET)]


def test_inline_secret_is_kept_out_of_repr() -> None:
    data = kafka(
        SourceAccessConfigurations=[
            {"Type": "BASIC_AUTH", "Secret": {"username": "u", "password": "hunter2"}}
        ]
    )
    resolved = parse_config(data).mappings[0].resolved()
    assert resolved.source_access[0].secret == {"username": "u", "password": "hunter2"}
    assert "hunter2" not in repr(resolved)


def test_msk_arn_with_its_own_group_config() -> None:
    data = kafka(AmazonManagedKafkaEventSourceConfig={"ConsumerGroupId": "g1"})
    del data["mappings"][0]["SelfManagedEventSource"]
    data["mappings"][0]["EventSourceArn"] = MSK
    resolved = parse_config(data).mappings[0].resolved()
    assert resolved.event_source_arn == MSK
    assert resolved.endpoints == ()
    assert resolved.settings.consumer_group_id == "g1"


def test_kafka_rules_name_the_field_and_the_allowed_values() -> None:
    found = problems(
        kafka(
            Topics=["a", "b"],
            StartingPosition=None,
            ParallelizationFactor=2,
            AmazonManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"},
            Queues=["q"],
        )
    )
    assert "Topics: 2 given (allowed exactly 1)" in found
    assert any(p.startswith("StartingPosition:") for p in found)
    assert any(p.startswith("ParallelizationFactor:") for p in found)
    assert any(p.startswith("AmazonManagedKafkaEventSourceConfig:") for p in found)
    assert "Queues: only allowed on MQ mappings" in found


def test_kafka_topic_names_and_group_ids_are_checked() -> None:
    found = problems(kafka(Topics=["bad topic"]))
    assert any(p.startswith("Topics[0]:") and "'bad topic'" in p for p in found)
    found = problems(kafka(SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "a b"}))
    assert any("ConsumerGroupId" in p and "'a b'" in p for p in found)


def test_endpoints_are_checked_per_kind() -> None:
    bad = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["localhost"]}}
    assert any("expected host:port" in p for p in problems(kafka(SelfManagedEventSource=bad)))
    bad = {"Endpoints": {"MQ_BROKER_URLS": ["http://127.0.0.1"]}}
    assert any("allowed schemes" in p for p in problems(mq(SelfManagedEventSource=bad)))
    bad = {"Endpoints": {"MQ_BROKER_URLS": ["amqp://a:5672", "stomp://b:61613"]}}
    assert any("mixes AMQP and STOMP" in p for p in problems(mq(SelfManagedEventSource=bad)))
    bad = {"Endpoints": {"SOMETHING": ["x"]}}
    assert any("KAFKA_BOOTSTRAP_SERVERS" in p for p in problems(mq(SelfManagedEventSource=bad)))


def test_sasl_mechanisms_are_exclusive_and_typed() -> None:
    found = problems(
        kafka(
            SourceAccessConfigurations=[
                {"Type": "BASIC_AUTH", "URI": SECRET},
                {"Type": "SASL_SCRAM_256_AUTH", "URI": SECRET},
                {"Type": "VIRTUAL_HOST", "URI": "/"},
            ]
        )
    )
    assert any("choose one SASL mechanism" in p for p in found)
    assert any("'VIRTUAL_HOST' is not allowed on kafka" in p for p in found)
    found = problems(kafka(SourceAccessConfigurations=[{"Type": "NOPE", "URI": SECRET}]))
    assert any("'NOPE' is not a known type" in p for p in found)


def test_secret_uri_must_be_a_secret() -> None:
    found = problems(
        kafka(SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": "arn:aws:s3:::bucket"}])
    )
    assert any("not a Secrets Manager secret ARN" in p for p in found)
    found = problems(kafka(SourceAccessConfigurations=[{"Type": "BASIC_AUTH"}]))
    assert any("exactly one of URI and Secret" in p for p in found)


def test_kafka_destination_only_for_kafka_sources() -> None:
    destination = {"OnFailure": {"Destination": "kafka://orders-dlq"}}
    parse_config(kafka(DestinationConfig=destination))
    found = problems(mq(DestinationConfig=destination))
    assert any("allowed only for Kafka sources" in p for p in found)
    bad = {"OnFailure": {"Destination": "kafka://no spaces"}}
    assert any("does not name a Kafka topic" in p for p in problems(kafka(DestinationConfig=bad)))


def test_mq_defaults_and_redelivery_limit() -> None:
    resolved = parse_config(mq()).mappings[0].resolved()
    assert resolved.source_kind == "mq"
    assert (resolved.batch_size, resolved.batching_window) == (100, 0.5)
    assert resolved.settings.queue == "orders"
    assert resolved.maximum_redeliveries == 6
    assert resolved.source_label == "amqp://127.0.0.1:5672/orders"
    assert resolved.maximum_concurrency is None
    resolved = (
        parse_config(mq(MaximumRedeliveries=2, ScalingConfig={"MaximumConcurrency": 4}))
        .mappings[0]
        .resolved()
    )
    assert (resolved.maximum_redeliveries, resolved.maximum_concurrency) == (2, 4)


def test_mq_rules() -> None:
    found = problems(
        mq(
            StartingPosition="LATEST",
            MaximumRetryAttempts=3,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            Queues=[],
        )
    )
    assert "StartingPosition: not supported for MQ mappings (leave it unset)" in found
    assert any(p.startswith("MaximumRetryAttempts:") and "MaximumRedeliveries" in p for p in found)
    assert any(p.startswith("FunctionResponseTypes:") for p in found)
    assert "Queues: 0 given (allowed exactly 1)" in found
    found = problems(mq(MaximumRedeliveries=5000))
    assert found == ["MaximumRedeliveries: 5000 is out of range (allowed 0..1000)"]


def test_virtual_host_is_for_rabbitmq_only() -> None:
    stomp = {"Endpoints": {"MQ_BROKER_URLS": ["stomp://127.0.0.1:61613"]}}
    found = problems(
        mq(
            SelfManagedEventSource=stomp,
            SourceAccessConfigurations=[{"Type": "VIRTUAL_HOST", "URI": "/"}],
        )
    )
    assert any("VIRTUAL_HOST applies to RabbitMQ only" in p for p in found)


def test_amazon_mq_arn_names_the_broker() -> None:
    data = mq(EventSourceArn=AMAZON_MQ)
    del data["mappings"][0]["SelfManagedEventSource"]
    resolved = parse_config(data).mappings[0].resolved()
    assert (resolved.source_kind, resolved.source_label) == ("mq", AMAZON_MQ)


def test_broker_fields_refused_on_other_sources_and_a_source_is_required() -> None:
    stream = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    found = problems(
        {
            "mappings": [
                {
                    "EventSourceArn": stream,
                    "StartingPosition": "LATEST",
                    "Topics": ["t"],
                    "MaximumRedeliveries": 3,
                    "SelfManagedEventSource": {
                        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}
                    },
                }
            ]
        }
    )
    assert "Topics: only allowed on Kafka mappings" in found
    assert "MaximumRedeliveries: only allowed on MQ mappings" in found
    assert any(p.startswith("SelfManagedEventSource:") for p in found)
    found = problems({"mappings": [{"Handler": "a:b"}]})
    assert any(p.startswith("EventSourceArn: missing") for p in found)


def test_two_mappings_on_one_topic_and_handler_conflict() -> None:
    data = kafka()
    data["mappings"].append(dict(data["mappings"][0], UUID="other"))
    assert any("already mapped" in p for p in problems(data))


def test_esm_json_of_a_self_managed_kafka_mapping_loads() -> None:
    text = json.dumps(
        {
            "UUID": "2c2c3c5e-0000-4000-8000-000000000001",
            "StartingPosition": "LATEST",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 0.5,
            "SelfManagedEventSource": {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.example:9092", "b-2.example:9092"]}
            },
            "Topics": ["orders"],
            "SourceAccessConfigurations": [{"Type": "SASL_SCRAM_256_AUTH", "URI": SECRET}],
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "orders-group"},
            "State": "Enabled",
            "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
        }
    )
    resolved = load_esm_json(text, handler="app:handle").mappings[0].resolved()
    assert resolved.starting_position is StartingPosition.LATEST
    assert resolved.endpoints == ("b-1.example:9092", "b-2.example:9092")
    assert resolved.settings.consumer_group_id == "orders-group"


def test_a_login_in_a_broker_url_never_reaches_the_source_label() -> None:
    urls = {"Endpoints": {"MQ_BROKER_URLS": ["amqp://user:hunter2@127.0.0.1:5672/"]}}
    resolved = parse_config(mq(SelfManagedEventSource=urls)).mappings[0].resolved()
    assert resolved.source_label == "amqp://127.0.0.1:5672/orders"
    assert "hunter2" not in resolved.source_label
    # The endpoints themselves keep the login: the source logs in with it.
    assert resolved.endpoints == ("amqp://user:hunter2@127.0.0.1:5672/",)
    assert "hunter2" not in repr(resolved)
