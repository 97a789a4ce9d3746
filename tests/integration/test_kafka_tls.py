"""Kafka over TLS: a whole mapping through TLS, and how a handshake that fails is reported.

No Kafka-protocol broker here serves TLS itself (tansu 0.6.0 cannot; README, Quick start). The
whole mapping runs against tansu behind a TLS-terminating relay that requires client
certificates (``kafka_tls_bootstrap``): the client's TLS settings meet a real TLS server, the
records and commits a real Kafka broker. The refusals are tested against a TLS listener that
only does the handshake: each happens before the first Kafka request, so the error poller
reports is the one it would for a broker, naming the servers, the mapping and the cause (never
only aiokafka's "unable to bootstrap"). A handshake that works must not be blamed on TLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from poller.errors import SourceError
from poller.runtime.worker import Worker
from poller.sources.kafka.connection import kafka_connection
from poller.sources.kafka.source import KafkaSource
from tests.conftest import TlsBroker
from tests.integration.kafka_helpers import Handed, kafka_config, kafka_mapping
from tests.kit import mapping, wait_until
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


def client_tls(broker: TlsBroker, directory: Path) -> dict[str, Any]:
    """aiokafka settings of the test's own clients: the broker's CA and its client certificate."""
    context = ssl.create_default_context(cadata=broker.tls.authority.certificate)
    (directory / "client.pem").write_text(broker.tls.client.certificate)
    (directory / "client.key").write_text(broker.tls.client.private_key())
    context.load_cert_chain(directory / "client.pem", directory / "client.key")
    return {"bootstrap_servers": broker.url, "security_protocol": "SSL", "ssl_context": context}


async def test_a_mapping_reads_and_commits_over_mutual_tls(
    kafka_tls_bootstrap: TlsBroker, unique_name: str, tmp_path: Path
) -> None:
    """SERVER_ROOT_CA_CERTIFICATE and CLIENT_CERTIFICATE_TLS_AUTH (an encrypted key): the
    mapping joins its group, reads the records in order and commits past them, all over TLS."""
    broker = kafka_tls_bootstrap
    settings = client_tls(broker, tmp_path)
    admin = AIOKafkaAdminClient(**settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique_name, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**settings)
    await producer.start()
    try:
        for index in range(5):
            await producer.send_and_wait(unique_name, f"r{index}".encode(), partition=0)
    finally:
        await producer.stop()

    fields = kafka_mapping(
        broker.url,
        unique_name,
        unique_name,
        SourceAccessConfigurations=[
            {"Type": "SERVER_ROOT_CA_CERTIFICATE", "Secret": broker.tls.authority.secret()},
            {
                "Type": "CLIENT_CERTIFICATE_TLS_AUTH",
                "Secret": broker.tls.client.secret(password="key-pass"),
            },
        ],
    )
    handed = Handed()
    async with Worker(kafka_config(fields), handlers={unique_name: handed}):
        await wait_until(lambda: len(handed.records()) >= 5, within=60, what="five records")
    assert [record["offset"] for record in handed.records()] == [0, 1, 2, 3, 4]

    consumer = AIOKafkaConsumer(group_id=unique_name, enable_auto_commit=False, **settings)
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(unique_name, 0)) == 5
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "SASL_SCRAM_512_AUTH",
            "the broker refused the SASL SCRAM-SHA-512 login of user 'alice' (wrong user name or "
            "password, or a user the broker does not know)",
        ),
        (
            "SASL_SCRAM_256_AUTH",
            "the broker refused the SASL SCRAM-SHA-256 login of user 'alice'",
        ),
        (
            # tansu offers no PLAIN: it drops the connection, which aiokafka reports as a failed
            # bootstrap; the TLS handshake works, so the login is the suspect.
            "BASIC_AUTH",
            "the TLS handshake works, so the broker may have refused the SASL PLAIN login of "
            "user 'alice'",
        ),
    ],
)
async def test_a_refused_sasl_login_is_named_without_the_password(
    kafka_sasl_bootstrap: TlsBroker, kind: str, expected: str
) -> None:
    """SASL over TLS against a broker that refuses the login: the error names the mechanism
    and the user, and never shows the password (nor aiokafka's KeyError for a SCRAM refusal)."""
    broker = kafka_sasl_bootstrap
    message = await refusal(
        broker.url,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        **{kind: {"username": "alice", "password": "s3cret-Wrong-pw"}},
    )
    assert expected in message, message
    assert "s3cret-Wrong-pw" not in message
