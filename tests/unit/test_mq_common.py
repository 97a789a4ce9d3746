"""What the MQ sources share: broker URLs, login and virtual host, the buffer, redelivery counts."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from poller.config import ResolvedMapping, parse_config
from poller.config.resolved import SourceSettings
from poller.sources.activemq.source import ActiveMqSource
from poller.sources.mq.buffer import DeliveryBuffer, RedeliveryCounter
from poller.sources.mq.endpoints import (
    BrokerEndpoint,
    broker_endpoints,
    broker_login,
    redact_url,
    virtual_host,
)
from poller.sources.rabbitmq.source import RabbitMqSource


def mq(url: str, **fields: Any) -> ResolvedMapping:
    config = {
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}},
        "Queues": ["orders"],
        **fields,
    }
    return parse_config({"mappings": [config]}).mappings[0].resolved()


def test_broker_urls_are_split_with_default_ports_and_tls() -> None:
    assert BrokerEndpoint.parse("amqp://h") == BrokerEndpoint("amqp", "h", 5672)
    secure = BrokerEndpoint.parse("amqps://user:p%40ss@h:1234/my%2Fvhost")
    assert (secure.port, secure.path, secure.tls) == (1234, "my/vhost", True)
    assert (secure.username, secure.password) == ("user", "p@ss")
    assert "p@ss" not in repr(secure) and str(secure) == "amqps://h:1234"
    assert BrokerEndpoint.parse("stomp+ssl://h").port == 61614
    assert BrokerEndpoint.parse("stomp://h").port == 61613


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h", "unsupported scheme"),
        ("amqp://", "names no host"),
        ("amqp://u:secret@h:notaport", "invalid port"),
    ],
)
def test_bad_broker_urls_are_refused_without_showing_credentials(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        BrokerEndpoint.parse(url)
    assert "secret" not in str(raised.value)


def test_redact_url_drops_user_information_only() -> None:
    assert redact_url("amqps://user:pw@host:5671/vh") == "amqps://host:5671/vh"
    assert redact_url("stomp://host:61613") == "stomp://host:61613"


async def test_login_comes_from_basic_auth_before_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQ_SECRET", '{"username": "svc", "password": "from-env"}')
    endpoint = BrokerEndpoint.parse("amqp://url-user:url-pw@h")
    from_secret = mq(
        "amqp://h", SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": "env:MQ_SECRET"}]
    )
    login = await broker_login(from_secret, None, endpoint)
    assert login is not None and (login.username, login.password) == ("svc", "from-env")
    login = await broker_login(mq("amqp://h"), None, endpoint)
    assert login is not None and (login.username, login.password) == ("url-user", "url-pw")
    assert await broker_login(mq("amqp://h"), None, BrokerEndpoint.parse("amqp://h")) is None


def test_virtual_host_comes_from_virtual_host_access_then_the_url_path() -> None:
    endpoint = BrokerEndpoint.parse("amqp://h/from-url")
    configured = mq(
        "amqp://h", SourceAccessConfigurations=[{"Type": "VIRTUAL_HOST", "URI": "from-config"}]
    )
    assert virtual_host(configured, endpoint) == "from-config"
    assert virtual_host(mq("amqp://h"), endpoint) == "from-url"
    assert virtual_host(mq("amqp://h"), BrokerEndpoint.parse("amqp://h")) == "/"


async def test_only_endpoints_of_the_source_s_protocols_are_used() -> None:
    mapping = mq("amqps://h:5671")
    endpoints = await broker_endpoints(mapping, None, engine="RABBITMQ", schemes=("amqp", "amqps"))
    assert [str(e) for e in endpoints] == ["amqps://h:5671"]
    with pytest.raises(Exception, match="no stomp endpoint among amqps://h:5671"):
        await broker_endpoints(mapping, None, engine="ACTIVEMQ", schemes=("stomp",))


def test_prefetch_holds_a_batch_per_poller_and_one_ahead() -> None:
    assert RabbitMqSource(mq("amqp://h", BatchSize=50)).prefetch == 100
    concurrent = mq("amqp://h", BatchSize=50, ScalingConfig={"MaximumConcurrency": 3})
    assert RabbitMqSource(concurrent).prefetch == 200
    assert ActiveMqSource(mq("stomp://h", BatchSize=10)).prefetch == 20
    assert RabbitMqSource(mq("amqp://h", BatchSize=10000)).prefetch == 20000
    huge = mq("amqp://h", BatchSize=10000, ScalingConfig={"MaximumConcurrency": 10})
    assert RabbitMqSource(huge).prefetch == 65535  # AMQP's largest


async def test_the_buffer_waits_only_for_the_first_delivery() -> None:
    buffer: DeliveryBuffer[int] = DeliveryBuffer()
    with anyio.fail_after(2):
        assert await buffer.take(10, 0.05) == []
    for item in range(5):
        buffer.put(item)
    assert await buffer.take(3, 10) == [0, 1, 2]  # returns at once: no waiting for more
    assert buffer.drain() == [3, 4] and len(buffer) == 0

    async def put_later() -> None:
        await anyio.sleep(0.05)
        buffer.put(7)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(put_later)
            assert await buffer.take(10, 5) == [7]


async def test_wake_ends_a_waiting_take_early() -> None:
    buffer: DeliveryBuffer[int] = DeliveryBuffer()

    async def wake_later() -> None:
        await anyio.sleep(0.05)
        buffer.wake()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(wake_later)
            assert await buffer.take(10, 30) == []


def test_redelivery_counts_are_per_message_and_bounded() -> None:
    counter = RedeliveryCounter(limit=2)
    counter.failed("a")
    counter.failed("a")
    counter.failed("b")
    assert (counter.failures("a"), counter.failures("b")) == (2, 1)
    counter.failed("c")  # the least recently failing id is forgotten first
    assert (counter.failures("a"), counter.failures("c"), len(counter)) == (0, 1, 2)
    counter.forget("c")
    assert counter.failures("c") == 0


def test_a_mapping_without_a_queue_is_refused_by_the_source() -> None:
    mapping = mq("amqp://h")
    without = ResolvedMapping(**{**_fields(mapping), "settings": SourceSettings()})
    with pytest.raises(ValueError, match="Queues"):
        RabbitMqSource(without)
    with pytest.raises(ValueError, match="Queues"):
        ActiveMqSource(without)


def _fields(mapping: ResolvedMapping) -> dict[str, Any]:
    return {name: getattr(mapping, name) for name in mapping.__dataclass_fields__}
