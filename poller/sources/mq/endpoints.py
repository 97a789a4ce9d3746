"""Where a broker is and how to log in: URLs (configured, or Amazon MQ's), credentials, vhost.

Broker endpoints come from ``SelfManagedEventSource`` URLs or, for an Amazon MQ broker ARN, from
DescribeBroker; credentials from the BASIC_AUTH entry of ``SourceAccessConfigurations``. A URL is
logged only without its user information.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from poller.aws import AwsClients
from poller.config.fields import ARN, SourceAccess
from poller.config.resolved import ResolvedMapping
from poller.errors import SourceError, SourceNotFoundError
from poller.sources.credentials import BasicAuth, read_basic_auth

__all__ = [
    "BrokerEndpoint",
    "broker_endpoints",
    "broker_engine",
    "broker_login",
    "redact_url",
    "virtual_host",
]

_DEFAULT_PORTS: Final = {"amqp": 5672, "amqps": 5671, "stomp": 61613, "stomp+ssl": 61614}


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """One broker URL, split: what a client library needs to connect."""

    scheme: str
    host: str
    port: int
    #: The URL's path without the leading "/" (RabbitMQ: the virtual host), "" when none.
    path: str = ""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        """The scheme asks for TLS (amqps, stomp+ssl)."""
        return self.scheme in ("amqps", "stomp+ssl")

    @classmethod
    def parse(cls, url: str) -> BrokerEndpoint:
        """Split ``scheme://[user:password@]host[:port][/path]``; ValueError names the problem."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(
                f"{redact_url(url)!r} has an unsupported scheme "
                f"(allowed: {', '.join(_DEFAULT_PORTS)})"
            )
        if not parts.hostname:
            raise ValueError(f"{redact_url(url)!r} names no host")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as error:
            raise ValueError(f"{redact_url(url)!r} has an invalid port") from error
        return cls(
            scheme,
            parts.hostname,
            port,
            unquote(parts.path[1:]) if parts.path.startswith("/") else "",
            unquote(parts.username) if parts.username is not None else None,
            unquote(parts.password) if parts.password is not None else None,
        )

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def redact_url(url: str) -> str:
    """``url`` without user name and password, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _broker_id(arn_text: str) -> str:
    """The broker id of ``arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID``."""
    resource = ARN.parse(arn_text).resource
    parts = resource.split(":")
    if len(parts) < 2 or parts[0] != "broker" or not parts[-1]:
        raise SourceError(
            f"EventSourceArn: {arn_text!r} is not an Amazon MQ broker ARN "
            "(arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID)"
        )
    return parts[-1]


async def broker_endpoints(
    mapping: ResolvedMapping,
    clients: AwsClients | None,
    *,
    engine: str,
    schemes: Sequence[str],
) -> list[BrokerEndpoint]:
    """The endpoints to try, in order: the configured URLs, else DescribeBroker's.

    ``engine`` is the EngineType the source reads (``RABBITMQ``/``ACTIVEMQ``); a broker of the
    other kind is refused with a message naming both. Only URLs with one of ``schemes`` are used.
    """
    urls: list[str]
    if mapping.endpoints:
        urls = list(mapping.endpoints)
    else:
        if clients is None:
            raise SourceError(f"{mapping.source_label}: no endpoints and no AWS clients")
        broker_id = _broker_id(mapping.event_source_arn)
        client = await clients.client("mq")
        try:
            response: dict[str, Any] = await client.describe_broker(BrokerId=broker_id)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code == "NotFoundException":
                raise SourceNotFoundError(
                    f"Broker not found: {mapping.event_source_arn}"
                ) from error
            raise SourceError(
                f"Cannot describe broker {mapping.event_source_arn}: {error}"
            ) from error
        found = str(response.get("EngineType") or "").upper()
        if found and found != engine:
            raise SourceError(f"Broker {mapping.event_source_arn} runs {found}, not {engine}")
        urls = [
            url
            for instance in response.get("BrokerInstances") or ()
            for url in instance.get("Endpoints") or ()
        ]
    endpoints = [
        BrokerEndpoint.parse(url) for url in urls if urlsplit(url).scheme.lower() in schemes
    ]
    if not endpoints:
        shown = ", ".join(redact_url(u) for u in urls) or "none"
        raise SourceError(
            f"{mapping.source_label}: no {' or '.join(schemes)} endpoint among {shown}"
        )
    return endpoints


def _access(mapping: ResolvedMapping, kind: str) -> SourceAccess | None:
    return next((a for a in mapping.source_access if a.type == kind), None)


async def broker_login(
    mapping: ResolvedMapping, clients: AwsClients | None, endpoint: BrokerEndpoint
) -> BasicAuth | None:
    """The BASIC_AUTH secret's login, else the URL's user information, else None."""
    access = _access(mapping, "BASIC_AUTH")
    if access is not None:
        return await read_basic_auth(access, clients)
    if endpoint.username is not None:
        return BasicAuth(endpoint.username, endpoint.password or "")
    return None


def virtual_host(mapping: ResolvedMapping, endpoint: BrokerEndpoint) -> str:
    """RabbitMQ's virtual host: the VIRTUAL_HOST entry, else the URL's path, else "/"."""
    access = _access(mapping, "VIRTUAL_HOST")
    if access is not None and access.uri:
        return access.uri
    return endpoint.path or "/"


async def broker_engine(mapping: ResolvedMapping, clients: AwsClients | None) -> str:
    """``RABBITMQ`` or ``ACTIVEMQ``: from the endpoints' scheme, else DescribeBroker's EngineType."""
    if mapping.endpoints:
        scheme = urlsplit(mapping.endpoints[0]).scheme.lower()
        return "RABBITMQ" if scheme.startswith("amqp") else "ACTIVEMQ"
    if clients is None:
        raise SourceError(f"{mapping.source_label}: no endpoints and no AWS clients")
    client = await clients.client("mq")
    broker_id = _broker_id(mapping.event_source_arn)
    try:
        response: dict[str, Any] = await client.describe_broker(BrokerId=broker_id)
    except Exception as error:
        raise SourceError(f"Cannot describe broker {mapping.event_source_arn}: {error}") from error
    engine = str(response.get("EngineType") or "").upper()
    if engine not in ("RABBITMQ", "ACTIVEMQ"):
        raise SourceError(f"Broker {mapping.event_source_arn} has unknown EngineType {engine!r}")
    return engine
