"""How to reach a Kafka cluster: bootstrap servers (configured, or MSK's), TLS and SASL.

``SourceAccessConfigurations`` decide the security: BASIC_AUTH and the SCRAM types are SASL over
TLS (AWS offers SASL only with TLS); CLIENT_CERTIFICATE_TLS_AUTH is mutual TLS;
SERVER_ROOT_CA_CERTIFICATE trusts a private CA. Without any of them the connection is plaintext,
as a local cluster usually is. Nothing here imports the Kafka client.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from poller.config.resolved import ResolvedMapping
from poller.errors import SourceError
from poller.sources.credentials import diagnose_tls, read_basic_auth, tls_context

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["KafkaConnection", "kafka_connection"]

_SASL_MECHANISMS = {
    "BASIC_AUTH": "PLAIN",
    "SASL_SCRAM_256_AUTH": "SCRAM-SHA-256",
    "SASL_SCRAM_512_AUTH": "SCRAM-SHA-512",
}


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """How to reach a cluster: bootstrap servers and the security settings of its clients."""

    bootstrap_servers: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    #: The TLS context holds a client certificate (CLIENT_CERTIFICATE_TLS_AUTH).
    client_certificate: bool = False

    async def unreachable(self, error: Exception) -> str:
        """Why the cluster cannot be reached, in words, for an error message.

        aiokafka says only that it could not bootstrap (the ``ssl`` error goes to its log), so
        for a TLS connection a handshake of our own with the first server tells why. A refused
        SASL login is named with the mechanism and the user (never the password).
        """
        shown = ",".join(self.bootstrap_servers)
        login = f"SASL {self.sasl_mechanism} login of user {self.sasl_username!r}"
        if self.sasl_mechanism is not None and _sasl_refused(error):
            return (
                f"cannot reach Kafka at {shown}: the broker refused the {login} (wrong user "
                "name or password, or a user the broker does not know)"
            )
        cause = str(error) or type(error).__name__
        if self.ssl_context is not None and self.bootstrap_servers:
            host, _, port = self.bootstrap_servers[0].rpartition(":")
            if host and port.isdigit():
                tls = await diagnose_tls(
                    host.strip("[]"),
                    int(port),
                    self.ssl_context,
                    client_certificate=self.client_certificate,
                )
                if tls is not None:
                    cause = tls
                elif self.sasl_mechanism is not None:
                    cause += (
                        f"; the TLS handshake works, so the broker may have refused the {login} "
                        "(a mechanism it does not offer, or wrong credentials)"
                    )
        return f"cannot reach Kafka at {shown}: {cause}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka consumers, producers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        return kwargs


#: aiokafka's errors for a login the broker refused, by name (nothing here imports aiokafka).
_SASL_REFUSALS = frozenset(
    {"SaslAuthenticationFailed", "AuthenticationFailedError", "IllegalSaslStateError"}
)


def _sasl_refused(error: BaseException) -> bool:
    """The client's start failed because the broker refused the SASL login."""
    for found in (error, error.__cause__, error.__context__):
        if found is None:
            continue
        if type(found).__name__ in _SASL_REFUSALS:
            return True
        # aiokafka's SCRAM client reads the server's final message for its "v" (verifier)
        # attribute; a server that refuses the proof sends "e" (an error) instead, and aiokafka
        # fails with KeyError('v').
        if isinstance(found, KeyError) and found.args == ("v",):
            return True
    return False


async def kafka_connection(mapping: ResolvedMapping, clients: AwsClients | None) -> KafkaConnection:
    """Bootstrap servers and security for a mapping, reading secrets and MSK as needed.

    BASIC_AUTH and the SCRAM types are SASL over TLS (AWS offers SASL only with TLS);
    CLIENT_CERTIFICATE_TLS_AUTH is mutual TLS; SERVER_ROOT_CA_CERTIFICATE trusts a private CA.
    Without any of them the connection is plaintext, as a local cluster usually is.
    """
    access = {a.type: a for a in mapping.source_access}
    sasl_type = next((t for t in _SASL_MECHANISMS if t in access), None)
    client_cert = access.get("CLIENT_CERTIFICATE_TLS_AUTH")
    root_ca = access.get("SERVER_ROOT_CA_CERTIFICATE")
    servers = mapping.endpoints or await _msk_bootstrap(mapping, clients, sasl_type, client_cert)
    tls = sasl_type is not None or client_cert is not None or root_ca is not None
    context = await tls_context(mapping.source_access, clients) if tls else None
    if sasl_type is not None:
        auth = await read_basic_auth(access[sasl_type], clients)
        return KafkaConnection(
            tuple(servers),
            "SASL_SSL",
            _SASL_MECHANISMS[sasl_type],
            auth.username,
            auth.password,
            context,
        )
    return KafkaConnection(
        tuple(servers),
        "SSL" if tls else "PLAINTEXT",
        ssl_context=context,
        client_certificate=client_cert is not None,
    )


async def _msk_bootstrap(
    mapping: ResolvedMapping, clients: AwsClients | None, sasl_type: str | None, cert: object
) -> list[str]:
    """MSK's GetBootstrapBrokers, choosing the listener that matches the authentication."""
    if not mapping.event_source_arn or clients is None:
        raise SourceError(
            "Kafka mapping: no bootstrap servers (give SelfManagedEventSource.Endpoints."
            "KAFKA_BOOTSTRAP_SERVERS or an MSK cluster ARN)"
        )
    client = await clients.client("kafka")
    try:
        brokers = await client.get_bootstrap_brokers(ClusterArn=mapping.event_source_arn)
    except Exception as error:
        raise SourceError(
            f"cannot look up the bootstrap brokers of {mapping.event_source_arn}: {error}"
        ) from None
    if sasl_type in ("SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH"):
        keys = ["BootstrapBrokerStringSaslScram"]
    elif cert is not None:
        keys = ["BootstrapBrokerStringTls"]
    else:
        keys = ["BootstrapBrokerString", "BootstrapBrokerStringTls"]
    for key in keys:
        if brokers.get(key):
            return [b.strip() for b in str(brokers[key]).split(",") if b.strip()]
    raise SourceError(
        f"{mapping.event_source_arn} has no {' or '.join(keys)} listener for this mapping's "
        "authentication"
    )
