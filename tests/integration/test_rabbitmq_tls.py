"""RabbitMQ over amqps, for real: a broker whose TLS listener requires a client certificate.

The run's second RabbitMQ (``rabbitmq_tls_broker``) has a certificate signed by a CA made for
the run, valid for ``localhost`` only, and a virtual host. A mapping reaches it with ``amqps://``,
``VIRTUAL_HOST``, ``SERVER_ROOT_CA_CERTIFICATE`` and ``CLIENT_CERTIFICATE_TLS_AUTH`` in Lambda's
secret format; each way the handshake can fail is refused with an error that names the broker,
the mapping and the cause (the source is opened directly: its ``describe`` is what the worker
calls first, and what it logs when that fails).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.errors import SourceError
from poller.runtime.worker import Worker
from poller.sources.rabbitmq.source import RabbitMqSource
from tests.conftest import TlsBroker
from tests.kit import (
    AsyncLambdaRecorder,
    RabbitAdmin,
    logged,
    mapping,
    moto_aws,
    wait_until,
    worker_config,
)
from tests.kit.tls import CertificateAuthority, handshake_only_listener

pytestmark = pytest.mark.integration


def access(**entries: Mapping[str, str] | str) -> list[dict[str, Any]]:
    """SourceAccessConfigurations: inline secrets, or a VIRTUAL_HOST name."""
    return [
        {"Type": kind, "URI": value} if isinstance(value, str) else {"Type": kind, "Secret": value}
        for kind, value in entries.items()
    ]


def rabbit_mapping(url: str, queue: str, **entries: Mapping[str, str] | str) -> dict[str, Any]:
    return {
        "UUID": f"tls-{queue}",
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}},
        "Queues": [queue],
        "FunctionTimeout": 10,
        "SourceAccessConfigurations": access(**entries),
    }


async def refusal(url: str, queue: str, **entries: Mapping[str, str] | str) -> str:
    """The SourceError message of opening a mapping's source (it must fail, and quickly)."""
    fields = rabbit_mapping(url, queue, **entries)
    source = RabbitMqSource(mapping(**fields), None, connect_timeout=5)
    try:
        with anyio.fail_after(30), pytest.raises(SourceError) as raised:
            await source.describe()
    finally:
        await source.aclose()
    message = str(raised.value)
    assert f"for mapping {fields['UUID']}" in message, message
    assert queue in message, message
    return message


@pytest.fixture
async def vhost_queue(rabbitmq_tls_broker: TlsBroker, unique_name: str) -> AsyncIterator[str]:
    """A queue in the TLS broker's virtual host (set up over its plaintext listener)."""
    admin = RabbitAdmin(f"{rabbitmq_tls_broker.plain_url}/{rabbitmq_tls_broker.vhost}")
    await admin.create_queue(unique_name)
    yield unique_name


