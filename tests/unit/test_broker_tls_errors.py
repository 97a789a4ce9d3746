"""Broker TLS without a broker: the MQ config rule, the TLS context's bad inputs, and how a
failed handshake is put into words whatever the client library wrapped it in.

The handshakes themselves run against real brokers in tests/integration/test_*_tls.py.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from poller.config import SourceAccess, parse_config
from poller.errors import ConfigError, SourceError
from poller.sources.credentials import tls_context, tls_failure
from tests.kit.tls import CertificateAuthority


def mq_config(url: str | None, *access: dict[str, Any]) -> None:
    source: dict[str, Any] = (
        {"SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}}}
        if url
        else {"EventSourceArn": "arn:aws:mq:us-east-1:123456789012:broker:shop:b-1"}
    )
    parse_config({"mappings": [{**source, "Queues": ["q"], "SourceAccessConfigurations": access}]})


@pytest.mark.parametrize("kind", ["SERVER_ROOT_CA_CERTIFICATE", "CLIENT_CERTIFICATE_TLS_AUTH"])
def test_mq_tls_access_needs_tls_urls(kind: str) -> None:
    entry = {"Type": kind, "URI": "env:BROKER_TLS"}
    for url in ("amqps://mq.example:5671", "stomp+ssl://mq.example:61614", None):
        mq_config(url, entry)
    for url, scheme in (("amqp://mq.example", "amqp"), ("stomp://mq.example", "stomp")):
        with pytest.raises(ConfigError) as raised:
            mq_config(url, entry)
        assert f"{kind} needs amqps:// or stomp+ssl:// broker URLs, not {scheme}://" in str(
            raised.value
        )


async def test_a_ca_secret_that_is_not_pem_is_named() -> None:
    access = [SourceAccess("SERVER_ROOT_CA_CERTIFICATE", None, {"certificate": "not a PEM"})]
    with pytest.raises(SourceError, match="SERVER_ROOT_CA_CERTIFICATE: the secret's 'certificate'"):
        await tls_context(access, None)


async def test_a_client_key_with_a_wrong_password_is_named_without_the_key() -> None:
    client = CertificateAuthority.create("unit CA").issue("client", client=True)
    secret = {**client.secret(password="right"), "privateKeyPassword": "wrong"}
    access = [SourceAccess("CLIENT_CERTIFICATE_TLS_AUTH", None, secret)]
    with pytest.raises(SourceError) as raised:
        await tls_context(access, None)
    assert "CLIENT_CERTIFICATE_TLS_AUTH: cannot load the certificate and key" in str(raised.value)
    assert "PRIVATE KEY" not in str(raised.value) and "right" not in str(raised.value)


async def test_the_context_checks_the_broker_by_default() -> None:
    context = await tls_context([], None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def alert(reason: str) -> ssl.SSLError:
    """An ``ssl`` error as OpenSSL raises it for ``reason`` (the attribute C code sets)."""
    error_type = type("Alert", (ssl.SSLError,), {"reason": reason})
    return error_type(1, f"[SSL: {reason}]")


def unverified(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    error.verify_message = message
    return error


def wrapped(error: BaseException) -> BaseException:
    """``error`` as a client library hands it on: raised from, inside a task group's group."""
    try:
        try:
            raise error
        except BaseException as inner:
            raise ConnectionError("Server connection reset") from inner
    except ConnectionError as outer:
        return ExceptionGroup("unhandled errors in a TaskGroup", [outer])


@pytest.mark.parametrize(
    ("error", "client_certificate", "expected"),
    [
        (
            unverified("unable to get local issuer certificate"),
            True,
            "the broker's certificate could not be verified: unable to get local issuer "
            "certificate (a private CA is trusted with SERVER_ROOT_CA_CERTIFICATE)",
        ),
        (
            unverified("Hostname mismatch, certificate is not valid for 'mq'."),
            False,
            "the broker's certificate could not be verified: Hostname mismatch, certificate is "
            "not valid for 'mq' (the URL's host must be a name the certificate is issued for)",
        ),
        (
            unverified("certificate has expired"),
            False,
            "the broker's certificate could not be verified: certificate has expired",
        ),
        (
            alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"),
            False,
            "the broker requires a client certificate and none was given "
            "(CLIENT_CERTIFICATE_TLS_AUTH; TLS alert TLSV13_ALERT_CERTIFICATE_REQUIRED)",
        ),
        (
            alert("SSLV3_ALERT_BAD_CERTIFICATE"),
            False,
            "the broker requires a client certificate and none was given "
            "(CLIENT_CERTIFICATE_TLS_AUTH; TLS alert SSLV3_ALERT_BAD_CERTIFICATE)",
        ),
        (
            alert("SSLV3_ALERT_BAD_CERTIFICATE"),
            True,
            "the broker refused the client certificate (TLS alert SSLV3_ALERT_BAD_CERTIFICATE)",
        ),
        (
            alert("WRONG_VERSION_NUMBER"),
            False,
            "the broker does not answer in TLS on this port (WRONG_VERSION_NUMBER)",
        ),
    ],
)
def test_a_failed_handshake_in_words_through_any_wrapping(
    error: ssl.SSLError, client_certificate: bool, expected: str
) -> None:
    assert tls_failure(error, client_certificate=client_certificate) == expected
    assert tls_failure(wrapped(error), client_certificate=client_certificate) == expected


def test_an_error_that_is_not_tls_is_left_alone() -> None:
    assert (
        tls_failure(wrapped(ConnectionRefusedError(111, "refused")), client_certificate=False)
        is None
    )
