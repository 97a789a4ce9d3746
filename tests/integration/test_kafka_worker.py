"""Kafka mappings run by a whole Worker against the real Kafka-protocol broker (tansu).

Each test creates its own topic and consumer group, produces records, runs a Worker with a
Lambda-style handler and checks what was handed over, what was committed to the group and what
reached the on-failure destinations.
"""

from __future__ import annotations

import base64

import anyio
import pytest

from poller.runtime.worker import Worker
from tests.conformance.kinesis_helpers import wait_until
from tests.integration.kafka_helpers import (
    Handed,
    committed,
    create_topic,
    kafka_config,
    kafka_mapping,
    produce,
)

pytestmark = pytest.mark.integration

WAIT = 20.0


async def test_records_are_handed_in_order_per_partition_and_committed(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 4)
    records = [(i % 4, f"v{i}".encode(), f"k{i}".encode()) for i in range(80)]
    await produce(kafka_bootstrap, topic, records, headers=[("h", b"x")])
    handed = Handed()
    config = kafka_config(kafka_mapping(kafka_bootstrap, topic, unique_name, BatchSize=7))
    async with Worker(config, handlers={unique_name: handed}):
        await wait_until(lambda: len(handed.records()) >= 80, within=WAIT, what="80 records")
        offsets = await _wait_committed(
            kafka_bootstrap, unique_name, topic, {p: 20 for p in range(4)}
        )
    assert handed.offsets_by_partition() == {p: list(range(20)) for p in range(4)}
    event = handed.events[0]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == kafka_bootstrap
    assert "eventSourceArn" not in event
    ((key, batch),) = event["records"].items()
    assert len(batch) <= 7
    first = batch[0]
    assert key == f"{topic}-{first['partition']}"
    assert set(first) == {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
        "key",
        "value",
        "headers",
    }
    assert first["timestampType"] == "CREATE_TIME"
    number = first["partition"] + 4 * first["offset"]
    assert base64.b64decode(first["value"]) == f"v{number}".encode()
    assert base64.b64decode(first["key"]) == f"k{number}".encode()
    assert first["headers"] == [{"h": [120]}]
    assert offsets == {p: 20 for p in range(4)}


async def _wait_committed(
    bootstrap: str, group: str, topic: str, wanted: dict[int, int]
) -> dict[int, int]:
    found: dict[int, int] = {}
    with anyio.move_on_after(WAIT):
        while found != wanted:
            found = await committed(bootstrap, group, topic, len(wanted))
            if found != wanted:
                await anyio.sleep(0.2)
    return found
