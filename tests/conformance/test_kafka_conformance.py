"""Kafka event source mappings behave as AWS was recorded to behave (SPEC.md), against the real
Kafka-protocol broker. Each test names the SPEC item it checks.

Old records (for MaximumRecordAgeInSeconds) are produced with an old CREATE_TIME timestamp, which
Kafka lets a producer set; nothing here is faked.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from poller.runtime.worker import Worker
from poller.sources.kafka.destination import FAILURE_HEADER
from tests.integration.kafka_helpers import (
    Handed,
    create_topic,
    kafka_config,
    kafka_mapping,
    produce,
    read_all,
    wait_committed,
)
from tests.kit import wait_until

pytestmark = pytest.mark.integration

WAIT = 20.0


async def test_spec_1_n_retries_mean_n_plus_1_invocations_then_one_failure_record(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    dead_letters = await create_topic(kafka_bootstrap, f"{unique_name}-dlt", 1)
    await produce(kafka_bootstrap, topic, [(0, b"fails", None)])

    def always_fail(event: dict[str, Any]) -> Any:
        raise RuntimeError("always")

    handed = Handed(always_fail)
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        MaximumRetryAttempts=2,
        RetryBackoffSeconds=0.01,
        DestinationConfig={"OnFailure": {"Destination": f"kafka://{dead_letters}"}},
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        assert await wait_committed(kafka_bootstrap, unique_name, topic, {0: 1}) == {0: 1}
    assert len(handed.events) == 3
    (sent,) = await read_all(kafka_bootstrap, dead_letters, 1)
    failure = json.loads(dict(sent.headers)[FAILURE_HEADER])
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"


async def test_spec_3_partial_failure_retries_from_the_failed_record_only(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    await produce(kafka_bootstrap, topic, [(0, f"r{i}".encode(), None) for i in range(6)])

    def fail_record_5(event: dict[str, Any]) -> Any:
        (records,) = event["records"].values()
        bad = [r for r in records if r["offset"] == 5]
        key = f"{records[0]['topic']}-{records[0]['partition']}"
        return {
            "batchItemFailures": [
                {"itemIdentifier": {"partition": key, "offset": r["offset"]}} for r in bad
            ]
        }

    handed = Handed(fail_record_5)
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        BatchSize=3,
        MaximumRetryAttempts=3,
        RetryBackoffSeconds=0.01,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        assert await wait_committed(kafka_bootstrap, unique_name, topic, {0: 6}) == {0: 6}
    offsets = handed.offsets_by_partition()[0]
    # Records 0-4 once; record 5 alone, N + 1 = 4 times; then discarded (no destination).
    assert offsets == [0, 1, 2, 3, 4, 5, 5, 5, 5]


async def test_spec_6_batches_of_one_partition_never_overlap(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    await produce(kafka_bootstrap, topic, [(0, f"r{i}".encode(), None) for i in range(4)])
    spans: list[tuple[float, float]] = []

    def slow(event: dict[str, Any]) -> Any:
        start = time.monotonic()
        time.sleep(0.3)  # the function's own work, not a synchronisation
        spans.append((start, time.monotonic()))
        return None

    handed = Handed(slow)
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, BatchSize=2)
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        await wait_until(lambda: len(spans) >= 2, within=WAIT, what="two batches")
    assert spans[0][1] <= spans[1][0], "a partition's second batch started before the first ended"


async def test_spec_9_records_older_than_the_maximum_age_are_discarded_uninvoked(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    dead_letters = await create_topic(kafka_bootstrap, f"{unique_name}-dlt", 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        an_hour_ago = int((time.time() - 3600) * 1000)
        await producer.send_and_wait(topic, b"old", partition=0, timestamp_ms=an_hour_ago)
        await producer.send_and_wait(topic, b"fresh", partition=0)
    finally:
        await producer.stop()
    handed = Handed()
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        MaximumRecordAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": f"kafka://{dead_letters}"}},
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        assert await wait_committed(kafka_bootstrap, unique_name, topic, {0: 2}) == {0: 2}
    assert [base64.b64decode(r["value"]) for r in handed.records()] == [b"fresh"]
    (sent,) = await read_all(kafka_bootstrap, dead_letters, 1)
    failure = json.loads(dict(sent.headers)[FAILURE_HEADER])
    assert sent.value == b"old"
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert failure.get("responseContext") is None
