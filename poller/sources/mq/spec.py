"""Message brokers (Amazon MQ or self-managed) as the registry knows them: one spec, two engines.

An MQ mapping names a RabbitMQ or an ActiveMQ broker: by its URLs' scheme (``amqp``/``amqps``,
``stomp``/``stomp+ssl``) or, for an Amazon MQ ARN, by DescribeBroker's ``EngineType`` when it
opens. The config (``Queues``, ``MaximumRedeliveries``...) and the rules are the same for both;
reading and settling are each engine's own package (:mod:`poller.sources.rabbitmq`,
:mod:`poller.sources.activemq`), and so is the optional dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from poller.config.resolved import ResolvedMapping
from poller.errors import ConfigError
from poller.sources.mq.options import AMQP_SCHEMES, MqMappingOptions, check_broker_urls
from poller.sources.mq.records import BrokerRecord
from poller.sources.spec import (
    STREAM_ONLY_FIELDS,
    ArnPattern,
    EndpointsKey,
    Extra,
    OpenedSource,
    OpenSource,
    SourceDefaults,
    SourceEnvironment,
    SourceSpec,
    load_reference,
)

__all__ = ["ENGINES", "SPEC", "open_broker"]

#: The broker engines, by Amazon MQ's ``EngineType``: the extra each needs and its opener.
ENGINES: Mapping[str, tuple[Extra, str]] = {
    "RABBITMQ": (
        Extra("rabbitmq", ("aio_pika", "aiormq")),
        "poller.sources.rabbitmq.source:RabbitMqSource.opened",
    ),
    "ACTIVEMQ": (
        Extra("activemq", ("stompman",)),
        "poller.sources.activemq.source:ActiveMqSource.opened",
    ),
}


def _engine_of_urls(mapping: ResolvedMapping) -> str | None:
    if not mapping.endpoints:
        return None  # an Amazon MQ ARN: DescribeBroker tells when the mapping opens
    return "RABBITMQ" if mapping.endpoints[0].startswith(AMQP_SCHEMES) else "ACTIVEMQ"


def _extra(mapping: ResolvedMapping) -> Extra | None:
    engine = _engine_of_urls(mapping)
    return ENGINES[engine][0] if engine else None


async def open_broker(mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
    """Open an MQ mapping's source with its broker's engine (the spec's opener)."""
    from poller.sources.mq.endpoints import broker_engine

    engine = _engine_of_urls(mapping) or await broker_engine(mapping, environment.clients)
    extra, opener = ENGINES[engine]
    if extra.missing():
        raise ConfigError(
            f"{mapping.source_label}: the broker runs {engine}, which needs the "
            f"{extra.name} extra: {extra.install}"
        )
    open_engine = cast(OpenSource, load_reference(opener))
    return await open_engine(mapping, environment)


SPEC = SourceSpec(
    kind="mq",
    title="MQ",
    family="queue",
    options=MqMappingOptions,
    defaults=SourceDefaults(batch_size=100, batching_window=0.5, window_from_first_record=True),
    record_type=BrokerRecord,
    opener="poller.sources.mq.spec:open_broker",
    arn=ArnPattern("mq", "Amazon MQ broker"),
    endpoints=EndpointsKey("MQ_BROKER_URLS", check_broker_urls),
    unsupported=STREAM_ONLY_FIELDS,
    # AWS's two, and poller's own TLS pair for brokers with a private CA or client certificates.
    access_types=(
        "BASIC_AUTH",
        "VIRTUAL_HOST",
        "SERVER_ROOT_CA_CERTIFICATE",
        "CLIENT_CERTIFICATE_TLS_AUTH",
    ),
    extra=_extra,
)
