"""Kafka (Amazon MSK or self-managed) as the registry knows it: recognition, rules, opening."""

from __future__ import annotations

from poller.config.fields import StartingPosition
from poller.config.resolved import ResolvedMapping
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
    OpenedSource,
    SourceDefaults,
    SourceEnvironment,
    SourceSpec,
)

__all__ = ["SPEC"]


async def _open(mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
    from poller.sources.kafka.connection import kafka_connection
    from poller.sources.kafka.source import KafkaOptions, open_kafka

    worker = environment.worker
    session_ms = int(worker.kafka_session_timeout_seconds * 1000)
    options = KafkaOptions(
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(100, session_ms // 3),
        rebalance_timeout_ms=session_ms,
        revoke_grace_seconds=worker.kafka_revoke_grace_seconds,
    )
    return open_kafka(mapping, await kafka_connection(mapping, environment.clients), options)


SPEC = SourceSpec(
    kind="kafka",
    title="Kafka",
    family="stream",
    options=KafkaMappingOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.5, window_from_first_record=True),
    record_type=KafkaRecord,
    open=_open,
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
