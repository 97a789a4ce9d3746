"""The MQ sources run by a whole Worker against real brokers: one behavioural suite, two brokers.

:class:`MqBehaviour` holds every test; :class:`TestRabbitMq` and :class:`TestActiveMq` run it
against RabbitMQ (AMQP 0-9-1) and ActiveMQ (STOMP 1.2), each with a small admin helper that
talks to the broker with the plain client library (never through poller) to set queues up,
publish, read dead letters and check that a queue was left empty.

Waits are bounded and say what they waited for: the kit's waits look at what the handler recorded,
dead letters arrive on a consumer.
"The queue is empty" is checked with a sentinel: a message published after the test is consumed
raw, and nothing may come before it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.aws import AwsClients
from poller.config import AwsConfig, parse_config
from poller.errors import SourceError
from poller.runtime.worker import Worker
from poller.sources.mq.endpoints import broker_endpoints, broker_engine
from tests.conftest import BrokerServer
from tests.kit import (
    ACCOUNT,
    REGION,
    ActiveAdmin,
    Admin,
    AsyncLambdaRecorder,
    RabbitAdmin,
    assert_drained,
    logged,
    moto_aws,
    moto_clients,
    records_of,
    wait_until,
    worker_config,
)

pytestmark = pytest.mark.integration


# --- a Lambda-style handler that records every event --------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message of one invocation, broker-neutral."""

    body: str
    redelivered: bool
    raw: dict[str, Any]


class Calls(AsyncLambdaRecorder):
    """The kit's recorder as an ``async`` handler: ``respond(messages)`` decides each answer.

    ``respond`` may raise (a function error), return a value, or await something.
    """

    def __init__(self, respond: Callable[[list[Message]], Any] | None = None) -> None:
        super().__init__(None if respond is None else lambda seen: respond(messages_of(seen.event)))

    @property
    def messages(self) -> list[list[Message]]:
        """The messages of each invocation, in order."""
        return [messages_of(event) for event in self.events]

    async def wait_for(self, condition: Callable[[], bool], *, within: float, what: str) -> None:
        """The kit's wait; on a timeout, the message also says which bodies the handler saw."""
        try:
            await wait_until(condition, within=within, what=what)
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}; saw {self.bodies()}") from None


def messages_of(event: dict[str, Any]) -> list[Message]:
    """The messages of an aws:rmq or aws:mq event, in order."""
    return [
        Message(base64.b64decode(m["data"]).decode(), m["redelivered"], m)
        for m in records_of(event)
    ]


# --- running a mapping ---------------------------------------------------------------------------


def mapping(url: str, queue: str, **fields: Any) -> dict[str, Any]:
    return {
        "UUID": f"mq-{queue}",
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}},
        "Queues": [queue],
        "FunctionTimeout": 10,
        **fields,
    }


def worker(
    config_mapping: dict[str, Any], handler: Any, *, aws_endpoint: str | None = None
) -> Worker:
    config = worker_config(config_mapping, aws=moto_aws(aws_endpoint), queue_wait_seconds=1)
    return Worker(config, handlers={config_mapping["UUID"]: handler})


class Failing(Exception):
    """The handler failed on purpose."""


# --- the suite -----------------------------------------------------------------------------------


