"""ActiveMQ over stomp+ssl, for real: a broker whose TLS connector requires a client certificate.

The run's second ActiveMQ (``activemq_tls_broker``) has a ``stomp+ssl`` connector with
``needClientAuth=true``, its key and trust stores made from a CA made for the run; its
certificate is valid for ``localhost`` only. A mapping reaches it with
``SERVER_ROOT_CA_CERTIFICATE`` and ``CLIENT_CERTIFICATE_TLS_AUTH`` in Lambda's secret format;
each way the handshake can fail is refused with an error that names the broker, the mapping and
the cause (the source is opened directly: its ``describe`` is what the worker calls first).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from poller.errors import SourceError
from poller.runtime.worker import Worker
from poller.sources.activemq.source import ActiveMqSource
from tests.conftest import TlsBroker
from tests.kit import ActiveAdmin, AsyncLambdaRecorder, mapping, moto_aws, wait_until, worker_config
from tests.kit.tls import CertificateAuthority, handshake_only_listener

pytestmark = pytest.mark.integration


def active_mapping(url: str, queue: str, **secrets: Mapping[str, str]) -> dict[str, Any]:
    return {
        "UUID": f"tls-{queue}",
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}},
        "Queues": [queue],
        "FunctionTimeout": 10,
        "SourceAccessConfigurations": [
            {"Type": kind, "Secret": secret} for kind, secret in secrets.items()
        ],
    }


async def refusal(url: str, queue: str, **secrets: Mapping[str, str]) -> str:
    """The SourceError message of opening a mapping's source (it must fail, and quickly)."""
    fields = active_mapping(url, queue, **secrets)
    source = ActiveMqSource(mapping(**fields), None, connect_timeout=5)
    try:
        with anyio.fail_after(40), pytest.raises(SourceError) as raised:
            await source.describe()
    finally:
        await source.aclose()
    message = str(raised.value)
    assert f"for mapping {fields['UUID']}" in message, message
    assert queue in message, message
    return message


async def test_stomp_ssl_with_a_private_ca_and_a_client_certificate(
    activemq_tls_broker: TlsBroker, unique_name: str
) -> None:
    """The whole mapping over TLS: the CA makes the broker trusted, the client certificate (its
    key encrypted, with the password in the secret) is accepted, and the queue is read."""
    broker = activemq_tls_broker
    await ActiveAdmin(broker.plain_url).publish(unique_name, ["a", "b", "c"])
    fields = active_mapping(
        broker.url,
        unique_name,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(password="key-pass"),
    )
    calls = AsyncLambdaRecorder()
    config = worker_config(fields, aws=moto_aws(), queue_wait_seconds=1)
    async with Worker(config, handlers={fields["UUID"]: calls}):
        await wait_until(
            lambda: sum(len(e["messages"]) for e in calls.events) >= 3,
            within=30,
            what="the three messages",
        )
    bodies = [base64.b64decode(m["data"]).decode() for e in calls.events for m in e["messages"]]
    assert bodies == ["a", "b", "c"]
    assert calls.events[0]["eventSource"] == "aws:mq"


async def test_an_untrusted_broker_certificate_is_refused_by_default(
    activemq_tls_broker: TlsBroker, unique_name: str
) -> None:
    broker = activemq_tls_broker
    message = await refusal(
        broker.url, unique_name, CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret()
    )
    assert f"stomp+ssl://localhost:{broker.port}" in message, message
    assert "the broker's certificate could not be verified" in message, message
    assert "SERVER_ROOT_CA_CERTIFICATE" in message, message


async def test_a_host_the_certificate_is_not_issued_for_is_refused(
    activemq_tls_broker: TlsBroker, unique_name: str
) -> None:
    broker = activemq_tls_broker
    message = await refusal(
        f"stomp+ssl://127.0.0.1:{broker.port}",
        unique_name,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(),
    )
    assert "could not be verified: IP address mismatch" in message, message


async def test_the_broker_refuses_a_connection_without_a_client_certificate(
    activemq_tls_broker: TlsBroker, unique_name: str
) -> None:
    broker = activemq_tls_broker
    message = await refusal(
        broker.url, unique_name, SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret()
    )
    assert "the broker requires a client certificate and none was given" in message, message


async def test_the_broker_refuses_a_client_certificate_its_ca_did_not_sign(
    activemq_tls_broker: TlsBroker, unique_name: str
) -> None:
    broker = activemq_tls_broker
    stranger = CertificateAuthority.create("stranger CA").issue("intruder", client=True)
    message = await refusal(
        broker.url,
        unique_name,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=stranger.secret(),
    )
    assert "the broker refused the client certificate" in message, message


async def test_an_expired_broker_certificate_is_refused(unique_name: str) -> None:
    """Only the handshake matters here, so a plain TLS listener with an expired certificate
    stands in for the broker."""
    authority = CertificateAuthority.create("expiry CA")
    expired = authority.issue("localhost", dns_names=["localhost"], expired=True)
    async with handshake_only_listener(expired) as port:
        message = await refusal(
            f"stomp+ssl://localhost:{port}",
            unique_name,
            SERVER_ROOT_CA_CERTIFICATE=authority.secret(),
        )
    assert "the broker's certificate could not be verified: certificate has expired" in message
