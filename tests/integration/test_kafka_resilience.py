"""Kafka mappings when things go wrong: a crash between success and commit (idempotency), the broker
going away and coming back, and a record over the 6 MB payload cap.

The broker-loss test runs its own tansu whose storage is a bucket on the moto server, so the
broker can be stopped and started again on the same port without losing topics, records or the
group's committed offsets.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.runtime.worker import Worker
from poller.sources.kafka.connection import KafkaConnection
from poller.sources.kafka.source import KafkaOptions, KafkaSource
from tests.conftest import _servers_module
from tests.integration.kafka_helpers import (
    Handed,
    committed,
    create_topic,
    kafka_config,
    kafka_mapping,
    produce,
    wait_committed,
)
from tests.kit import moto_clients, wait_until

pytestmark = pytest.mark.integration

WAIT = 30.0
GROUP_OPTIONS = KafkaOptions(
    session_timeout_ms=2000, heartbeat_interval_ms=300, rebalance_timeout_ms=2000
)


class LosingCommits(KafkaSource):
    """A Kafka source whose commits never land: the worker dies after success, before commit."""

    async def commit_offset(self, partition: str, next_offset: int) -> bool:
        return False


async def test_idempotency_skips_successes_whose_commit_never_landed(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 2)
    await produce(kafka_bootstrap, topic, [(i % 2, f"v{i}".encode(), None) for i in range(10)])
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, Idempotency=True)
    config = kafka_config(mapping, store=f"sqlite:///{tmp_path / 'state.db'}")
    first = Handed()
    resolved = config.mappings[0].resolved()
    source = LosingCommits(resolved, KafkaConnection((kafka_bootstrap,)), GROUP_OPTIONS)
    try:
        async with Worker(
            config, handlers={unique_name: first}, sources={unique_name: source.opened()}
        ):
            await wait_until(lambda: len(first.records()) >= 10, within=WAIT, what="10 records")
    finally:
        await source.aclose()
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {}
    second = Handed()
    async with Worker(config, handlers={unique_name: second}):
        offsets = await wait_committed(kafka_bootstrap, unique_name, topic, {0: 5, 1: 5})
    assert offsets == {0: 5, 1: 5}
    assert second.records() == [], "records that succeeded before the crash were handed again"


@pytest.fixture
async def restartable_kafka(moto_endpoint: str) -> AsyncIterator[Any]:
    """A tansu of its own, stored in a moto S3 bucket: ``.restart()`` keeps its data and port."""
    servers = _servers_module()
    bucket = f"tansu-{uuid.uuid4().hex[:12]}"
    async with moto_clients(moto_endpoint, "s3") as (s3,):
        await s3.create_bucket(Bucket=bucket)
    name = f"kafka-{bucket}"

    class Broker:
        server = servers.start_kafka(
            name=name, storage=f"s3://{bucket}/", s3_endpoint=moto_endpoint
        )

        def stop(self) -> None:
            servers.stop(self.server, forget=False)

        def start(self) -> None:
            port = int(self.server.endpoint.rsplit(":", 1)[1])
            self.server = servers.start_kafka(
                name=name, port=port, storage=f"s3://{bucket}/", s3_endpoint=moto_endpoint
            )

    broker = Broker()
    try:
        yield broker
    finally:
        servers.stop(broker.server)


async def test_broker_loss_reconnects_and_skips_nothing(
    restartable_kafka: Any, unique_name: str
) -> None:
    bootstrap = restartable_kafka.server.endpoint
    topic = await create_topic(bootstrap, unique_name, 2)
    await produce(bootstrap, topic, [(i % 2, f"a{i}".encode(), None) for i in range(10)])
    handed = Handed()
    mapping = kafka_mapping(bootstrap, topic, unique_name)
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}) as worker:
        assert await wait_committed(bootstrap, unique_name, topic, {0: 5, 1: 5}) == {0: 5, 1: 5}
        restartable_kafka.stop()
        restartable_kafka.start()
        await produce(bootstrap, topic, [(i % 2, f"b{i}".encode(), None) for i in range(10)])
        offsets = await wait_committed(bootstrap, unique_name, topic, {0: 10, 1: 10}, within=60)
        status = worker.status()[unique_name]
        assert set(status["partitions"]) == {f"{topic}-0", f"{topic}-1"}, status
    assert offsets == {0: 10, 1: 10}
    for partition, handed_offsets in handed.offsets_by_partition().items():
        first_seen = list(dict.fromkeys(handed_offsets))
        assert first_seen == list(range(10)), f"partition {partition}: {handed_offsets}"


async def test_a_record_over_the_payload_cap_goes_to_the_destination_unhanded(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    dead_letters = await create_topic(kafka_bootstrap, f"{unique_name}-dlt", 1)
    big = b"x" * (6 * 1024 * 1024 + 1)
    await _produce_large(kafka_bootstrap, topic, [b"small-0", big, b"small-2"])
    handed = Handed()
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        BatchSize=10,
        DestinationConfig={"OnFailure": {"Destination": f"kafka://{dead_letters}"}},
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        offsets = await wait_committed(kafka_bootstrap, unique_name, topic, {0: 3})
    assert offsets == {0: 3}
    values = [base64.b64decode(r["value"]) for r in handed.records()]
    assert values == [b"small-0", b"small-2"]
    sent = await _read_one(kafka_bootstrap, dead_letters)
    assert len(sent.value) == len(big)
    failure = json.loads(dict(sent.headers)["poller-on-failure"])
    assert failure["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    # Never handed to the function: no response context (as for RecordAgeExceeded).
    assert failure.get("responseContext") is None
    assert failure["KafkaBatchInfo"]["recordsInfo"][f"{topic}-0"]["firstRecordOffset"] == "1"


async def _produce_large(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, partition=0)
    finally:
        await producer.stop()


async def _read_one(bootstrap: str, topic: str) -> Any:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        with anyio.fail_after(WAIT):
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    return messages[0]
    finally:
        await consumer.stop()


async def test_an_unreachable_cluster_is_logged_and_retried_not_fatal(unique_name: str) -> None:
    mapping = kafka_mapping("127.0.0.1:1", unique_name, unique_name)
    with capture_logs() as logs:
        async with Worker(kafka_config(mapping), handlers={unique_name: Handed()}) as worker:
            await wait_until(
                lambda: any(e["event"] == "cannot list partitions" for e in logs),
                within=WAIT,
                what="the listing error",
            )
            assert worker.status()[unique_name]["metrics"]["PollingErrorCount"] >= 1
    error = next(e for e in logs if e["event"] == "cannot list partitions")
    assert "cannot reach Kafka at 127.0.0.1:1" in error["error"]
    assert error["retry_in"] > 0