class MqBehaviour:
    """Every test of an MQ source; subclasses provide ``broker`` and ``admin``."""

    @pytest.fixture
    def broker(self) -> BrokerServer:
        raise NotImplementedError

    @pytest.fixture
    async def admin(self, broker: BrokerServer) -> AsyncIterator[Admin]:
        raise NotImplementedError
        yield

    async def test_batches_keep_the_queue_order_and_carry_the_aws_shape(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        await admin.create_queue(unique_name)
        bodies = [f"m{i:02d}" for i in range(25)]
        await admin.publish(unique_name, bodies)
        calls = Calls()
        async with worker(mapping(broker.url, unique_name, BatchSize=10), calls):
            await calls.wait_for(lambda: len(calls.bodies()) >= 25, within=20, what="25 messages")
        assert calls.bodies() == bodies
        assert all(1 <= len(batch) <= 10 for batch in calls.messages)
        assert not any(m.redelivered for batch in calls.messages for m in batch)
        self.check_event_shape(calls.events[0], broker.url, unique_name)
        await assert_drained(admin, unique_name)

    def check_event_shape(self, event: dict[str, Any], url: str, queue: str) -> None:
        raise NotImplementedError

    async def test_the_batching_window_starts_at_the_first_message(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        """With a long window, two messages published apart still make one batch."""
        await admin.create_queue(unique_name)
        calls = Calls()
        fields = {"BatchSize": 10, "MaximumBatchingWindowInSeconds": 2}
        async with worker(mapping(broker.url, unique_name, **fields), calls):
            await admin.publish(unique_name, ["first"])
            await anyio.sleep(0.5)  # the scenario: well inside the window the first one opened
            await admin.publish(unique_name, ["second"])
            await calls.wait_for(lambda: len(calls.bodies()) >= 2, within=10, what="2 messages")
        assert [[m.body for m in batch] for batch in calls.messages] == [["first", "second"]]

    async def test_a_failed_batch_comes_back_whole_before_anything_after_it(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        await admin.create_queue(unique_name)
        bodies = [f"m{i}" for i in range(10)]
        await admin.publish(unique_name, bodies)
        failures = 0

        def respond(messages: list[Message]) -> None:
            nonlocal failures
            if messages[0].body == "m0" and failures < 2:
                failures += 1
                raise Failing("first batch fails twice")

        calls = Calls(respond)
        fields = {"BatchSize": 5, "MaximumBatchingWindowInSeconds": 0.2}
        async with worker(mapping(broker.url, unique_name, **fields), calls):
            await calls.wait_for(lambda: "m9" in calls.bodies(), within=20, what="m9")
        batches = [[m.body for m in batch] for batch in calls.messages]
        assert batches == [bodies[:5], bodies[:5], bodies[:5], bodies[5:]]
        assert [m.redelivered for m in calls.messages[0]] == [False] * 5
        assert [m.redelivered for m in calls.messages[1]] == [True] * 5
        # m5..m9 were delivered ahead (prefetch) and went back with the failed batch: the broker
        # marks them redelivered too, although no handler saw them before.
        await assert_drained(admin, unique_name)

    async def test_a_message_that_keeps_failing_is_dead_lettered_after_the_limit(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        await admin.create_queue(unique_name)
        await admin.publish(unique_name, ["ok-1", "poison", "ok-2"])

        def respond(messages: list[Message]) -> None:
            if any(m.body == "poison" for m in messages):
                raise Failing("poison")

        calls = Calls(respond)
        fields = {"BatchSize": 1, "MaximumRedeliveries": 2}
        with capture_logs() as logs:
            async with worker(mapping(broker.url, unique_name, **fields), calls):
                await calls.wait_for(lambda: "ok-2" in calls.bodies(), within=20, what="ok-2")
                dead = await admin.consume(admin.dead_letter_queue(unique_name), 1, within=10)
        assert dead == ["poison"]
        # 1 delivery + 2 redeliveries, then the broker's dead-lettering; order kept meanwhile.
        assert calls.bodies() == ["ok-1", "poison", "poison", "poison", "ok-2"]
        assert any(
            entry["event"] == "messages dead-lettered after too many deliveries" for entry in logs
        )
        await assert_drained(admin, unique_name)

    async def test_with_a_destination_a_message_past_the_limit_goes_there_and_is_acked(
        self, broker: BrokerServer, admin: Admin, unique_name: str, moto_endpoint: str
    ) -> None:
        await admin.create_queue(unique_name)
        async with moto_clients(moto_endpoint, "sqs") as (sqs,):
            url = (await sqs.create_queue(QueueName=f"{unique_name}-dest"))["QueueUrl"]
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique_name}-dest"
            await admin.publish(unique_name, ["poison", "after"])

            def respond(messages: list[Message]) -> None:
                if messages[0].body == "poison":
                    raise Failing("poison")

            calls = Calls(respond)
            fields = {
                "BatchSize": 1,
                "MaximumRedeliveries": 1,
                "DestinationConfig": {"OnFailure": {"Destination": arn}},
            }
            async with worker(
                mapping(broker.url, unique_name, **fields), calls, aws_endpoint=moto_endpoint
            ):
                await calls.wait_for(lambda: "after" in calls.bodies(), within=20, what="after")
            response = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
        records = [json.loads(m["Body"]) for m in response.get("Messages", [])]
        assert calls.bodies() == ["poison", "poison", "after"]
        assert len(records) == 1
        record = records[0]
        assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 2
        assert record["responseContext"]["functionError"] == "Unhandled"
        (key,) = [k for k in record if k.endswith("BatchInfo")]
        info = record[key]
        assert info["batchSize"] == 1
        assert [base64.b64decode(m["data"]).decode() for m in info["messages"]] == ["poison"]
        await assert_drained(admin, unique_name)
        await assert_drained(admin, admin.dead_letter_queue(unique_name))

    async def test_a_message_over_the_payload_cap_is_dead_lettered_with_a_log_line(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        await admin.create_queue(unique_name)
        await admin.publish(unique_name, [b"x" * (6 * 1024 * 1024 + 1), "small"])
        calls = Calls()
        with capture_logs() as logs:
            async with worker(mapping(broker.url, unique_name, BatchSize=10), calls):
                await calls.wait_for(lambda: "small" in calls.bodies(), within=20, what="small")
                dead = await admin.consume(admin.dead_letter_queue(unique_name), 1, within=10)
        assert calls.bodies() == ["small"]
        assert dead == ["x" * 50]
        assert any("larger than the invocation payload cap" in e["event"] for e in logs)

    async def test_maximum_concurrency_runs_batches_at_once_and_settles_each_alone(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        """Batches finish out of order and one fails: every message is settled exactly by its
        own batch (no ack of a neighbour's delivery), and the failed one comes back."""
        await admin.create_queue(unique_name)
        bodies = [f"m{i:02d}" for i in range(40)]
        await admin.publish(unique_name, bodies)
        running = 0
        most = 0
        failed_once = False

        async def respond(messages: list[Message]) -> None:
            nonlocal running, most, failed_once
            running += 1
            most = max(most, running)
            try:
                # Later batches finish first: acks arrive out of delivery order.
                await anyio.sleep(0.2 if messages[0].body < "m10" else 0.05)
                if messages[0].body == "m05" and not failed_once:
                    failed_once = True
                    raise Failing("once")
            finally:
                running -= 1

        calls = Calls(respond)
        fields = {
            "BatchSize": 5,
            "MaximumBatchingWindowInSeconds": 0.1,
            "ScalingConfig": {"MaximumConcurrency": 3},
        }
        async with worker(mapping(broker.url, unique_name, **fields), calls):
            await calls.wait_for(
                lambda: set(calls.bodies()) == set(bodies) and calls.bodies().count("m05") == 2,
                within=30,
                what="every message, m05 twice",
            )
        assert most > 1
        handed = calls.bodies()
        failed = next(b for b in calls.messages if b[0].body == "m05")
        twice = {m.body for m in failed}
        assert {body: handed.count(body) for body in bodies} == {
            body: 2 if body in twice else 1 for body in bodies
        }
        await assert_drained(admin, unique_name)

    async def test_a_broker_restart_mid_batch_loses_nothing_and_hands_nothing_twice(
        self, broker: BrokerServer, admin: Admin, unique_name: str
    ) -> None:
        """The broker restarts while a batch is in the handler: its ack cannot reach the broker,
        so the batch is delivered again; idempotency acks it without handing it over again."""
        if not broker.restartable:
            pytest.skip("an external broker cannot be restarted by the tests")
        await admin.create_queue(unique_name)
        bodies = [f"m{i:02d}" for i in range(20)]
        await admin.publish(unique_name, bodies)
        in_handler = anyio.Event()
        restarted = anyio.Event()

        async def respond(messages: list[Message]) -> None:
            if messages[0].body == "m05":
                in_handler.set()
                await restarted.wait()

        calls = Calls(respond)
        fields = {"BatchSize": 5, "Idempotency": True, "FunctionTimeout": 60}
        with capture_logs() as logs:
            async with worker(mapping(broker.url, unique_name, **fields), calls) as running:
                with anyio.fail_after(20):
                    await in_handler.wait()
                await anyio.to_thread.run_sync(broker.restart)
                restarted.set()
                await calls.wait_for(lambda: "m19" in calls.bodies(), within=60, what="m19")
                counters = running.status()[f"mq-{unique_name}"]["metrics"]
        assert calls.bodies() == bodies
        events = [entry["event"] for entry in logs]
        assert "messages could not be deleted; they will be delivered again" in events
        # The batch whose ack was lost came back and was acked without a second hand-over. (A
        # broker stopped right after an earlier ack may hand some of that batch out again too.)
        assert counters["IdempotentSkippedEventCount"] >= 5
        await assert_drained(admin, unique_name)


class TestRabbitMq(MqBehaviour):
    @pytest.fixture
    def broker(self, rabbitmq_broker: BrokerServer) -> BrokerServer:
        return rabbitmq_broker

    @pytest.fixture
    async def admin(self, broker: BrokerServer) -> AsyncIterator[Admin]:
        async with RabbitAdmin(broker.url) as admin:
            yield admin

    def check_event_shape(self, event: dict[str, Any], url: str, queue: str) -> None:
        assert event["eventSource"] == "aws:rmq"
        assert event["eventSourceArn"] == f"{url}/{queue}"
        assert list(event["rmqMessagesByQueue"]) == [f"{queue}::/"]
        message = event["rmqMessagesByQueue"][f"{queue}::/"][0]
        assert list(message) == ["basicProperties", "redelivered", "data"]
        properties = message["basicProperties"]
        assert list(properties) == [
            "contentType", "contentEncoding", "headers", "deliveryMode", "priority",
            "correlationId", "replyTo", "expiration", "messageId", "timestamp", "type",
            "userId", "appId", "clusterId", "bodySize",
        ]  # fmt: skip
        assert properties["contentType"] == "text/plain"
        assert properties["deliveryMode"] == 2
        assert properties["bodySize"] == 3
        assert base64.b64decode(message["data"]) == b"m00"


class TestActiveMq(MqBehaviour):
    @pytest.fixture
    def broker(self, activemq_broker: BrokerServer) -> BrokerServer:
        return activemq_broker

    @pytest.fixture
    async def admin(self, broker: BrokerServer) -> AsyncIterator[Admin]:
        async with ActiveAdmin(broker.url) as admin:
            yield admin

    def check_event_shape(self, event: dict[str, Any], url: str, queue: str) -> None:
        assert event["eventSource"] == "aws:mq"
        assert event["eventSourceArn"] == f"{url}/{queue}"
        message = event["messages"][0]
        assert list(message)[:10] == [
            "messageID", "messageType", "deliveryMode", "replyTo", "type", "expiration",
            "priority", "correlationId", "redelivered", "destination",
        ]  # fmt: skip
        assert message["messageID"].startswith("ID:")
        assert message["messageType"] == "jms/text-message"
        assert message["deliveryMode"] == 2
        assert message["destination"] == {"physicalName": queue}
        assert base64.b64decode(message["data"]) == b"m00"
        assert isinstance(message["timestamp"], int)
        assert message["brokerOutTime"] >= message["timestamp"]


# --- brokers named by ARN, credentials from Secrets Manager --------------------------------------


async def test_an_amazon_mq_broker_arn_is_resolved_with_describe_broker(
    moto_endpoint: str, unique_name: str
) -> None:
    """EngineType picks the source; the endpoints of the right protocol are the ones used."""
    async with moto_clients(moto_endpoint, "mq") as (client,):
        arns = {}
        for engine, version in (("RABBITMQ", "3.10"), ("ACTIVEMQ", "5.17")):
            created = await client.create_broker(
                BrokerName=f"{unique_name}-{engine.lower()}",
                EngineType=engine,
                EngineVersion=version,
                HostInstanceType="mq.t3.micro",
                DeploymentMode="SINGLE_INSTANCE",
                PubliclyAccessible=False,
                AutoMinorVersionUpgrade=False,
                Users=[{"Username": "admin", "Password": "a-long-password"}],
            )
            arns[engine] = created["BrokerArn"]
    aws = AwsConfig(
        region=REGION,
        endpoint_url=moto_endpoint,
        access_key_id="testing",
        secret_access_key="testing",
    )
    clients = AwsClients(aws)
    try:
        for engine, schemes in (("RABBITMQ", ("amqp", "amqps")), ("ACTIVEMQ", ("stomp+ssl",))):
            resolved = parse_config(
                {"mappings": [{"EventSourceArn": arns[engine], "Queues": ["orders"]}]}
            ).mappings[0]
            assert await broker_engine(resolved.resolved(), clients) == engine
            endpoints = await broker_endpoints(
                resolved.resolved(), clients, engine=engine, schemes=schemes
            )
            assert [e.scheme for e in endpoints] == [schemes[-1]]
            assert all(e.tls for e in endpoints)
        wrong = parse_config(
            {"mappings": [{"EventSourceArn": arns["ACTIVEMQ"], "Queues": ["orders"]}]}
        ).mappings[0]
        with pytest.raises(SourceError, match="runs ACTIVEMQ, not RABBITMQ"):
            await broker_endpoints(wrong.resolved(), clients, engine="RABBITMQ", schemes=("amqps",))
    finally:
        await clients.aclose()


async def test_basic_auth_from_secrets_manager_and_no_password_in_the_logs(
    rabbitmq_broker: BrokerServer, moto_endpoint: str, unique_name: str
) -> None:
    """The right secret connects; a wrong one is refused with a message naming the source,
    and the password shows up in no log line."""
    async with RabbitAdmin(rabbitmq_broker.url) as admin:
        await admin.create_queue(unique_name)
        await admin.publish(unique_name, ["hello"])
    async with moto_clients(moto_endpoint, "secretsmanager") as (sm,):
        good = await sm.create_secret(
            Name=f"{unique_name}-good",
            SecretString=json.dumps({"username": "guest", "password": "guest"}),
        )
        bad = await sm.create_secret(
            Name=f"{unique_name}-bad",
            SecretString=json.dumps({"username": "guest", "password": "s3cret-Wrong-pw"}),
        )

    def with_secret(arn: str) -> dict[str, Any]:
        fields = {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": arn}]}
        return mapping(rabbitmq_broker.url, unique_name, **fields)

    refused = worker(with_secret(bad["ARN"]), Calls(), aws_endpoint=moto_endpoint)
    with capture_logs() as logs:
        async with refused:
            await wait_until(
                lambda: bool(logged(logs, event="cannot read the queue")),
                within=10,
                what="a connection error logged",
            )
    errors = logged(logs, event="cannot read the queue")
    assert "ACCESS_REFUSED" in errors[0]["error"] or "Cannot connect" in errors[0]["error"]
    assert unique_name in errors[0]["error"]
    assert "s3cret-Wrong-pw" not in repr(logs)

    calls = Calls()
    async with worker(with_secret(good["ARN"]), calls, aws_endpoint=moto_endpoint):
        await calls.wait_for(lambda: calls.bodies() == ["hello"], within=15, what="hello")


async def test_a_missing_rabbitmq_queue_is_reported_by_name_and_retried(
    rabbitmq_broker: BrokerServer, unique_name: str
) -> None:
    """RabbitMQ can say a queue does not exist (passive declare); the mapping logs it and tries
    again, and starts consuming once the queue is there."""
    calls = Calls()
    with capture_logs() as logs:
        async with worker(mapping(rabbitmq_broker.url, unique_name), calls):
            await wait_until(
                lambda: bool(logged(logs, event="cannot read the queue")),
                within=10,
                what="an error logged for the missing queue",
            )
            async with RabbitAdmin(rabbitmq_broker.url) as admin:
                await admin.create_queue(unique_name)
                await admin.publish(unique_name, ["late"])
            await calls.wait_for(lambda: calls.bodies() == ["late"], within=20, what="late")
    error = next(e for e in logs if e["event"] == "cannot read the queue")["error"]
    assert error.startswith(f"Queue not found: {unique_name} in virtual host '/'")
