"""Kafka (Amazon MSK or self-managed) as the registry knows it: recognition, rules, opening."""

from __future__ import annotations

from poller.config.fields import StartingPosition
from poller.sources.kafka.options import (
    KafkaMappingOptions,
    check_bootstrap_servers,
    check_topic_destination,
)
from poller.sources.kafka.records import KafkaRecord
from poller.sources.spec import (
    ArnPattern,
    DestinationScheme,
    EndpointsKey,
    Extra,
    SourceDefaults,
    SourceSpec,
)

__all__ = ["SPEC"]


SPEC = SourceSpec(
    kind="kafka",
    title="Kafka",
    family="stream",
    options=KafkaMappingOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.5, window_from_first_record=True),
    record_type=KafkaRecord,
    opener="poller.sources.kafka.source:open_kafka",
    arn=ArnPattern("kafka", "MSK cluster"),
    endpoints=EndpointsKey("KAFKA_BOOTSTRAP_SERVERS", check_bootstrap_servers),
    starting_positions=(
        StartingPosition.TRIM_HORIZON,
        StartingPosition.LATEST,
        StartingPosition.AT_TIMESTAMP,
    ),
    unsupported=("ParallelizationFactor",),
    access_types=(
        "BASIC_AUTH",
        "SASL_SCRAM_256_AUTH",
        "SASL_SCRAM_512_AUTH",
        "CLIENT_CERTIFICATE_TLS_AUTH",
        "SERVER_ROOT_CA_CERTIFICATE",
    ),
    destinations=(
        DestinationScheme("kafka://", "a Kafka topic", "kafka://TOPIC", check_topic_destination),
    ),
    extra=Extra("kafka", ("aiokafka",)),
)
