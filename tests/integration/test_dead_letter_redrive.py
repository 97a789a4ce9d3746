"""Dead letters moved back to their source queue (``poller redrive`` on queue mappings), on the
moto server (SQS standard and FIFO) and the real RabbitMQ and ActiveMQ brokers."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from poller import Worker
from poller.config import PollerConfig
from poller.recovery.dead_letters import redrive_dead_letters
from tests.conftest import BrokerServer
from tests.integration.test_rabbitmq_and_activemq_sources import (
    Calls,
    Failing,
    Message,
    mapping,
    worker,
)
from tests.kit import (
    ActiveAdmin,
    Admin,
    LambdaRecorder,
    Queue,
    RabbitAdmin,
    Sqs,
    assert_drained,
    moto_aws,
    moto_clients,
    sqs_config,
    sqs_mapping,
    wait_until,
    worker_config,
)

pytestmark = pytest.mark.integration

M = "queue-mapping"


@pytest.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Sqs]:
    async with moto_clients(moto_endpoint, "sqs") as (client,):
        yield Sqs(moto_endpoint, client)


async def redrive(
    config: PollerConfig,
    capsys: pytest.CaptureFixture[str],
    *,
    rate: float = 100.0,
    source: str | None = None,
    max_messages: int | None = None,
    dry_run: bool = False,
) -> tuple[int, str, str]:
    """Run the redrive; exit code, what it printed, what it said on stderr."""
    capsys.readouterr()
    out = io.StringIO()
    code = await redrive_dead_letters(
        config,
        config.mappings[0],
        dead_letter_queue=source,
        rate_per_second=rate,
        max_messages=max_messages,
        dry_run=dry_run,
        out=out,
    )
    return code, out.getvalue(), capsys.readouterr().err


async def queues(sqs: Sqs, name: str, *, fifo: bool = False) -> tuple[Queue, Queue]:
    """A source queue whose RedrivePolicy names a dead-letter queue (one receive)."""
    dlq = await sqs.create_queue(name + "-dlq", fifo=fifo)
    source = await sqs.create_queue(name, fifo=fifo, dead_letter=dlq, max_receive_count=1)
    return source, dlq


async def test_dead_letters_go_back_with_their_attributes_and_are_handled_again(
    sqs: Sqs, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dlq = await queues(sqs, unique_name)
    attributes = {"origin": {"DataType": "String", "StringValue": "checkout"}}
    bodies = ["a", "b", "c"]
    # Put straight on the DLQ: moto keeps a stopped worker's long poll open for up to 20 s, and
    # it would take the moved messages back (to the DLQ again, at its next receive).
    await sqs.send_batches(dlq, bodies, MessageAttributes=attributes)
    config = sqs_config(sqs.endpoint, sqs_mapping(source, uuid=M))
    code, out, err = await redrive(config, capsys)
    assert code == 0, err
    assert "MOVED" in out and out.splitlines()[-1].split() == ["3", "0", "0"]
    assert await sqs.counts(dlq) == (0, 0)
    handler = LambdaRecorder()
    async with Worker(config, handlers={M: handler}):
        await wait_until(lambda: len(handler.bodies()) >= 3, within=30, what="3 messages")
    assert sorted(handler.bodies()) == bodies
    assert {r["messageAttributes"]["origin"]["stringValue"] for r in handler.records()} == {
        "checkout"
    }


async def test_fifo_dead_letters_keep_their_group_and_order(
    sqs: Sqs, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dlq = await queues(sqs, unique_name, fifo=True)
    for n in range(8):  # two groups, interleaved
        await sqs.client.send_message(
            QueueUrl=dlq.url, MessageBody=f"{'ab'[n % 2]}{n}", MessageGroupId="ab"[n % 2]
        )
    config = sqs_config(sqs.endpoint, sqs_mapping(source, uuid=M))
    code, _, err = await redrive(config, capsys)
    assert code == 0, err
    moved = await sqs.drain(source)
    by_group = {
        group: [m["Body"] for m in messages]
        for group, messages in itertools.groupby(
            sorted(moved, key=lambda m: m["Attributes"]["MessageGroupId"]),
            key=lambda m: m["Attributes"]["MessageGroupId"],
        )
    }
    # Received per group in order: the order within each group is what was sent.
    assert {g: b for g, b in by_group.items()} == {
        "a": ["a0", "a2", "a4", "a6"],
        "b": ["b1", "b3", "b5", "b7"],
    }
    assert await sqs.counts(dlq) == (0, 0)


async def test_rate_limit_and_max_messages(
    sqs: Sqs, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dlq = await queues(sqs, unique_name)
    await sqs.send_batches(dlq, [f"m{n}" for n in range(12)])
    config = sqs_config(sqs.endpoint, sqs_mapping(source, uuid=M))
    code, out, err = await redrive(config, capsys, rate=4, max_messages=10)
    assert code == 0, err
    assert out.splitlines()[-1].split() == ["10", "0", "2"]
    moved = await sqs.drain(source)
    assert len(moved) == 10
    sent = sorted(int(m["Attributes"]["SentTimestamp"]) for m in moved)
    # At most 4 a second (one more allowed for the server's clock and the network's jitter).
    busiest = max(sum(1 for t in sent if start <= t < start + 1000) for start in sent)
    assert busiest <= 5, sent
    assert sent[-1] - sent[0] >= 9 / 4 * 1000 * 0.8, sent
    assert await sqs.counts(dlq) == (2, 0)


async def test_dry_run_lists_and_moves_nothing(
    sqs: Sqs, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dlq = await queues(sqs, unique_name)
    await sqs.send_batches(dlq, ["x" * 100, "short"])
    config = sqs_config(sqs.endpoint, sqs_mapping(source, uuid=M))
    code, out, err = await redrive(config, capsys, dry_run=True)
    assert code == 0, err
    assert "x" * 80 + "..." in out and "short" in out and "2 dead letter(s)" in out
    assert await sqs.counts(source) == (0, 0)
    assert (await sqs.counts(dlq))[0] == 2  # visible again at once


async def test_clear_errors(sqs: Sqs, unique_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    plain = await sqs.create_queue(unique_name)
    config = sqs_config(sqs.endpoint, sqs_mapping(plain, uuid=M))
    code, _, err = await redrive(config, capsys)
    assert code == 2 and "no RedrivePolicy" in err and "--from" in err
    code, _, err = await redrive(config, capsys, source=unique_name + "-missing")
    assert code == 2 and "dead-letter queue" in err and "does not exist" in err
    await sqs.client.delete_queue(QueueUrl=plain.url)
    code, _, err = await redrive(config, capsys, source=unique_name + "-missing")
    assert code == 2 and "source queue" in err and "does not exist" in err
    assert "Traceback" not in err


# --- RabbitMQ and ActiveMQ: one suite, two brokers ---------------------------------------------------


class DeadLetterRedriveOnBrokers:
    """A real worker dead-letters failing messages; the redrive puts them back, in order."""

    async def dead_letters(self, broker: BrokerServer, admin: Admin, name: str) -> PollerConfig:
        """Queue ``name`` whose poison messages a worker dead-lettered; the worker's config."""
        await admin.create_queue(name)
        await admin.publish(name, ["ok-1", "poison-1", "poison-2", "ok-2"])

        def respond(messages: list[Message]) -> None:
            if any(m.body.startswith("poison") for m in messages):
                raise Failing("poison")

        calls = Calls(respond)
        fields = {"BatchSize": 1, "MaximumRedeliveries": 0}
        async with worker(mapping(broker.url, name, **fields), calls):
            await calls.wait_for(lambda: "ok-2" in calls.bodies(), within=30, what="ok-2")
        return worker_config(mapping(broker.url, name, **fields), aws=moto_aws())

    async def test_dead_letters_go_back_in_order_after_a_dry_run(
        self,
        broker: BrokerServer,
        admin: Admin,
        unique_name: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        config = await self.dead_letters(broker, admin, unique_name)
        code, out, err = await redrive(config, capsys, dry_run=True)
        assert code == 0, err
        assert "poison-1" in out and "poison-2" in out and "2 dead letter(s)" in out
        code, out, err = await redrive(config, capsys, rate=20)
        assert code == 0, err
        assert out.splitlines()[-1].split()[:2] == ["2", "0"]
        assert await admin.consume(unique_name, 2, within=10) == ["poison-1", "poison-2"]
        await assert_drained(admin, unique_name)
        await assert_drained(admin, admin.dead_letter_queue(unique_name))

    async def test_max_messages_moves_the_first_ones_only(
        self,
        broker: BrokerServer,
        admin: Admin,
        unique_name: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        config = await self.dead_letters(broker, admin, unique_name)
        code, out, err = await redrive(config, capsys, max_messages=1)
        assert code == 0, err
        assert out.splitlines()[-1].split()[:2] == ["1", "0"]
        assert await admin.consume(unique_name, 1, within=10) == ["poison-1"]
        await assert_drained(admin, unique_name)
        dlq = admin.dead_letter_queue(unique_name)
        assert await admin.consume(dlq, 1, within=10) == ["poison-2"]


class TestRabbitMqRedrive(DeadLetterRedriveOnBrokers):
    @pytest.fixture
    def broker(self, rabbitmq_broker: BrokerServer) -> BrokerServer:
        return rabbitmq_broker

    @pytest.fixture
    async def admin(self, broker: BrokerServer) -> AsyncIterator[Admin]:
        async with RabbitAdmin(broker.url) as admin:
            yield admin

    async def test_a_missing_dead_letter_queue_is_named(
        self, broker: BrokerServer, admin: Admin, unique_name: str, capsys: Any
    ) -> None:
        await admin.create_queue(unique_name)
        config = worker_config(mapping(broker.url, unique_name), aws=moto_aws())
        code, _, err = await redrive(config, capsys, source=unique_name + ".nowhere")
        assert code == 2 and "dead-letter queue" in err and "does not exist" in err


class TestActiveMqRedrive(DeadLetterRedriveOnBrokers):
    @pytest.fixture
    def broker(self, activemq_broker: BrokerServer) -> BrokerServer:
        return activemq_broker

    @pytest.fixture
    async def admin(self, broker: BrokerServer) -> AsyncIterator[Admin]:
        async with ActiveAdmin(broker.url) as admin:
            yield admin
