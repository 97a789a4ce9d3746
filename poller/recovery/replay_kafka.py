"""``poller replay`` for a Kafka mapping: its consumer group's committed offsets move, as
``kafka-consumer-groups --reset-offsets`` moves them (``--to-datetime``, ``--to-offset``,
``--to-earliest``, ``--to-latest``).

Offsets can only be moved for a group nobody consumes in: a member would overwrite them with its
own position at its next commit. So replay is refused while the group's coordinator lists
members (DescribeGroups), unless ``force``. Either way replay then joins the group itself and
waits (bounded) until the coordinator assigns it every partition of the topic: a live member
keeps its share, so this is the wait for the group to be empty, judged by the coordinator's own
session timeouts; and the commits then carry a live generation while no other member reads.
It commits the new offsets and leaves. A committed offset is the next record to read, so "from
offset P" is the commit P, exactly.

Some brokers (tansu) keep listing a member that left until the group rebalances: there a replay
after a clean stop needs ``--force`` too; it then goes ahead after one join.

Targets: ``at-timestamp`` is the first record whose timestamp is at or after it
(ListOffsets by time; a partition with none gets its end offset, as the tool does);
``at-sequence`` one partition's offset; ``trim-horizon`` the oldest offset kept; ``latest`` the
end. The mapping's idempotency records of the moved partitions are forgotten, as for streams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from poller.engine.state import CheckpointRewrites
from poller.recovery.replay import Move, ReplayRefused, ReplayReport
from poller.recovery.replay_leases import LeasesHeld
from poller.recovery.replay_positions import ReplayTarget
from poller.sources.kafka.commits import partition_id
from poller.sources.kafka.connection import KafkaConnection

__all__ = ["replay_kafka"]

#: Group timings of replay's own short membership (a join waits about half the session timeout).
_GROUP_TIMINGS: dict[str, int] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 6000,
}


async def replay_kafka(
    connection: KafkaConnection,
    *,
    mapping_id: str,
    topic: str,
    group: str,
    target: ReplayTarget,
    partition: str | None,
    force: bool,
    wait: float,
    dry_run: bool,
    store: CheckpointRewrites | None,
    progress: Callable[[str], None],
) -> ReplayReport:
    """Move the group's committed offsets (see the module docstring)."""
    kwargs = connection.client_kwargs()
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        members = await _members(admin, group)
        if members and not dry_run and not force:
            raise LeasesHeld(
                f"mapping {mapping_id!r}: consumer group {group!r} has active members "
                f"({', '.join(members)}); stop them first, or give --force to wait until the "
                "group is empty (some brokers list a stopped member until the group rebalances)"
            )
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **_GROUP_TIMINGS,
        **kwargs,
    )
    await consumer.start()
    try:
        numbers = consumer.partitions_for_topic(topic)
        if numbers is None:
            await consumer.force_metadata_update()
            numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise ReplayRefused(f"topic {topic!r} does not exist (or has no partitions)")
        every = [TopicPartition(topic, n) for n in sorted(numbers)]
        chosen = every
        if partition is not None:
            chosen = [tp for tp in every if partition_id(tp) == partition]
            if not chosen:
                known = ", ".join(partition_id(tp) for tp in every)
                raise ReplayRefused(
                    f"--partition {partition!r}: topic {topic!r} has no such partition "
                    f"(its partitions: {known})"
                )
        if not dry_run:
            consumer.subscribe([topic])
            await _own_every_partition(consumer, set(every), wait, progress)
        before = {tp: await _committed(consumer, tp) for tp in chosen}
        after = await _offsets(consumer, await _ends(kwargs, chosen), chosen, target)
        moves: list[Move] = []
        if not dry_run:
            await consumer.commit({tp: OffsetAndMetadata(after[tp], "") for tp in chosen})
        for tp in chosen:
            forgotten = None
            if store is not None and not dry_run:
                forgotten = await store.forget_succeeded(mapping_id, partition_id(tp))
            moves.append(
                Move(
                    partition_id(tp),
                    None if before[tp] is None else {"offset": before[tp]},
                    {"offset": after[tp]},
                    f"resumes at offset {after[tp]}",
                    forgotten,
                )
            )
    finally:
        await consumer.stop()
    return ReplayReport(mapping_id, "kafka", target.describe(), dry_run, tuple(moves))


async def _members(admin: AIOKafkaAdminClient, group: str) -> list[str]:
    """The group's member ids (with their hosts) as the coordinator lists them now."""
    responses: list[Any] = await admin.describe_consumer_groups([group])
    members: list[str] = []
    for response in responses:
        for described in response.groups:
            for member in described[5]:
                member_id, host = member[0], member[2]
                members.append(f"{member_id} on {host}" if host else str(member_id))
    return members


async def _own_every_partition(
    consumer: AIOKafkaConsumer,
    every: set[TopicPartition],
    wait: float,
    progress: Callable[[str], None],
) -> None:
    """Join the group and wait until it assigns this consumer every partition of the topic."""
    said = -1
    with anyio.move_on_after(wait + 15.0):  # a join itself takes a few seconds
        while True:
            await consumer.getmany(timeout_ms=300, max_records=1)
            consumer.pause(*consumer.assignment())  # replay reads nothing
            held = len(consumer.assignment())
            if held >= len(every) and consumer.assignment() >= every:
                return
            if held != said:
                progress(
                    f"joined the consumer group with {held} of {len(every)} partitions; waiting "
                    "for the other members to leave"
                )
                said = held
    held = len(consumer.assignment())
    raise LeasesHeld(
        f"joined the consumer group but was given {held} of {len(every)} partitions: another "
        "member is consuming; nothing was moved"
    )


async def _committed(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The group's committed offset (a consumer of the group may ask without joining it)."""
    offset = await consumer.committed(tp)
    return offset if offset is not None and offset >= 0 else None


async def _ends(kwargs: dict[str, Any], chosen: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's end offset: the broker's answer, checked by reading on from it (tansu
    answers the last batch's first offset + 1, not the last record's)."""
    reader = AIOKafkaConsumer(enable_auto_commit=False, **kwargs)
    await reader.start()
    try:
        reader.assign(chosen)
        ends: dict[TopicPartition, int] = dict(await reader.end_offsets(chosen))
        for tp in chosen:
            reader.seek(tp, ends[tp])
        with anyio.move_on_after(30.0):
            while batch := await reader.getmany(timeout_ms=500):
                for tp, records in batch.items():
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
        return ends
    finally:
        await reader.stop()


async def _offsets(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    chosen: list[TopicPartition],
    target: ReplayTarget,
) -> dict[TopicPartition, int]:
    if target.kind == "at-sequence":
        assert target.position is not None
        offset = int(target.position)
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(chosen)
        for tp in chosen:
            if not starts[tp] <= offset <= ends[tp]:
                raise ReplayRefused(
                    f"--at-sequence {offset}: {partition_id(tp)} holds offsets "
                    f"{starts[tp]}..{ends[tp]} (the end: nothing left to read)"
                )
        return {tp: offset for tp in chosen}
    if target.kind == "latest":
        return {tp: ends[tp] for tp in chosen}
    if target.kind == "trim-horizon":
        return dict(await consumer.beginning_offsets(chosen))
    assert target.timestamp is not None
    found = await consumer.offsets_for_times({tp: int(target.timestamp * 1000) for tp in chosen})
    # No record at or after the moment: the end (tansu says so as offset 0 with timestamp -1).
    return {
        tp: ends[tp] if (hit := found.get(tp)) is None or hit.timestamp < 0 else hit.offset
        for tp in chosen
    }
