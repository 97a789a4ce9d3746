"""The registry: every kind of source poller reads, one line each.

Config recognition, validation, wiring and the embedded endpoint ask the registry, never a source
module by name. A new source is a package under ``poller/sources/`` exposing a
:class:`~poller.sources.spec.SourceSpec`, and one line in :data:`SPECS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import AliasChoices

from poller.config.fields import ARN, SourceOptions
from poller.sources.dynamodb_streams.spec import SPEC as DYNAMODB_STREAMS
from poller.sources.kafka.spec import SPEC as KAFKA
from poller.sources.kinesis.spec import SPEC as KINESIS
from poller.sources.mq.spec import SPEC as MQ
from poller.sources.spec import DestinationScheme, SourceSpec
from poller.sources.sqs.spec import SPEC as SQS

__all__ = [
    "SPECS",
    "access_types",
    "destination_scheme",
    "endpoint_keys",
    "option_keys",
    "self_managed_titles",
    "spec_for_arn",
    "spec_for_endpoints",
    "spec_for_kind",
]

#: Every kind of source, in the order messages list them.
SPECS: tuple[SourceSpec, ...] = (KINESIS, DYNAMODB_STREAMS, SQS, KAFKA, MQ)

_BY_KIND: Mapping[str, SourceSpec] = {spec.kind: spec for spec in SPECS}


def spec_for_kind(kind: str) -> SourceSpec:
    """The spec of ``kind``; KeyError for a kind no source has."""
    return _BY_KIND[kind]


def spec_for_arn(arn: ARN) -> SourceSpec | None:
    """The source that reads what ``arn`` names, or None."""
    return next((spec for spec in SPECS if spec.arn is not None and spec.arn.matches(arn)), None)


def arn_descriptions() -> str:
    """What ARNs poller reads, for messages: "Kinesis stream, ... or Amazon MQ broker ARN"."""
    names = [spec.arn.description for spec in SPECS if spec.arn is not None]
    return ", ".join(names[:-1]) + f" or {names[-1]} ARN"


def spec_for_endpoints(key: str) -> SourceSpec | None:
    """The source a ``SelfManagedEventSource.Endpoints`` key names, or None."""
    return next(
        (spec for spec in SPECS if spec.endpoints is not None and spec.endpoints.key == key), None
    )


def endpoint_keys() -> list[str]:
    """Every ``Endpoints`` key some source answers to, sorted."""
    return sorted(spec.endpoints.key for spec in SPECS if spec.endpoints is not None)


def self_managed_titles() -> str:
    """The sources ``SelfManagedEventSource`` can name, for messages ("Kafka and MQ")."""
    return " and ".join(spec.title for spec in SPECS if spec.endpoints is not None)


def access_types() -> list[str]:
    """Every ``SourceAccessConfigurations`` type some source takes, in registry order."""
    return list(dict.fromkeys(t for spec in SPECS for t in spec.access_types))


def destination_scheme(uri: str) -> tuple[DestinationScheme, list[SourceSpec]] | None:
    """The source-served destination ``uri`` is (``kafka://``) and the sources serving it."""
    for spec in SPECS:
        for scheme in spec.destinations:
            if uri.startswith(scheme.prefix):
                owners = [s for s in SPECS if scheme.prefix in (d.prefix for d in s.destinations)]
                return scheme, owners
    return None


def destination_shapes() -> list[str]:
    """How messages show the source-served destinations ("kafka://TOPIC for a Kafka source")."""
    return [
        f"{scheme.shape} for a {spec.title} source"
        for spec in SPECS
        for scheme in spec.destinations
    ]


def _keys(options: type[SourceOptions]) -> set[str]:
    keys: set[str] = set()
    for name, info in options.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        if isinstance(info.validation_alias, AliasChoices):
            keys.update(c for c in info.validation_alias.choices if isinstance(c, str))
        elif isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
    return keys


_KEYS_BY_KIND: Mapping[str, set[str]] = {spec.kind: _keys(spec.options) for spec in SPECS}
_OWNERS: Mapping[str, tuple[SourceSpec, ...]] = {
    key: tuple(spec for spec in SPECS if key in _KEYS_BY_KIND[spec.kind])
    for key in set().union(*_KEYS_BY_KIND.values())
}


def option_keys() -> Iterable[str]:
    """Every mapping field (AWS name or snake_case) that belongs to some source's options."""
    return _OWNERS.keys()


def owners_of(key: str) -> tuple[SourceSpec, ...]:
    """The sources whose options take the mapping field ``key``."""
    return _OWNERS.get(key, ())


def aws_name(options: type[SourceOptions], key: str) -> str:
    """The AWS name of an options field given by either spelling (for messages)."""
    for name, info in options.model_fields.items():
        if key == name or key == info.alias:
            return info.alias or name
    return key
