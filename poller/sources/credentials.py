"""Broker credentials from ``SourceAccessConfigurations``: Secrets Manager, env, file or inline.

AWS keeps broker credentials in Secrets Manager and names the secret by ARN; poller reads it with
the worker's AWS clients when a source connects (never at config time, so a rotated secret is
picked up on reconnect). Where there is no Secrets Manager, ``env:NAME`` and ``file:PATH`` hold the
same JSON, and ``Secret = {...}`` gives it inline.

The secret's JSON is AWS's: ``{"username", "password"}`` for BASIC_AUTH and the SASL/SCRAM types;
``{"certificate", "privateKey", "privateKeyPassword"?}`` for CLIENT_CERTIFICATE_TLS_AUTH (PEM);
``{"certificate"}`` for SERVER_ROOT_CA_CERTIFICATE. Secret values are never logged: the types
here keep them out of ``repr``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from poller.config.fields import SourceAccess
from poller.errors import SourceError

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = [
    "BasicAuth",
    "ClientCertificate",
    "read_basic_auth",
    "read_client_certificate",
    "read_root_certificate",
    "read_secret",
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
