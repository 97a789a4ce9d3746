"""Helpers for Kafka tests against the real broker: topics, producing, group offsets, configs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from poller.config import PollerConfig
from tests.kit import LambdaRecorder, worker_config

#: Short group timings: the broker holds a join for about half the session timeout (SERVERS.md).
SESSION_TIMEOUT_SECONDS = 2.0


async def create_topic(bootstrap: str, name: str, partitions: int) -> str:
    """Create ``name`` with ``partitions`` partitions (never rely on auto-creation)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[int, bytes, bytes | None]],
    headers: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Produce (partition, value, key) triples in order and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, value=value, key=key, partition=partition, headers=list(headers)
            )
            for partition, value, key in records
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets per partition (partitions never committed are left out)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        found: dict[int, int] = {}
        for number in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, number))
            if offset is not None and offset >= 0:
                found[number] = offset
        return found
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, count: int, within: float = 10.0) -> list[Any]:
    """``count`` records of ``topic`` from the beginning (no group), or fewer after ``within``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        with anyio.move_on_after(within):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    found.extend(messages)
        return found
    finally:
        await consumer.stop()


async def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    wanted: dict[int, int],
    *,
    partitions: int | None = None,
    within: float = 20.0,
) -> dict[int, int]:
    """Poll the group's committed offsets until they include ``wanted``; return the last read.

    The caller asserts on the result, so a timeout shows what was committed instead. Reads that
    fail (a broker restarting) count as nothing committed yet.
    """
    count = partitions if partitions is not None else max(wanted) + 1
    found: dict[int, int] = {}
    with anyio.move_on_after(within):
        while any(found.get(p) != o for p, o in wanted.items()):
            try:
                found = await committed(bootstrap, group, topic, count)
            except Exception:
                found = {}
            if any(found.get(p) != o for p, o in wanted.items()):
                await anyio.sleep(0.1)
    return found


def kafka_mapping(bootstrap: str, topic: str, group: str, **fields: Any) -> dict[str, Any]:
    """A self-managed Kafka mapping under AWS field names; ``fields`` add or override."""
    return {
        "UUID": group,
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
        "Topics": [topic],
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group},
        "StartingPosition": "TRIM_HORIZON",
        "MaximumBatchingWindowInSeconds": 0.05,
        "FunctionTimeout": 10,
        **fields,
    }


def kafka_config(
    *mappings: dict[str, Any], aws: dict[str, Any] | None = None, store: str = "memory://"
) -> PollerConfig:
    """A config with short group timings, a store (memory unless given) and the mappings."""
    return worker_config(
        *mappings,
        aws=aws,
        store=store,
        kafka_session_timeout_seconds=SESSION_TIMEOUT_SECONDS,
        kafka_revoke_grace_seconds=5,
    )


class Handed(LambdaRecorder):
    """The kit's Lambda-style recorder for Kafka events: ``respond`` gets the event itself, as a
    Kafka handler's own logic would."""

    def __init__(self, respond: Callable[[dict[str, Any]], Any] | None = None) -> None:
        super().__init__(None if respond is None else lambda seen: respond(seen.event))

    def offsets_by_partition(self) -> dict[int, list[int]]:
        """Offsets handed over per partition, in the order handed."""
        found: dict[int, list[int]] = {}
        for record in self.records():
            found.setdefault(record["partition"], []).append(record["offset"])
        return found