async def test_amqps_with_a_private_ca_a_client_certificate_and_a_virtual_host(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    """The whole mapping over TLS: the CA makes the broker trusted, the client certificate (its
    key encrypted, with the password in the secret) is accepted, and the queue of the virtual
    host is read, not the queue of the same name in "/"."""
    broker = rabbitmq_tls_broker
    await RabbitAdmin(f"{broker.plain_url}/{broker.vhost}").publish(vhost_queue, ["a", "b", "c"])
    default_vhost = RabbitAdmin(broker.plain_url)
    await default_vhost.create_queue(vhost_queue)
    await default_vhost.publish(vhost_queue, ["in the default vhost"])
    fields = rabbit_mapping(
        broker.url,
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(password="key-pass"),
    )
    calls = AsyncLambdaRecorder()
    config = worker_config(fields, aws=moto_aws(), queue_wait_seconds=1)
    async with Worker(config, handlers={fields["UUID"]: calls}):
        await wait_until(
            lambda: sum(len(messages(e)) for e in calls.events) >= 3,
            within=30,
            what="the three messages of the virtual host's queue",
        )
    bodies = [body for event in calls.events for body in messages(event)]
    assert bodies == ["a", "b", "c"]
    assert set(calls.events[0]["rmqMessagesByQueue"]) == {f"{vhost_queue}::{broker.vhost}"}
    # Nothing else was taken: the default vhost's message is still there.
    assert await default_vhost.consume(vhost_queue, 1, within=10) == ["in the default vhost"]


def messages(event: Mapping[str, Any]) -> list[str]:
    return [
        base64.b64decode(message["data"]).decode()
        for queue in event["rmqMessagesByQueue"].values()
        for message in queue
    ]


async def test_an_untrusted_broker_certificate_is_refused_by_default(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    """Without SERVER_ROOT_CA_CERTIFICATE the system's CAs decide: a private CA's certificate
    is refused, and the error says so and how to trust it."""
    broker = rabbitmq_tls_broker
    message = await refusal(
        broker.url,
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(),
    )
    assert f"amqps://localhost:{broker.port}" in message, message
    assert "the broker's certificate could not be verified" in message, message
    assert "SERVER_ROOT_CA_CERTIFICATE" in message, message


async def test_a_ca_that_did_not_sign_the_broker_certificate_is_refused(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    broker = rabbitmq_tls_broker
    other = CertificateAuthority.create("some other CA")
    message = await refusal(
        broker.url,
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        SERVER_ROOT_CA_CERTIFICATE=other.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(),
    )
    assert "the broker's certificate could not be verified" in message, message


async def test_a_host_the_certificate_is_not_issued_for_is_refused(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    """The certificate names ``localhost`` only: reaching the same broker by IP is refused."""
    broker = rabbitmq_tls_broker
    message = await refusal(
        f"amqps://127.0.0.1:{broker.port}",
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(),
    )
    assert "could not be verified: IP address mismatch" in message, message
    assert "'127.0.0.1'" in message, message


async def test_the_broker_refuses_a_connection_without_a_client_certificate(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    broker = rabbitmq_tls_broker
    message = await refusal(
        broker.url,
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
    )
    assert "the broker requires a client certificate and none was given" in message, message


async def test_the_broker_refuses_a_client_certificate_its_ca_did_not_sign(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    broker = rabbitmq_tls_broker
    stranger = CertificateAuthority.create("stranger CA").issue("intruder", client=True)
    message = await refusal(
        broker.url,
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
        CLIENT_CERTIFICATE_TLS_AUTH=stranger.secret(),
    )
    assert "the broker refused the client certificate" in message, message


async def test_an_expired_broker_certificate_is_refused(unique_name: str) -> None:
    """Only the handshake matters here, so a plain TLS listener with an expired certificate
    stands in for the broker: the client must stop at the handshake, saying why."""
    authority = CertificateAuthority.create("expiry CA")
    expired = authority.issue("localhost", dns_names=["localhost"], expired=True)
    async with handshake_only_listener(expired) as port:
        message = await refusal(
            f"amqps://localhost:{port}", unique_name, SERVER_ROOT_CA_CERTIFICATE=authority.secret()
        )
    assert "the broker's certificate could not be verified: certificate has expired" in message


async def test_a_worker_logs_the_tls_refusal_and_keeps_trying(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    """Inside a worker the refusal is a logged error naming the cause, not a traceback and not
    a crash: the mapping retries, and the worker stops cleanly."""
    broker = rabbitmq_tls_broker
    fields = rabbit_mapping(
        broker.url,
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        CLIENT_CERTIFICATE_TLS_AUTH=broker.tls.client.secret(),
    )
    config = worker_config(fields, aws=moto_aws(), queue_wait_seconds=1)
    with capture_logs() as logs:
        async with Worker(config, handlers={fields["UUID"]: AsyncLambdaRecorder()}):
            await wait_until(
                lambda: len(logged(logs, event="cannot read the queue")) >= 2,
                within=30,
                what="the refusal logged twice (the mapping retries)",
            )
    first = logged(logs, event="cannot read the queue")[0]
    assert first["log_level"] == "error"
    assert "the broker's certificate could not be verified" in first["error"]
    assert f"for mapping {fields['UUID']}" in first["error"]
    assert "PRIVATE KEY" not in repr(logs)


async def test_amqps_to_a_plaintext_listener_says_it_is_not_tls(
    rabbitmq_tls_broker: TlsBroker, vhost_queue: str
) -> None:
    """An amqps URL with the port of the plaintext listener: the broker answers in AMQP, not
    TLS, and the error says so instead of a protocol error."""
    broker = rabbitmq_tls_broker
    plain_port = broker.plain_url.rpartition(":")[2]
    message = await refusal(
        f"amqps://localhost:{plain_port}",
        vhost_queue,
        VIRTUAL_HOST=broker.vhost,
        SERVER_ROOT_CA_CERTIFICATE=broker.tls.authority.secret(),
    )
    assert "the broker does not answer in TLS on this port" in message, message
