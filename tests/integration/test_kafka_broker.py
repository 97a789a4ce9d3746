"""The Kafka-protocol broker the Kafka source is tested against: tansu, started by scripts/servers.py.

Each test pins down one broker behaviour the source builds on, through aiokafka as the source uses
it: explicit topic creation, keyed produce, consumer groups with manual commits and resume from the
committed offset, pause/resume and seek per partition, offsets_for_times, and a group's partitions
split between its members. If one of these fails after a broker upgrade, the source's tests would
fail for a reason that is not the source's.

Where tansu differs from Kafka the tests accept both answers or avoid the case, and say so:
offsets_for_times goes by the time the broker stored a record and answers "no such record" with
offset 0 and timestamp -1; a group whose last member left is joined again only after about twice
the session timeout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndTimestamp

from tests.integration.kafka_helpers import create_topic
from tests.kit import wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
#: tansu holds a group join for about half the session timeout: short timeouts keep joins near 1 s.
GROUP_TIMINGS = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 300,
    "rebalance_timeout_ms": 2000,
}
#: Upper bound for any single wait in these tests.
WAIT = 10.0


@pytest.fixture
async def topic(kafka_bootstrap: str, unique_name: str) -> str:
    """A fresh topic with PARTITIONS partitions, created explicitly (never auto-created)."""
    return await create_topic(kafka_bootstrap, unique_name, PARTITIONS)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def consumer(
    bootstrap: str,
    *topics: str,
    group: str | None = None,
    listener: ConsumerRebalanceListener | None = None,
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer with manual commits; subscribed to ``topics`` when given (group only)."""
    options: dict[str, Any] = dict(GROUP_TIMINGS) if group else {}
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    await client.start()
    try:
        if topics:
            client.subscribe(list(topics), listener=listener)
        yield client
    finally:
        await client.stop()


async def fetch(client: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[Any, Any]]:
    """Exactly ``count`` records (in fetch order), or fail after WAIT seconds."""
    records: list[ConsumerRecord[Any, Any]] = []
    with anyio.fail_after(WAIT):
        while len(records) < count:
            batches = await client.getmany(timeout_ms=200, max_records=count - len(records))
            for batch in batches.values():
                records.extend(batch)
    return records


async def produce(producer: AIOKafkaProducer, topic: str, partition: int, count: int) -> None:
    for n in range(count):
        await producer.send_and_wait(topic, f"p{partition}-r{n}".encode(), partition=partition)


