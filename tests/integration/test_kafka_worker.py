"""Kafka mappings run by a whole Worker against the real Kafka-protocol broker (tansu).

Each test creates its own topic and consumer group, produces records, runs a Worker with a
Lambda-style handler and checks what was handed over, what was committed to the group and what
reached the on-failure destinations.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.config import HttpConfig
from poller.runtime.worker import Worker
from poller.sources.kafka.destination import FAILURE_HEADER
from tests.integration.kafka_helpers import (
    Handed,
    committed,
    create_topic,
    kafka_config,
    kafka_mapping,
    produce,
    read_all,
    wait_committed,
)
from tests.kit import Sqs, moto_aws, moto_clients, scrape, wait_until

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
    config = config.model_copy(update={"http": HttpConfig(listen="127.0.0.1:0")})
    async with Worker(config, handlers={unique_name: handed}) as worker:
        await wait_until(lambda: len(handed.records()) >= 80, within=WAIT, what="80 records")
        offsets = await wait_committed(
            kafka_bootstrap, unique_name, topic, {p: 20 for p in range(4)}
        )
        metrics = await scrape(worker.http_port)
    # What /metrics said, as Prometheus reads it: every record once, committed, no lag left.
    assert metrics["poller_polled_events_total"] == 80
    assert metrics["poller_invoked_events_total"] == 80
    assert metrics["poller_failed_invoke_events_total"] == 0
    assert metrics["poller_committed_events_total"] == 80
    assert metrics["poller_offset_lag"] == 0
    assert metrics["poller_partitions_owned"] == 4
    assert "poller_iterator_age_milliseconds" not in metrics  # streams of shards only
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


# --- failures: blocking, order, retries, destinations ----------------------------------------------


async def test_a_failing_partition_blocks_while_the_others_go_on(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 2)
    await produce(kafka_bootstrap, topic, [(i % 2, f"v{i}".encode(), None) for i in range(20)])
    failing = {"on": True}

    def respond(event: dict[str, Any]) -> Any:
        (records,) = event["records"].values()
        if records[0]["partition"] == 0 and failing["on"]:
            raise RuntimeError("partition 0 is down")
        return None

    handed = Handed(respond)
    mapping = kafka_mapping(
        kafka_bootstrap, topic, unique_name, BatchSize=3, RetryBackoffSeconds=0.05
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        offsets = await wait_committed(kafka_bootstrap, unique_name, topic, {1: 10}, partitions=2)
        assert offsets.get(1) == 10, "partition 1 should finish while partition 0 fails"
        await wait_until(
            lambda: handed.offsets_by_partition().get(0, []).count(0) >= 3,
            within=WAIT,
            what="partition 0 retried",
        )
        # Blocked: partition 0 was only ever handed its first batch, and nothing was committed.
        assert set(handed.offsets_by_partition()[0]) == {0, 1, 2}
        assert 0 not in await committed(kafka_bootstrap, unique_name, topic, 2)
        failing["on"] = False
        offsets = await wait_committed(
            kafka_bootstrap, unique_name, topic, {0: 10, 1: 10}, partitions=2
        )
    assert offsets == {0: 10, 1: 10}
    first_success = handed.offsets_by_partition()[0]
    assert sorted(set(first_success)) == list(range(10))
    assert first_success[-7:] == list(range(3, 10)), "partition 0 went on in order after recovery"


async def test_order_per_partition_holds_under_random_partial_and_whole_failures(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 3)
    await produce(kafka_bootstrap, topic, [(i % 3, f"v{i}".encode(), None) for i in range(150)])
    chooser = random.Random(7)
    succeeded: dict[int, list[int]] = {}
    lock = threading.Lock()

    def respond(event: dict[str, Any]) -> Any:
        (records,) = event["records"].values()
        draw = chooser.random()
        if draw < 0.2:
            raise RuntimeError("whole batch fails")
        failed_at = len(records)
        if draw < 0.5 and len(records) > 1:
            failed_at = chooser.randrange(1, len(records))
        with lock:
            for record in records[:failed_at]:
                succeeded.setdefault(record["partition"], []).append(record["offset"])
        if failed_at < len(records):
            key = f"{records[failed_at]['topic']}-{records[failed_at]['partition']}"
            return {
                "batchItemFailures": [
                    {"itemIdentifier": {"partition": key, "offset": r["offset"]}}
                    for r in records[failed_at:]
                ]
            }
        return None

    handed = Handed(respond)
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        BatchSize=6,
        RetryBackoffSeconds=0.01,
        RetryBackoffMaxSeconds=0.02,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        offsets = await wait_committed(
            kafka_bootstrap, unique_name, topic, {p: 50 for p in range(3)}, partitions=3
        )
    assert offsets == {p: 50 for p in range(3)}
    # Each record succeeded exactly once, in offset order, per partition.
    assert succeeded == {p: list(range(50)) for p in range(3)}


@pytest.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Sqs]:
    async with moto_clients(moto_endpoint, "sqs") as (client,):
        yield Sqs(moto_endpoint, client)


async def test_exhausted_batch_goes_to_sqs_with_kafka_batch_info_then_is_committed_past(
    kafka_bootstrap: str, sqs: Sqs, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    values = [b"ok-0", b"poison", b"ok-2"]
    await produce(kafka_bootstrap, topic, [(0, v, b"key") for v in values])
    dlq = await sqs.create_queue(unique_name, visibility_timeout=None)

    def respond(event: dict[str, Any]) -> Any:
        (records,) = event["records"].values()
        if any(base64.b64decode(r["value"]) == b"poison" for r in records):
            raise RuntimeError("cannot take poison")
        return None

    handed = Handed(respond)
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        BatchSize=1,
        MaximumRetryAttempts=1,
        RetryBackoffSeconds=0.01,
        DestinationConfig={"OnFailure": {"Destination": dlq.arn}},
    )
    config = kafka_config(mapping, aws=moto_aws(sqs.endpoint))
    async with Worker(config, handlers={unique_name: handed}):
        offsets = await wait_committed(kafka_bootstrap, unique_name, topic, {0: 3}, partitions=1)
        messages = await sqs.receive(dlq, 1, within=WAIT)
    assert offsets == {0: 3}
    assert handed.offsets_by_partition()[0] == [0, 1, 1, 2]
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responseContext"]["functionError"] == "Unhandled"
    info = record["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["bootstrapServers"] == kafka_bootstrap
    assert info["payloadSize"] > 0
    assert set(info["recordsInfo"]) == {f"{topic}-0"}
    partition_info = info["recordsInfo"][f"{topic}-0"]
    assert partition_info["firstRecordOffset"] == partition_info["lastRecordOffset"] == "1"
    assert partition_info["firstRecordTimestamp"].endswith("Z")


async def test_kafka_destination_receives_the_records_themselves_with_the_failure(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    dead_letters = await create_topic(kafka_bootstrap, f"{unique_name}-dlt", 1)
    await produce(
        kafka_bootstrap, topic, [(0, b"poison", b"k1"), (0, b"fine", b"k2")], headers=[("h", b"1")]
    )

    def respond(event: dict[str, Any]) -> Any:
        (records,) = event["records"].values()
        if base64.b64decode(records[0]["value"]) == b"poison":
            raise RuntimeError("poison")
        return None

    handed = Handed(respond)
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        BatchSize=1,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": f"kafka://{dead_letters}"}},
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        offsets = await wait_committed(kafka_bootstrap, unique_name, topic, {0: 2}, partitions=1)
    assert offsets == {0: 2}
    (sent,) = await read_all(kafka_bootstrap, dead_letters, 1)
    assert (sent.value, sent.key) == (b"poison", b"k1")
    headers = dict(sent.headers)
    assert headers["h"] == b"1"
    failure = json.loads(headers[FAILURE_HEADER])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["KafkaBatchInfo"]["recordsInfo"][f"{topic}-0"]["firstRecordOffset"] == "0"


# --- restarts ----------------------------------------------------------------------------------------


async def test_a_restart_resumes_from_the_committed_offsets(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 2)
    await produce(kafka_bootstrap, topic, [(i % 2, f"a{i}".encode(), None) for i in range(10)])
    first = Handed()
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name)
    async with Worker(kafka_config(mapping), handlers={unique_name: first}):
        await wait_committed(kafka_bootstrap, unique_name, topic, {0: 5, 1: 5}, partitions=2)
    await produce(kafka_bootstrap, topic, [(i % 2, f"b{i}".encode(), None) for i in range(10)])
    second = Handed()
    # StartingPosition applies only without a committed offset: LATEST here changes nothing.
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, StartingPosition="LATEST")
    async with Worker(kafka_config(mapping), handlers={unique_name: second}):
        offsets = await wait_committed(
            kafka_bootstrap, unique_name, topic, {0: 10, 1: 10}, partitions=2
        )
    assert offsets == {0: 10, 1: 10}
    assert second.offsets_by_partition() == {0: list(range(5, 10)), 1: list(range(5, 10))}


async def test_latest_start_keeps_records_written_while_the_worker_was_down(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    await produce(kafka_bootstrap, topic, [(0, b"before", None)])
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, StartingPosition="LATEST")
    first = Handed()
    async with Worker(kafka_config(mapping), handlers={unique_name: first}):
        # The partition opened at LATEST: its first offset is committed at once.
        await wait_committed(kafka_bootstrap, unique_name, topic, {0: 1}, partitions=1)
    assert first.records() == []
    await produce(kafka_bootstrap, topic, [(0, b"while-down", None)])
    second = Handed()
    async with Worker(kafka_config(mapping), handlers={unique_name: second}):
        await wait_until(lambda: len(second.records()) >= 1, within=WAIT, what="one record")
    assert [base64.b64decode(r["value"]) for r in second.records()] == [b"while-down"]


async def test_at_timestamp_starts_at_the_first_record_at_or_after_the_time(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    await produce(kafka_bootstrap, topic, [(0, b"old", None)])
    # The broker stamps records with its own clock (same machine): step past the old record.
    moment = time.time() + 0.05
    await anyio.sleep(0.1)
    await produce(kafka_bootstrap, topic, [(0, b"new", None)])
    handed = Handed()
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp=moment,
    )
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        await wait_until(lambda: len(handed.records()) >= 1, within=WAIT, what="one record")
        await wait_committed(kafka_bootstrap, unique_name, topic, {0: 2}, partitions=1)
    assert [base64.b64decode(r["value"]) for r in handed.records()] == [b"new"]


# --- helpers -----------------------------------------------------------------------------------------


# --- rebalances -------------------------------------------------------------------------------------


async def test_a_batch_in_flight_at_revocation_finishes_and_is_committed_before_handover(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 2)
    await produce(kafka_bootstrap, topic, [(i % 2, f"v{i}".encode(), None) for i in range(8)])
    started = threading.Event()
    release = threading.Event()

    def slow_first_batch(event: dict[str, Any]) -> Any:
        started.set()
        release.wait(timeout=WAIT)  # holds the batch until the rebalance has begun
        return None

    first = Handed(slow_first_batch)
    second = Handed()
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, BatchSize=4)
    async with Worker(kafka_config(mapping), handlers={unique_name: first}):
        await wait_until(started.is_set, within=WAIT, what="the first batch started")
        async with Worker(kafka_config(mapping), handlers={unique_name: second}):
            # The second member's join revokes the first's partitions while a batch is in flight.
            await anyio.sleep(0.5)
            release.set()
            offsets = await wait_committed(
                kafka_bootstrap, unique_name, topic, {0: 4, 1: 4}, partitions=2
            )
    assert offsets == {0: 4, 1: 4}
    handed_twice = set(_pairs(first)) & set(_pairs(second))
    assert not handed_twice, f"records handed by both members: {sorted(handed_twice)}"
    assert set(_pairs(first)) | set(_pairs(second)) == {(p, o) for p in (0, 1) for o in range(4)}


async def test_a_batch_outliving_the_revoke_grace_is_abandoned_not_committed(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    await produce(kafka_bootstrap, topic, [(0, f"v{i}".encode(), None) for i in range(3)])
    started = threading.Event()
    release = threading.Event()

    def stuck(event: dict[str, Any]) -> Any:
        started.set()
        release.wait(timeout=WAIT)
        return None

    first = Handed(stuck)
    second = Handed()
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, BatchSize=10)
    short_grace = kafka_config(mapping)
    short_grace = short_grace.model_copy(
        update={"worker": short_grace.worker.model_copy(update={"kafka_revoke_grace_seconds": 0.5})}
    )
    with capture_logs() as logs:
        async with Worker(short_grace, handlers={unique_name: first}):
            await wait_until(started.is_set, within=WAIT, what="the first batch started")
            async with Worker(kafka_config(mapping), handlers={unique_name: second}):
                await wait_until(
                    lambda: any("revoke grace" in entry["event"] for entry in logs),
                    within=WAIT,
                    what="the revoke grace to run out",
                )
                # Nothing of the stuck batch was committed when the partition was handed on.
                assert await committed(kafka_bootstrap, unique_name, topic, 1) == {}
                release.set()
                offsets = await wait_committed(
                    kafka_bootstrap, unique_name, topic, {0: 3}, partitions=1
                )
    assert offsets == {0: 3}
    assert set(_offsets(first) + _offsets(second)) == {0, 1, 2}


def _offsets(handed: Handed) -> list[int]:
    return handed.offsets_by_partition().get(0, [])


def _pairs(handed: Handed) -> list[tuple[int, int]]:
    return [(r["partition"], r["offset"]) for r in handed.records()]


async def test_stopping_right_after_the_last_batch_still_commits_it(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, 2)
    await produce(kafka_bootstrap, topic, [(i % 2, f"v{i}".encode(), None) for i in range(40)])
    handed = Handed()
    mapping = kafka_mapping(kafka_bootstrap, topic, unique_name, BatchSize=5)
    async with Worker(kafka_config(mapping), handlers={unique_name: handed}):
        await wait_until(lambda: len(handed.records()) >= 40, within=WAIT, what="40 records")
    # Commits are batched in the background; stopping flushes what the last batches settled.
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 20, 1: 20}
