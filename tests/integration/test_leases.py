"""Many workers, one stream: ``poller run`` processes sharing a mapping's shards by leases.

The processes run against the moto server. Most share a DynamoDB table there (``[store] url =
"dynamodb://..."``), as workers on several hosts would; one test has two share a SQLite state file
on one host. Tests read the leases as an operator would: the table with a DynamoDB client, the
state file with sqlite3.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import boto3
import pytest

from tests.conformance.kinesis_helpers import AwsSetup
from tests.integration.test_worker_lifecycle import (
    WAIT,
    PollerRun,
    Project,
    aws,
    create_stream,
    merge,
    project,
    put,
    spread,
)
from tests.kit import REGION, wait_until

pytestmark = pytest.mark.integration

__all__ = ["aws", "project"]  # fixtures, used by name

Owners = Callable[[], dict[str, str | None]]

#: How long leases may take to settle into a balance.
BALANCE_WAIT = 60.0
#: Leases of 4 s: a worker starved of CPU for a couple of seconds on a busy 2-core machine must
#: not look dead (2 s, the quick default of these tests, is too close to that).
STEADY = {"lease_duration_seconds": 4}


def lease_owners(aws: AwsSetup, here: Project) -> Owners:
    """Who holds each of the mapping's leases, read from its store as an operator would."""
    if here.store_url.startswith("dynamodb://"):
        table = here.store_url.removeprefix("dynamodb://")
        client = boto3.client(
            "dynamodb",
            region_name=REGION,
            endpoint_url=aws.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def from_table() -> dict[str, str | None]:
            try:
                items = client.query(
                    TableName=table,
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": f"lease#{here.mapping_id}"}},
                    ConsistentRead=True,
                )["Items"]
            except client.exceptions.ResourceNotFoundException:  # no worker has made it yet
                return {}
            return {item["sk"]["S"]: item.get("owner", {}).get("S") for item in items}

        return from_table

    def from_state_file() -> dict[str, str | None]:
        if not here.store.exists():
            return {}
        with contextlib.closing(sqlite3.connect(here.store)) as raw:
            try:
                rows = raw.execute(
                    "SELECT partition, owner FROM leases WHERE mapping_id = ?", (here.mapping_id,)
                ).fetchall()
            except sqlite3.OperationalError:  # the worker has not created its tables yet
                return {}
        return dict(rows)

    return from_state_file


def lease_events(run: PollerRun, event: str) -> list[dict[str, Any]]:
    """The process's JSON log lines of one lease event ("lease taken", "lease released", ...)."""
    lines = (line for line in run.output().splitlines() if f'"{event}"' in line)
    return [entry for entry in map(json.loads, lines) if entry.get("event") == event]


def _worker_of(run: PollerRun) -> str:
    """The worker id a ``poller run`` process logged its leases under."""
    taken = lease_events(run, "lease taken")
    assert taken, "the process took no lease"
    return str(taken[0]["worker"])


async def wait_for_stable_balance(owners: Owners, counts: list[int]) -> dict[str, str | None]:
    """Wait until the leases are spread as ``counts`` and stay so for a renewal interval."""

    def balanced() -> bool:
        held = Counter(owners().values())
        return None not in held and sorted(held.values()) == counts

    # Starting a poller process takes seconds on a busy 2-core machine, and a joining worker
    # steals one lease per look: allow for both.
    await wait_until(balanced, within=BALANCE_WAIT, what=f"leases spread as {counts}")
    before = owners()
    await anyio.sleep(2.0)  # every worker renews (and learns of a steal) within a third of 2 s
    assert owners() == before, "the leases kept moving"
    return before


def dynamodb(unique_name: str) -> str:
    return f"dynamodb://{unique_name[:200]}-leases"


def assert_in_order(runs: list[PollerRun]) -> None:
    """Each process handed each shard's records over in increasing order."""
    for run in runs:
        for shard, seqs in run.seen.per_shard(run.seen.begun()).items():
            numbers = [int(x) for x in seqs]
            assert numbers == sorted(set(numbers)), f"{shard} out of order: {numbers}"


async def stop_all(runs: list[PollerRun]) -> None:
    for run in runs:
        if run.process.returncode is None:
            run.process.send_signal(signal.SIGTERM)
            assert await run.wait(within=15) == 0, run.output()[-3000:]


async def test_two_processes_sharing_a_state_file_split_the_shards(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=4)
    here = project(stream, BatchSize=5)
    owners = lease_owners(aws, here)
    first = await here.start(delay=0.0)
    second = await here.start(delay=0.0)

    await wait_for_stable_balance(owners, [2, 2])
    written = await put(aws, stream, spread(stream, 40, "shared"))
    await wait_until(
        lambda: (
            sum(
                len(s)
                for run in (first, second)
                for s in run.seen.per_shard(run.seen.ended()).values()
            )
            >= 40
        ),
        within=WAIT,
        what="every record handled",
    )
    by_first = first.seen.per_shard(first.seen.ended())
    by_second = second.seen.per_shard(second.seen.ended())
    assert by_first and by_second, "both processes handled shards"
    assert not set(by_first) & set(by_second), "a shard was handled by both processes"
    assert merge(by_first, by_second) == written
    await stop_all([first, second])
    assert set(owners().values()) == {None}, "released on stop"


async def test_kill_9_of_one_of_three_workers_moves_its_shards_to_the_others(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=6)
    here = project(stream, store=dynamodb(unique_name), worker=STEADY, BatchSize=3)
    owners = lease_owners(aws, here)
    runs = [await here.start(delay=0.3) for _ in range(3)]
    await wait_for_stable_balance(owners, [2, 2, 2])
    written = await put(aws, stream, spread(stream, 60, "failover"))
    victim = runs[0]
    await wait_until(victim.seen.in_flight, within=WAIT, what="a batch in the victim's handler")
    survivors = runs[1:]
    taken_before = [len(lease_events(run, "lease taken")) for run in survivors]
    at_kill = owners()
    victim.process.send_signal(signal.SIGKILL)
    assert await victim.wait(within=5) == -signal.SIGKILL

    def processed() -> dict[str, list[str]]:
        return merge(*(run.seen.per_shard(run.seen.ended()) for run in runs))

    await wait_until(
        lambda: all(set(written[s]) <= set(processed().get(s, [])) for s in stream.shards),
        within=30,
        what="every record processed after the failover",
    )
    assert_in_order(runs)
    # Only what the victim had not checkpointed may have been handed over twice: batches begun
    # and not ended, and per shard the last one that ended (its checkpoint is written after the
    # handler returns, and the kill may have come in between).
    in_flight = {(b["shard"], s) for b in victim.seen.begun() for s in b["seqs"]} - {
        (b["shard"], s) for b in victim.seen.ended() for s in b["seqs"]
    }
    last_ended = {b["shard"]: b for b in victim.seen.ended()}
    in_flight |= {(b["shard"], s) for b in last_ended.values() for s in b["seqs"]}
    handled = Counter((b["shard"], s) for run in runs for b in run.seen.ended() for s in b["seqs"])
    twice = {key for key, count in handled.items() if count > 1}
    assert twice <= in_flight, f"handed over twice outside the killed batch: {sorted(twice)}"
    victim_id = _worker_of(victim)
    victim_shards = {shard for shard, owner in at_kill.items() if owner == victim_id}
    assert victim_shards, "the victim held shards when it was killed"
    after = owners()
    assert all(after[shard] not in (victim_id, None) for shard in victim_shards)
    taken = [
        event
        for run, before_kill in zip(survivors, taken_before, strict=True)
        for event in lease_events(run, "lease taken")[before_kill:]
    ]
    reasons = {e["reason"] for e in taken if e["shard"] in victim_shards}
    assert reasons == {"expired"}, f"the victim's shards taken only once expired: {taken}"
    await stop_all(survivors)


async def test_a_worker_paused_past_its_lease_cannot_checkpoint_over_the_new_owner(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    here = project(stream, store=dynamodb(unique_name), BatchSize=2)
    owners = lease_owners(aws, here)
    paused, other = [await here.start(delay=1.0) for _ in range(2)]
    await wait_for_stable_balance(owners, [1, 1])
    paused_id = _worker_of(paused)
    (shard,) = [s for s, o in owners().items() if o == paused_id]
    written = await put(aws, stream, spread(stream, 12, "paused"))
    await wait_until(paused.seen.in_flight, within=WAIT, what="a batch in the paused one's handler")
    paused.process.send_signal(signal.SIGSTOP)
    await wait_until(
        lambda: owners().get(shard) == _worker_of(other),
        within=WAIT,
        what="the other worker taking the paused one's shard",
    )
    paused.process.send_signal(signal.SIGCONT)
    # The batch it was running when paused finishes, but its checkpoint is refused (fenced) and
    # the partition stops there; later it may win a lease back by stealing, and starts again
    # from the checkpoint the other worker wrote.
    await wait_until(
        lambda: (
            '"checkpoint refused: the lease moved (fenced)"' in paused.output()
            and '"partition stopped: its lease moved to another worker"' in paused.output()
        ),
        within=WAIT,
        what="the resumed worker's checkpoint refused and its partition stopped",
    )

    def processed() -> dict[str, list[str]]:
        return merge(*(run.seen.per_shard(run.seen.ended()) for run in (paused, other)))

    await wait_until(
        lambda: all(set(written[s]) <= set(processed().get(s, [])) for s in stream.shards),
        within=30,
        what="every record processed",
    )
    for run in (paused, other):
        for each, seqs in run.seen.per_shard(run.seen.begun()).items():
            numbers = [int(x) for x in seqs]
            # In order, never skipping ahead; a step back is a re-read from the checkpoint after
            # the worker won the lease back.
            assert all(b <= a + 1 for a, b in itertools.pairwise(numbers)), (each, numbers)
    await stop_all([paused, other])


async def test_a_fourth_worker_steals_its_share_and_a_stopping_one_hands_its_leases_over(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=8)
    here = project(stream, store=dynamodb(unique_name), worker=STEADY, BatchSize=5)
    owners = lease_owners(aws, here)
    runs = [await here.start(delay=0.05) for _ in range(3)]
    await wait_for_stable_balance(owners, [2, 3, 3])
    first = await put(aws, stream, spread(stream, 80, "three"))

    def handed_over() -> Counter[tuple[str, str]]:
        """How many times each (shard, sequence number) was handed over, across processes."""
        return Counter(
            (b["shard"], seq) for run in here.runs for b in run.seen.begun() for seq in b["seqs"]
        )

    def every(written: dict[str, list[str]]) -> bool:
        done = {(b["shard"], q) for run in here.runs for b in run.seen.ended() for q in b["seqs"]}
        return all((shard, seq) in done for shard, seqs in written.items() for seq in seqs)

    await wait_until(lambda: every(first), within=WAIT, what="the first records handled")
    for shard in stream.shards:  # the leases held still: each shard had one worker
        by = [run for run in runs if shard in run.seen.per_shard(run.seen.begun())]
        assert len(by) == 1, f"{shard} handled by {len(by)} workers"

    # A fourth worker joins: it steals its share (two leases), one per pass, from the richest
    # workers; nobody else takes a lease.
    taken_before = sum(len(lease_events(run, "lease taken")) for run in runs)
    joiner = await here.start(delay=0.05)
    await wait_for_stable_balance(owners, [2, 2, 2, 2])
    stolen = lease_events(joiner, "lease taken")
    assert len(stolen) == 2 and all(e["reason"].startswith("stolen from") for e in stolen), stolen
    assert sum(len(lease_events(run, "lease taken")) for run in runs) == taken_before

    # One stops (SIGTERM) while records flow: it finishes its batch, checkpoints and releases its
    # leases; the others take them at once as free leases (not after they expire), and nothing
    # is handed over twice.
    leaving = runs[0]
    leaving_id = _worker_of(leaving)
    its_shards = {shard for shard, owner in owners().items() if owner == leaving_id}
    begun = len(leaving.seen.begun())
    second = await put(aws, stream, spread(stream, 80, "handoff"))
    await wait_until(
        lambda: len(leaving.seen.begun()) > begun, within=WAIT, what="the leaving worker busy"
    )
    stayers = [*runs[1:], joiner]
    taken_before = [len(lease_events(run, "lease taken")) for run in stayers]
    leaving.process.send_signal(signal.SIGTERM)
    assert await leaving.wait(within=15) == 0, leaving.output()[-3000:]
    released = {e["shard"] for e in lease_events(leaving, "lease released")}
    assert released == its_shards
    await wait_for_stable_balance(owners, [2, 3, 3])
    took = [
        event
        for run, before_stop in zip(stayers, taken_before, strict=True)
        for event in lease_events(run, "lease taken")[before_stop:]
    ]
    assert {e["shard"] for e in took} == released
    assert {e["reason"] for e in took} == {"free"}, took
    await wait_until(lambda: every(second), within=WAIT, what="the records written at the handoff")
    twice = {key for key, count in handed_over().items() if count > 1}
    assert not twice, f"handed over twice: {sorted(twice)}"
    assert_in_order(here.runs)
    await stop_all(stayers)
