"""Many workers, one stream: ``poller run`` processes sharing a mapping's shards by leases.

The processes run against the moto server and share a SQLite state file, so its leases table
decides who reads which shard (the DynamoDB store does the same across hosts). Tests read the
leases table with sqlite3, as an operator would.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

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

    def balanced() -> bool:
        owners = Counter(lease_owners(here.store, here.mapping_id).values())
        return len(owners) == 2 and None not in owners and sorted(owners.values()) == [2, 2]

    await wait_until(balanced, within=WAIT, what="two processes holding two leases each")
    # A worker learns that a lease was stolen from it at its next renewal (a third of the lease
    # duration, 2 s here); until then a batch it reads is handed over twice (fenced, and read
    # again by the new owner). Records go in once both processes know what they hold.
    before = lease_owners(here.store, here.mapping_id)
    await anyio.sleep(2.0)
    assert lease_owners(here.store, here.mapping_id) == before, "the leases kept moving"
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
