"""Many workers, one stream: ``poller run`` processes sharing a mapping's shards by leases.

The processes run against the moto server and share a SQLite state file, so its leases table
decides who reads which shard (the DynamoDB store does the same across hosts). Tests read the
leases table with sqlite3, as an operator would.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conformance.kinesis_helpers import AwsSetup
from tests.integration.test_worker_lifecycle import (
    WAIT,
    Project,
    aws,
    create_stream,
    merge,
    project,
    put,
    spread,
)
from tests.kit import wait_until

pytestmark = pytest.mark.integration

__all__ = ["aws", "project"]  # fixtures, used by name


def lease_owners(path: Path, mapping_id: str) -> dict[str, str | None]:
    """Who holds each lease in the SQLite state file (read with sqlite3, as an operator would)."""
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path)) as raw:
        try:
            rows = raw.execute(
                "SELECT partition, owner FROM leases WHERE mapping_id = ?", (mapping_id,)
            ).fetchall()
        except sqlite3.OperationalError:  # the worker has not created its tables yet
            return {}
    return dict(rows)


async def test_two_processes_sharing_a_state_file_split_the_shards(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=4)
    here = project(stream, BatchSize=5)
    first = await here.start(delay=0.0)
    second = await here.start(delay=0.0)

    await wait_for_stable_balance(here, [2, 2])
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
    for run in (first, second):
        run.process.send_signal(signal.SIGTERM)
        assert await run.wait(within=15) == 0, run.output()[-3000:]
    assert set(lease_owners(here.store, here.mapping_id).values()) == {None}, "released on stop"


async def wait_for_stable_balance(here: Project, counts: list[int]) -> dict[str, str | None]:
    """Wait until the leases are spread as ``counts`` and stay so for a renewal interval."""

    def balanced() -> bool:
        owners = Counter(lease_owners(here.store, here.mapping_id).values())
        return None not in owners and sorted(owners.values()) == counts

    await wait_until(balanced, within=WAIT, what=f"leases spread as {counts}")
    before = lease_owners(here.store, here.mapping_id)
    await anyio.sleep(2.0)  # every worker renews (and learns of a steal) within a third of 2 s
    assert lease_owners(here.store, here.mapping_id) == before, "the leases kept moving"
    return before


async def test_kill_9_of_one_of_three_workers_moves_its_shards_to_the_others(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=6)
    here = project(stream, BatchSize=3)
    runs = [await here.start(delay=0.3) for _ in range(3)]
    owners = await wait_for_stable_balance(here, [2, 2, 2])
    written = await put(aws, stream, spread(stream, 60, "failover"))
    victim = runs[0]
    await wait_until(victim.seen.in_flight, within=WAIT, what="a batch in the victim's handler")
    victim.process.send_signal(signal.SIGKILL)
    assert await victim.wait(within=5) == -signal.SIGKILL
    survivors = runs[1:]

    def processed() -> dict[str, list[str]]:
        return merge(*(run.seen.per_shard(run.seen.ended()) for run in runs))

    await wait_until(
        lambda: all(set(written[s]) <= set(processed().get(s, [])) for s in stream.shards),
        within=30,
        what="every record processed after the failover",
    )
    for run in runs:
        for shard, seqs in run.seen.per_shard(run.seen.begun()).items():
            assert [int(x) for x in seqs] == sorted(int(x) for x in seqs), f"{shard} out of order"
    # Only the batches the victim had begun and not ended may have been handed over twice.
    in_flight = {(b["shard"], s) for b in victim.seen.begun() for s in b["seqs"]} - {
        (b["shard"], s) for b in victim.seen.ended() for s in b["seqs"]
    }
    handled = Counter((b["shard"], s) for run in runs for b in run.seen.ended() for s in b["seqs"])
    twice = {key for key, count in handled.items() if count > 1}
    assert twice <= in_flight, f"handed over twice outside the killed batch: {sorted(twice)}"
    victim_id = _worker_of(victim)
    victim_shards = {shard for shard, owner in owners.items() if owner == victim_id}
    assert len(victim_shards) == 2
    after = lease_owners(here.store, here.mapping_id)
    assert all(after[shard] not in (victim_id, None) for shard in victim_shards)
    for run in survivors:
        run.process.send_signal(signal.SIGTERM)
        assert await run.wait(within=15) == 0, run.output()[-3000:]


def _worker_of(run: Any) -> str:
    """The worker id a ``poller run`` process logged its leases under."""
    for line in run.output().splitlines():
        if '"lease taken"' in line:
            return str(json.loads(line)["worker"])
    raise AssertionError("the process took no lease")


async def test_a_worker_paused_past_its_lease_cannot_checkpoint_over_the_new_owner(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    here = project(stream, BatchSize=2)
    paused, other = [await here.start(delay=1.0) for _ in range(2)]
    await wait_for_stable_balance(here, [1, 1])
    paused_id = _worker_of(paused)
    (shard,) = [s for s, o in lease_owners(here.store, here.mapping_id).items() if o == paused_id]
    written = await put(aws, stream, spread(stream, 12, "paused"))
    await wait_until(paused.seen.in_flight, within=WAIT, what="a batch in the paused one's handler")
    paused.process.send_signal(signal.SIGSTOP)
    await wait_until(
        lambda: lease_owners(here.store, here.mapping_id).get(shard) == _worker_of(other),
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
    for run in (paused, other):
        run.process.send_signal(signal.SIGTERM)
        assert await run.wait(within=15) == 0, run.output()[-3000:]
