"""A Kafka mapping's own fields: ``Topics``, the consumer group configs, and Kafka's rules.

What only Kafka mappings take is declared and checked here, not in the shared mapping config:
the one topic, ``SelfManagedKafkaEventSourceConfig`` / ``AmazonManagedKafkaEventSourceConfig``
(the consumer group; AWS's default is the mapping's UUID), which SASL and TLS access types go
together, bootstrap servers, ``kafka://TOPIC`` destinations, and AWS's cap of 10 retries when
retries are infinite and a destination is set.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from poller.config.fields import ConfigModel, SourceOptions, exactly_one
from poller.config.resolved import ResolvedMapping, SourceSettings

if TYPE_CHECKING:
    from poller.config.mapping import MappingConfig

__all__ = [
    "KafkaEventSourceConfig",
    "KafkaMappingOptions",
    "KafkaSettings",
    "check_bootstrap_servers",
    "check_topic_destination",
]

#: Kafka's rules for topic names and consumer group ids.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_GROUP = re.compile(r"[A-Za-z0-9\-/*:_+=.@]+")
_TOPIC_RULE = "1..249 letters, digits, '.', '_' and '-'"
#: SASL mechanisms; AWS offers each only over TLS.
SASL_TYPES = ("BASIC_AUTH", "SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH")
#: AWS caps retries at this when they are infinite and the mapping has a destination.
_RETRY_CAP_WITH_DESTINATION = 10


class KafkaEventSourceConfig(ConfigModel):
    """``SelfManagedKafkaEventSourceConfig`` / ``AmazonManagedKafkaEventSourceConfig``."""

    #: The consumer group; AWS's default is the mapping's UUID.
    consumer_group_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None

    @field_validator("consumer_group_id")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a consumer group id (allowed: letters, digits and "
                "- / * : _ + = . @)"
            )
        return value


@dataclass(frozen=True, slots=True)
class KafkaSettings(SourceSettings):
    """What a Kafka mapping resolves for its source."""

    #: The topic read.
    topic: str
    #: The consumer group (the mapping id when the config gives none, as AWS).
    consumer_group_id: str


class KafkaMappingOptions(SourceOptions):
    """The fields only Kafka mappings take."""

    #: The one topic to read.
    topics: tuple[str, ...] | None = None
    self_managed_kafka_event_source_config: KafkaEventSourceConfig | None = None
    amazon_managed_kafka_event_source_config: KafkaEventSourceConfig | None = None

    def rules(self, mapping: MappingConfig) -> list[str]:
        problems = exactly_one("Topics", self.topics, "kafka")
        if not problems and self.topics and not _TOPIC.fullmatch(self.topics[0]):
            problems.append(f"Topics[0]: {self.topics[0]!r} is not a topic name ({_TOPIC_RULE})")
        msk = mapping.event_source_arn is not None
        if not msk and self.amazon_managed_kafka_event_source_config is not None:
            problems.append(
                "AmazonManagedKafkaEventSourceConfig: only for an MSK cluster ARN; a self-managed "
                "cluster takes SelfManagedKafkaEventSourceConfig"
            )
        elif msk and self.self_managed_kafka_event_source_config is not None:
            problems.append(
                "SelfManagedKafkaEventSourceConfig: only for a self-managed cluster; an MSK "
                "cluster ARN takes AmazonManagedKafkaEventSourceConfig"
            )
        given = {access.type for access in mapping.source_access_configurations}
        sasl = given.intersection(SASL_TYPES)
        if len(sasl) > 1:
            problems.append(
                f"SourceAccessConfigurations: {', '.join(sorted(sasl))} together; choose one "
                "SASL mechanism"
            )
        if sasl and "CLIENT_CERTIFICATE_TLS_AUTH" in given:
            problems.append(
                "SourceAccessConfigurations: CLIENT_CERTIFICATE_TLS_AUTH with a SASL mechanism; "
                "choose one way to authenticate"
            )
        return problems

    def label(self, endpoints: tuple[str, ...]) -> str:
        """``kafka://host:port/topic``."""
        return f"kafka://{endpoints[0]}/{(self.topics or ('',))[0]}"

    def resolve(self, mapping: MappingConfig, resolved: ResolvedMapping) -> ResolvedMapping:
        group = (
            self.self_managed_kafka_event_source_config
            or self.amazon_managed_kafka_event_source_config
        )
        retries = resolved.maximum_retry_attempts
        if retries == -1 and resolved.on_failure_destination:
            retries = _RETRY_CAP_WITH_DESTINATION
        return dataclasses.replace(
            resolved,
            maximum_retry_attempts=retries,
            settings=KafkaSettings(
                topic=(self.topics or ("",))[0],
                # AWS names the group after the mapping when none is given.
                consumer_group_id=(group.consumer_group_id if group else None)
                or resolved.mapping_id,
            ),
        )


def check_bootstrap_servers(endpoints: tuple[str, ...]) -> None:
    """Each endpoint is ``host:port``; ValueError names the first that is not."""
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"KAFKA_BOOTSTRAP_SERVERS: {endpoint!r} is not a bootstrap server "
                "(expected host:port)"
            )


def check_topic_destination(uri: str) -> None:
    """``kafka://TOPIC`` names a topic; ValueError says what a topic name is."""
    if not _TOPIC.fullmatch(uri.removeprefix("kafka://")):
        raise ValueError(
            f"{uri!r} does not name a Kafka topic (expected kafka://TOPIC, the topic "
            "1..249 characters of letters, digits, '.', '_' and '-')"
        )
