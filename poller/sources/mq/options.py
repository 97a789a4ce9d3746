"""An MQ mapping's own fields: ``Queues``, ``MaximumRedeliveries``, ``ScalingConfig``, and MQ's rules.

RabbitMQ and ActiveMQ mappings share these (Amazon MQ runs either; an ARN does not say which).
MQ has no partial batch responses and no retry count of its own: ``MaximumRedeliveries`` (Amazon
MQ's setting, default 6) says how often a failing message is handed over again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from poller.config.fields import ScalingConfig, SourceOptions, exactly_one, in_range
from poller.config.resolved import ResolvedMapping, SourceSettings

if TYPE_CHECKING:
    from poller.config.mapping import MappingConfig

__all__ = ["AMQP_SCHEMES", "STOMP_SCHEMES", "MqMappingOptions", "MqSettings", "check_broker_urls"]

AMQP_SCHEMES = ("amqp", "amqps")
STOMP_SCHEMES = ("stomp", "stomp+ssl")
#: Access types that configure TLS (poller's own for MQ): only TLS URLs can use them.
_TLS_ACCESS_TYPES = ("SERVER_ROOT_CA_CERTIFICATE", "CLIENT_CERTIFICATE_TLS_AUTH")
#: Amazon MQ's default ``maximumRedeliveries``.
_DEFAULT_REDELIVERIES = 6


@dataclass(frozen=True, slots=True)
class MqSettings(SourceSettings):
    """What an MQ mapping resolves for its source."""

    #: The queue read.
    queue: str


class MqMappingOptions(SourceOptions):
    """The fields only MQ mappings take."""

    #: The one queue to read.
    queues: tuple[str, ...] | None = None
    #: How many times a message is handed over again after failing before it is dead-lettered
    #: (or sent to the on-failure destination); 6 as Amazon MQ's default maximumRedeliveries.
    maximum_redeliveries: Annotated[int | None, in_range(0, 1000)] = None
    scaling_config: ScalingConfig | None = None

    def rules(self, mapping: MappingConfig) -> list[str]:
        problems = exactly_one("Queues", self.queues, "mq")
        if not problems and self.queues and not 1 <= len(self.queues[0]) <= 1000:
            problems.append(f"Queues[0]: {self.queues[0]!r} (allowed 1..1000 characters)")
        if mapping.maximum_retry_attempts != -1:
            problems.append(
                "MaximumRetryAttempts: not supported for MQ mappings; MaximumRedeliveries "
                "(0..1000, default 6) says how often a failed message is handed over again"
            )
        if mapping.function_response_types:
            problems.append(
                "FunctionResponseTypes: not supported for MQ mappings (a failed batch goes back "
                "whole, as AWS)"
            )
        urls = mapping.self_managed_event_source.urls if mapping.self_managed_event_source else ()
        vhost = any(a.type == "VIRTUAL_HOST" for a in mapping.source_access_configurations)
        if vhost and any(url.startswith(STOMP_SCHEMES) for url in urls):
            problems.append("SourceAccessConfigurations: VIRTUAL_HOST applies to RabbitMQ only")
        plaintext = [url for url in urls if not url.startswith(("amqps://", "stomp+ssl://"))]
        for entry in mapping.source_access_configurations:
            if entry.type in _TLS_ACCESS_TYPES and plaintext:
                problems.append(
                    f"SourceAccessConfigurations: {entry.type} needs amqps:// or stomp+ssl:// "
                    f"broker URLs, not {plaintext[0].partition('://')[0]}://"
                )
        return problems

    def label(self, endpoints: tuple[str, ...]) -> str:
        """The first broker URL without its login, and the queue."""
        # A broker URL may carry a login: the label goes into logs and events, it must not.
        scheme, _, rest = endpoints[0].partition("://")
        host, _, path = rest.partition("/")
        endpoint = f"{scheme}://{host.rpartition('@')[2]}" + (f"/{path}" if path else "")
        return f"{endpoint.rstrip('/')}/{(self.queues or ('',))[0]}"

    def resolve(self, mapping: MappingConfig, resolved: ResolvedMapping) -> ResolvedMapping:
        redeliveries = self.maximum_redeliveries
        return dataclasses.replace(
            resolved,
            maximum_concurrency=self.scaling_config.maximum_concurrency
            if self.scaling_config
            else None,
            maximum_redeliveries=_DEFAULT_REDELIVERIES if redeliveries is None else redeliveries,
            settings=MqSettings(queue=(self.queues or ("",))[0]),
        )


def check_broker_urls(urls: tuple[str, ...]) -> None:
    """Each URL has a broker scheme, and all name one kind of broker; ValueError otherwise."""
    schemes = (*AMQP_SCHEMES, *STOMP_SCHEMES)
    for url in urls:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in schemes or not rest:
            raise ValueError(
                f"MQ_BROKER_URLS: {url!r} is not a broker URL (allowed schemes: "
                f"{', '.join(schemes)})"
            )
    if len({url.startswith(AMQP_SCHEMES) for url in urls}) > 1:
        raise ValueError("MQ_BROKER_URLS: mixes AMQP and STOMP URLs; name one broker")