class Recorder(ConsumerRebalanceListener):
    """Keeps every assignment and revocation the group coordinator hands this member."""

    def __init__(self) -> None:
        self.assigned: list[set[int]] = []
        self.revoked: list[set[int]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked.append({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.append({tp.partition for tp in assigned})


async def test_topic_is_created_with_the_partitions_asked_for(
    topic: str, producer: AIOKafkaProducer
) -> None:
    assert await producer.partitions_for(topic) == set(range(PARTITIONS))


async def test_keyed_records_stay_on_their_partition_in_order(
    topic: str, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    stamp = int(time.time() * 1000) - 5_000
    keys = [f"key-{n}".encode() for n in range(8)]
    placed: dict[bytes, list[tuple[int, int]]] = {key: [] for key in keys}
    for round_ in range(3):
        for key in keys:
            sent = await producer.send_and_wait(
                topic,
                f"{key.decode()}-{round_}".encode(),
                key=key,
                timestamp_ms=stamp + round_,
                headers=[("trace", b"t-1"), ("empty", b"")],
            )
            placed[key].append((sent.partition, sent.offset))

    for key, places in placed.items():
        assert len({partition for partition, _ in places}) == 1, key
        assert [offset for _, offset in places] == sorted(offset for _, offset in places)
    partitions = {places[0][0] for places in placed.values()}
    assert len(partitions) > 1  # the keys spread over the topic
    for partition in partitions:  # offsets per partition are dense from 0
        offsets = sorted(o for places in placed.values() for p, o in places if p == partition)
        assert offsets == list(range(len(offsets)))

    async with consumer(kafka_bootstrap) as reader:
        reader.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        records = await fetch(reader, 3 * len(keys))
    for record in records:
        assert (record.partition, record.offset) in placed[record.key]
        assert record.value.decode().startswith(record.key.decode())
        assert record.headers == (("trace", b"t-1"), ("empty", b""))
        assert record.timestamp_type == 0  # CreateTime: the producer's timestamp is kept
        assert stamp <= record.timestamp <= stamp + 2
    for key in keys:  # per key, the rounds come back in the order they were sent
        values = [r.value.decode() for r in records if r.key == key]
        assert values == [f"{key.decode()}-{n}" for n in range(3)]


async def test_group_resumes_from_the_committed_offset(
    topic: str, producer: AIOKafkaProducer, kafka_bootstrap: str, unique_name: str
) -> None:
    group = f"{unique_name}-group"
    tp = TopicPartition(topic, 0)
    await produce(producer, topic, 0, 10)

    async with consumer(kafka_bootstrap, topic, group=group) as first:
        records = await fetch(first, 4)
        assert [(r.partition, r.offset) for r in records] == [(0, n) for n in range(4)]
        await first.commit({tp: records[-1].offset + 1})  # the next record to read
        assert await first.committed(tp) == 4
        assert await first.committed(TopicPartition(topic, 1)) is None

    # The group is empty now: tansu lets the next member in after about 2 x session timeout (~4 s).
    async with consumer(kafka_bootstrap, topic, group=group) as second:
        assert await second.committed(tp) == 4
        records = await fetch(second, 6)
        assert [(r.partition, r.offset) for r in records] == [(0, n) for n in range(4, 10)]


async def test_pause_stops_one_partition_and_resume_restarts_it(
    topic: str, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    held, flowing = TopicPartition(topic, 0), TopicPartition(topic, 1)
    async with consumer(kafka_bootstrap) as reader:
        reader.assign([held, flowing])
        reader.pause(held)
        await produce(producer, topic, 0, 3)
        await produce(producer, topic, 1, 3)

        records = await fetch(reader, 3)
        assert [(r.partition, r.offset) for r in records] == [(1, 0), (1, 1), (1, 2)]
        assert await reader.getmany(timeout_ms=500) == {}
        assert reader.paused() == {held}

        reader.resume(held)
        records = await fetch(reader, 3)
        assert [(r.partition, r.offset) for r in records] == [(0, 0), (0, 1), (0, 2)]


async def test_seek_moves_the_next_fetch(
    topic: str, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    tp = TopicPartition(topic, 2)
    await produce(producer, topic, 2, 10)
    async with consumer(kafka_bootstrap) as reader:
        reader.assign([tp])
        assert [r.offset for r in await fetch(reader, 10)] == list(range(10))

        reader.seek(tp, 3)  # back: a retried batch is read again
        assert [r.offset for r in await fetch(reader, 2)] == [3, 4]
        reader.seek(tp, 8)  # forward: past records already settled
        assert [r.offset for r in await fetch(reader, 2)] == [8, 9]

        assert await reader.beginning_offsets([tp]) == {tp: 0}
        assert await reader.end_offsets([tp]) == {tp: 10}
        await reader.seek_to_beginning(tp)
        assert await reader.position(tp) == 0
        await reader.seek_to_end(tp)
        assert await reader.position(tp) == 10


def no_record(found: OffsetAndTimestamp | None) -> bool:
    """No record at or after the time asked: Kafka answers null, tansu offset 0 with timestamp -1.

    The source has to read both as "start at the end", never seek to offset 0 on tansu's answer.
    """
    return found is None or found.timestamp == -1


async def test_offsets_for_times_finds_the_first_record_at_or_after(
    topic: str, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    # tansu looks times up by when it stored each record, not by a timestamp the producer set:
    # records go out with the producer's own clock, 200 ms apart, and lookups fall between them.
    tp, empty = TopicPartition(topic, 3), TopicPartition(topic, 1)
    stamps = []
    for n in range(4):
        sent = await producer.send_and_wait(topic, f"r{n}".encode(), partition=3)
        stamps.append(sent.timestamp)
        await anyio.sleep(0.2)
    async with consumer(kafka_bootstrap) as reader:
        for query, expected in ((stamps[0] - 100, 0), ((stamps[1] + stamps[2]) // 2, 2)):
            found = (await reader.offsets_for_times({tp: query}))[tp]
            assert found is not None
            assert found.offset == expected
            assert found.timestamp >= query
        later = int(time.time() * 1000) + 60_000
        found_all = await reader.offsets_for_times({tp: later, empty: stamps[0]})
        assert no_record(found_all[tp])
        assert no_record(found_all[empty])


async def test_two_members_of_a_group_split_the_partitions(
    topic: str, producer: AIOKafkaProducer, kafka_bootstrap: str, unique_name: str
) -> None:
    group = f"{unique_name}-group"
    everything = set(range(PARTITIONS))
    first_seen, second_seen = Recorder(), Recorder()

    def owned(client: AIOKafkaConsumer) -> set[int]:
        return {tp.partition for tp in client.assignment()}

    async with consumer(kafka_bootstrap, topic, group=group, listener=first_seen) as first:
        await wait_until(
            lambda: owned(first) == everything, within=WAIT, what="the first member owns all"
        )
        async with consumer(kafka_bootstrap, topic, group=group, listener=second_seen) as second:
            await wait_until(
                lambda: (
                    bool(owned(first)) and bool(owned(second)) and not owned(first) & owned(second)
                ),
                within=WAIT,
                what="the two members split the partitions",
            )
            assert owned(first) | owned(second) == everything
            assert len(owned(first)) == len(owned(second)) == PARTITIONS // 2
            assert first_seen.revoked  # the first member gave up partitions before the split

            for partition in range(PARTITIONS):
                await produce(producer, topic, partition, 1)
            first_records = await fetch(first, 2)
            second_records = await fetch(second, 2)
            assert {r.partition for r in first_records} == owned(first)
            assert {r.partition for r in second_records} == owned(second)

        # The second member left the group: the first takes every partition back.
        await wait_until(
            lambda: owned(first) == everything, within=WAIT, what="the first member takes all back"
        )
        assert first_seen.assigned[-1] == everything
