"""Broker credentials from ``SourceAccessConfigurations``: Secrets Manager, env, file or inline.

AWS keeps broker credentials in Secrets Manager and names the secret by ARN; poller reads it with
the worker's AWS clients when a source connects (never at config time, so a rotated secret is
picked up on reconnect). Where there is no Secrets Manager, ``env:NAME`` and ``file:PATH`` hold the
same JSON, and ``Secret = {...}`` gives it inline.

The secret's JSON is AWS's: ``{"username", "password"}`` for BASIC_AUTH and the SASL/SCRAM types;
``{"certificate", "privateKey", "privateKeyPassword"?}`` for CLIENT_CERTIFICATE_TLS_AUTH (PEM);
``{"certificate"}`` for SERVER_ROOT_CA_CERTIFICATE. Secret values are never logged: the types
here keep them out of ``repr``.

The last two make the TLS context of a broker connection (:func:`tls_context`, shared by Kafka,
RabbitMQ and ActiveMQ), and :func:`tls_failure` puts a failed handshake into words: client
libraries raise it as ``ssl`` errors wrapped in their own, which say little by themselves.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from poller.config.fields import SourceAccess
from poller.errors import SourceError, causes

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = [
    "BasicAuth",
    "ClientCertificate",
    "diagnose_tls",
    "read_basic_auth",
    "read_client_certificate",
    "read_root_certificate",
    "read_secret",
    "tls_context",
    "tls_failure",
]


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """A user name and password (SASL PLAIN/SCRAM, AMQP and STOMP logins)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A PEM client certificate chain and its private key (mutual TLS)."""

    certificate: str = field(repr=False)
    private_key: str = field(repr=False)
    private_key_password: str | None = field(default=None, repr=False)


async def read_secret(access: SourceAccess | str, clients: AwsClients | None) -> dict[str, str]:
    """The secret an access entry (or a bare URI) points to, as a JSON object of strings.

    Raises :class:`SourceError` naming the entry (never the secret's value) when it cannot be read
    or is not a JSON object.
    """
    if isinstance(access, str):
        access = SourceAccess("BASIC_AUTH", access)
    where = f"SourceAccessConfigurations {access.type}"
    if access.secret is not None:
        return dict(access.secret)
    uri = access.uri or ""
    text: str
    if uri.startswith("env:"):
        name = uri.removeprefix("env:")
        value = os.environ.get(name)
        if value is None:
            raise SourceError(f"{where}: environment variable {name!r} is not set")
        text = value
    elif uri.startswith("file:"):
        path = anyio.Path(uri.removeprefix("file:"))
        try:
            text = await path.read_text(encoding="utf-8")
        except OSError as error:
            raise SourceError(f"{where}: cannot read {path} ({error.strerror})") from None
    else:
        if clients is None:
            raise SourceError(f"{where}: reading {uri} needs AWS clients")
        text = await _secrets_manager(uri, clients, where)
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        raise SourceError(f"{where}: the secret at {uri} is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SourceError(f"{where}: the secret at {uri} is not a JSON object of strings")
    return data


async def _secrets_manager(arn: str, clients: AwsClients, where: str) -> str:
    client = await clients.client("secretsmanager")
    try:
        response = await client.get_secret_value(SecretId=arn)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise SourceError(f"{where}: cannot read secret {arn} ({code})") from None
    except BotoCoreError as error:
        raise SourceError(f"{where}: cannot read secret {arn} ({error})") from None
    secret = response.get("SecretString")
    if not isinstance(secret, str):
        raise SourceError(f"{where}: secret {arn} has no SecretString")
    return secret


def _required(secret: Mapping[str, str], key: str, access_type: str) -> str:
    value = secret.get(key)
    if not value:
        raise SourceError(f"SourceAccessConfigurations {access_type}: the secret has no {key!r}")
    return value


async def read_basic_auth(access: SourceAccess | str, clients: AwsClients | None) -> BasicAuth:
    """The ``username`` and ``password`` of a BASIC_AUTH or SASL/SCRAM secret."""
    access_type = access if isinstance(access, str) else access.type
    secret = await read_secret(access, clients)
    return BasicAuth(
        _required(secret, "username", access_type), _required(secret, "password", access_type)
    )


async def read_client_certificate(
    access: SourceAccess, clients: AwsClients | None
) -> ClientCertificate:
    """The certificate and key of a CLIENT_CERTIFICATE_TLS_AUTH secret."""
    secret = await read_secret(access, clients)
    return ClientCertificate(
        _required(secret, "certificate", access.type),
        _required(secret, "privateKey", access.type),
        secret.get("privateKeyPassword") or None,
    )


async def read_root_certificate(access: SourceAccess, clients: AwsClients | None) -> str:
    """The PEM CA bundle of a SERVER_ROOT_CA_CERTIFICATE secret."""
    return _required(await read_secret(access, clients), "certificate", access.type)


async def tls_context(access: Sequence[SourceAccess], clients: AwsClients | None) -> ssl.SSLContext:
    """The TLS context of a broker connection, from a mapping's access entries.

    The broker's certificate and host name are always checked: against the system's trusted CAs,
    or against SERVER_ROOT_CA_CERTIFICATE's bundle instead when given (a private CA).
    CLIENT_CERTIFICATE_TLS_AUTH adds the client certificate for brokers that require one.
    """
    by_type = {entry.type: entry for entry in access}
    root_ca = by_type.get("SERVER_ROOT_CA_CERTIFICATE")
    client_certificate = by_type.get("CLIENT_CERTIFICATE_TLS_AUTH")
    cadata = await read_root_certificate(root_ca, clients) if root_ca is not None else None
    try:
        context = ssl.create_default_context(cadata=cadata)
    except (ssl.SSLError, ValueError) as error:
        raise SourceError(
            "SourceAccessConfigurations SERVER_ROOT_CA_CERTIFICATE: the secret's 'certificate' "
            f"is not a PEM certificate bundle ({error})"
        ) from None
    if client_certificate is not None:
        certificate = await read_client_certificate(client_certificate, clients)
        _load_client_certificate(context, certificate)
    return context


def _load_client_certificate(context: ssl.SSLContext, certificate: ClientCertificate) -> None:
    # ``ssl`` loads certificates from files only: write them to a private directory that is
    # removed as soon as they are loaded.
    with tempfile.TemporaryDirectory(prefix="poller-tls-") as directory:
        cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert_path.write_text(certificate.certificate)
        key_path.write_text(certificate.private_key)
        key_path.chmod(0o600)
        try:
            context.load_cert_chain(cert_path, key_path, password=certificate.private_key_password)
        except (ssl.SSLError, ValueError) as error:
            raise SourceError(
                f"SourceAccessConfigurations CLIENT_CERTIFICATE_TLS_AUTH: cannot load the "
                f"certificate and key ({error})"
            ) from None


#: OpenSSL's names of the alerts a broker sends when it refuses the client's certificate.
_REFUSED_CERTIFICATE: Final = frozenset(
    {
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)
#: What OpenSSL reports when the other side does not answer in TLS at all.
_NOT_TLS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)


def tls_failure(error: BaseException, *, client_certificate: bool) -> str | None:
    """What went wrong in a TLS handshake, in words, or None when ``error`` is no TLS failure.

    Looks through exception groups and the ``__cause__``/``__context__`` chains (client
    libraries wrap the ``ssl`` error). ``client_certificate`` says whether the connection
    offered one, which tells "refused" from "missing" when the broker only says "bad certificate".
    """
    for found in _errors_within(error):
        if isinstance(found, ssl.SSLCertVerificationError):
            return _verification_failure(found)
    for found in _errors_within(error):
        if not isinstance(found, ssl.SSLError):
            continue
        reason = str(getattr(found, "reason", "") or "")
        if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED" or (
            reason in _REFUSED_CERTIFICATE and not client_certificate
        ):
            return (
                "the broker requires a client certificate and none was given "
                f"(CLIENT_CERTIFICATE_TLS_AUTH; TLS alert {reason})"
            )
        if reason in _REFUSED_CERTIFICATE:
            return f"the broker refused the client certificate (TLS alert {reason})"
        if reason in _NOT_TLS:
            return f"the broker does not answer in TLS on this port ({reason})"
        return f"the TLS handshake failed ({reason or found})"
    return None


async def diagnose_tls(
    host: str, port: int, context: ssl.SSLContext, *, client_certificate: bool
) -> str | None:
    """Why TLS to ``host:port`` fails, found by a handshake of its own; None when it works.

    A client library that speaks first after the handshake (AMQP, STOMP) often sees only a
    reset connection when the broker refuses its certificate: the broker's alert is lost under
    the reset. This handshake sends nothing and waits a moment for the alert instead.
    """
    try:
        with anyio.fail_after(10):
            stream = await anyio.connect_tcp(
                host, port, ssl_context=context, tls_standard_compatible=False
            )
            async with stream:
                with anyio.move_on_after(3):
                    await stream.receive(1)
    except Exception as error:
        return tls_failure(error, client_certificate=client_certificate)
    return None


def _verification_failure(error: ssl.SSLCertVerificationError) -> str:
    detail = str(error.verify_message or error.reason or error).rstrip(".")
    lead = f"the broker's certificate could not be verified: {detail}"
    if "mismatch" in detail:
        return f"{lead} (the URL's host must be a name the certificate is issued for)"
    if "expired" in detail or "not yet valid" in detail:
        return lead
    return f"{lead} (a private CA is trusted with SERVER_ROOT_CA_CERTIFICATE)"


def _errors_within(error: BaseException) -> Iterator[BaseException]:
    """``error``, the errors its groups hold and those it was raised from, each once."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(causes(current))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
