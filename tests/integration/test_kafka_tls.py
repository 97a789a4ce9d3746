"""Kafka over TLS: how poller's Kafka source reports a handshake that fails.

No Kafka-protocol broker here serves TLS (tansu 0.6.0 cannot; README, Quick start), so what is
tested for real is the handshake itself: a TLS listener that presents a certificate, and
optionally requires a client certificate, and speaks no Kafka. Every refusal happens before
the first Kafka request, so the error poller reports is the one it would report for a broker:
naming the servers, the mapping and the cause, never only aiokafka's "unable to bootstrap".
The success path (a real TLS handshake, then no Kafka) must not be blamed on TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from poller.errors import SourceError
from poller.sources.kafka.connection import kafka_connection
from poller.sources.kafka.source import KafkaSource
from tests.kit import mapping
from tests.kit.tls import CertificateAuthority, IssuedCertificate, handshake_only_listener

pytestmark = pytest.mark.integration

AUTHORITY = CertificateAuthority.create("kafka test CA")
BROKER = AUTHORITY.issue("localhost", dns_names=["localhost"])
CLIENT = AUTHORITY.issue("poller-client", client=True)


async def refusal(server: str, **secrets: Mapping[str, str]) -> str:
    """The SourceError message of starting a Kafka mapping's consumer (it must fail quickly)."""
    fields: dict[str, Any] = {
        "UUID": "kafka-tls",
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [server]}},
        "Topics": ["orders"],
        "StartingPosition": "TRIM_HORIZON",
        "SourceAccessConfigurations": [
            {"Type": kind, "Secret": secret} for kind, secret in secrets.items()
        ],
    }
    resolved = mapping(**fields)
    source = KafkaSource(resolved, await kafka_connection(resolved, None))
    try:
        with anyio.fail_after(60), pytest.raises(SourceError) as raised:
            await source.list_partitions()
    finally:
        await source.aclose()
    message = str(raised.value)
    assert f"cannot reach Kafka at {server}" in message, message
    assert "(mapping kafka-tls)" in message, message
    return message


async def test_an_untrusted_certificate_is_refused_by_default() -> None:
    async with handshake_only_listener(BROKER) as port:
        message = await refusal(f"localhost:{port}", CLIENT_CERTIFICATE_TLS_AUTH=CLIENT.secret())
    assert "the broker's certificate could not be verified" in message, message
    assert "SERVER_ROOT_CA_CERTIFICATE" in message, message


async def test_a_host_the_certificate_is_not_issued_for_is_refused() -> None:
    async with handshake_only_listener(BROKER) as port:
        message = await refusal(f"127.0.0.1:{port}", SERVER_ROOT_CA_CERTIFICATE=AUTHORITY.secret())
    assert "could not be verified: IP address mismatch" in message, message


async def test_an_expired_certificate_is_refused() -> None:
    expired = AUTHORITY.issue("localhost", dns_names=["localhost"], expired=True)
    async with handshake_only_listener(expired) as port:
        message = await refusal(f"localhost:{port}", SERVER_ROOT_CA_CERTIFICATE=AUTHORITY.secret())
    assert "could not be verified: certificate has expired" in message, message


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (None, "the broker requires a client certificate and none was given"),
        (
            CertificateAuthority.create("stranger CA").issue("intruder", client=True),
            "the broker refused the client certificate",
        ),
    ],
    ids=["missing", "signed by another CA"],
)
async def test_a_listener_that_requires_client_certificates_refuses(
    client: IssuedCertificate | None, expected: str
) -> None:
    secrets: dict[str, Mapping[str, str]] = {"SERVER_ROOT_CA_CERTIFICATE": AUTHORITY.secret()}
    if client is not None:
        secrets["CLIENT_CERTIFICATE_TLS_AUTH"] = client.secret()
    async with handshake_only_listener(BROKER, client_ca=AUTHORITY) as port:
        message = await refusal(f"localhost:{port}", **secrets)
    assert expected in message, message


async def test_a_completed_handshake_is_not_blamed_on_tls() -> None:
    """The CA, the host and the client certificate are right: the handshake works, and the
    error is that no Kafka answers, as aiokafka says."""
    async with handshake_only_listener(BROKER, client_ca=AUTHORITY) as port:
        message = await refusal(
            f"localhost:{port}",
            SERVER_ROOT_CA_CERTIFICATE=AUTHORITY.secret(),
            CLIENT_CERTIFICATE_TLS_AUTH=CLIENT.secret(password="key-pass"),
        )
    assert "certificate" not in message, message
    assert "TLS" not in message, message
