"""Reading a store's state without a worker (``poller status``): the inspection calls on the memory
and SQLite stores, and opening a SQLite state file for inspection without creating or writing it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores import MemoryStore, SqliteStore
from poller.stores.dynamodb import DynamoDBStore
from poller.stores.inspection import InspectableStore, open_for_inspection
from poller.stores.sqlite import SCHEMA_VERSION

NOW = 1_700_000_000.0
#: A real-looking Kinesis sequence number (far beyond 64 bits).
BIG = 49590338271490256608559692538361571095921575989136588898

Store = MemoryStore | SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = (
        MemoryStore(clock=lambda: NOW)
        if request.param == "memory"
        else SqliteStore(tmp_path / "state.db", clock=lambda: NOW)
    )
    yield made
    await made.aclose()


def test_every_store_is_inspectable() -> None:
    assert issubclass(MemoryStore, InspectableStore)
    assert issubclass(SqliteStore, InspectableStore)
    assert issubclass(DynamoDBStore, InspectableStore)


async def test_checkpoints_of_one_mapping_by_partition(store: Store) -> None:
    assert await store.list_checkpoints("orders") == {}
    await store.put_checkpoint("orders", "shard-0", Checkpoint(str(BIG), BIG))
    await store.put_checkpoint("orders", "shard-1", Checkpoint("7", 7, finished=True))
    await store.put_checkpoint("orders", "shard-2", Checkpoint("", 0, opened_at=NOW - 5.25))
    await store.put_checkpoint("other", "shard-0", Checkpoint("99", 99))
    await store.put_checkpoint("orders", "shard-0", Checkpoint("3", 3))  # behind: not stored

    assert await store.list_checkpoints("orders") == {
        "shard-0": Checkpoint(str(BIG), BIG),
        "shard-1": Checkpoint("7", 7, finished=True),
        "shard-2": Checkpoint("", 0, opened_at=NOW - 5.25),
    }
    assert await store.list_checkpoints("other") == {"shard-0": Checkpoint("99", 99)}


async def test_idempotency_records_are_counted_per_partition_until_they_expire(
    store: Store,
) -> None:
    await store.remember_succeeded("orders", "shard-0", ["1", "2", "3"], NOW + 60)
    await store.remember_succeeded("orders", "shard-0", ["4"], NOW + 10)
    await store.remember_succeeded("orders", "shard-1", ["1"], NOW + 10)
    await store.remember_succeeded("orders", "shard-2", ["1"], NOW - 1)  # expired already
    await store.remember_succeeded("other", "shard-0", ["1", "2"], NOW + 60)

    assert await store.count_idempotency_records("orders", NOW) == {"shard-0": 4, "shard-1": 1}
    # Expiry is "at or before now": a record expiring exactly now is no longer held.
    assert await store.count_idempotency_records("orders", NOW + 10) == {"shard-0": 3}
    assert await store.count_idempotency_records("orders", NOW + 60) == {}
    assert await store.count_idempotency_records("other", NOW) == {"shard-0": 2}
    assert await store.count_idempotency_records("nobody", NOW) == {}


async def test_leases_read_back_with_owner_counter_and_epoch(store: Store) -> None:
    await store.create_leases("orders", [("shard-0", ()), ("shard-1", ("shard-0",))])
    free = {lease.partition: lease for lease in await store.list_leases("orders")}
    taken = await store.take_lease("orders", free["shard-0"], "host-a:1")
    assert taken is not None
    renewed = await store.renew_lease("orders", taken)
    assert renewed is not None

    leases = {lease.partition: lease for lease in await store.list_leases("orders")}
    assert leases == {
        "shard-0": Lease("shard-0", "host-a:1", 2, 1),
        "shard-1": Lease("shard-1", None, 0, 0, ("shard-0",)),
    }
    assert await store.release_lease("orders", renewed)
    # Released: no owner, and a new epoch (the lease changed hands).
    assert {x.partition: (x.owner, x.epoch) for x in await store.list_leases("orders")} == {
        "shard-0": (None, 2),
        "shard-1": (None, 0),
    }


# --- SQLite: inspection opens what exists and never writes -----------------------------------------


async def written_state(path: Path) -> None:
    """A state file as a worker leaves it: a checkpoint, idempotency records, a held lease."""
    async with SqliteStore(path, clock=lambda: NOW) as writer:
        await writer.put_checkpoint("orders", "shard-0", Checkpoint("41", 41))
        await writer.remember_succeeded("orders", "shard-0", ["40", "41"], NOW + 60)
        await writer.create_leases("orders", [("shard-0", ())])
        (lease,) = await writer.list_leases("orders")
        await writer.take_lease("orders", lease, "host-a:1")


def sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-"))


async def test_a_missing_state_file_is_said_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "never" / "state.db"
    with pytest.raises(StoreError) as error:
        SqliteStore(path, read_only=True)
    assert str(error.value) == (f"no state file at {path}: no worker has run with this config yet")
    assert not path.parent.exists()
    with pytest.raises(StoreError, match="no state file at"):
        await open_for_inspection(f"sqlite:///{path}")
    assert not path.parent.exists()


async def test_a_read_only_store_reads_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await written_state(path)
    before = path.read_bytes()

    store = await open_for_inspection(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    try:
        assert await store.list_checkpoints("orders") == {"shard-0": Checkpoint("41", 41)}
        assert await store.count_idempotency_records("orders", NOW) == {"shard-0": 2}
        assert [(x.owner, x.epoch) for x in await store.list_leases("orders")] == [("host-a:1", 1)]
        with pytest.raises(StoreError, match="readonly"):
            await store.put_checkpoint("orders", "shard-0", Checkpoint("50", 50))
        with pytest.raises(StoreError, match="readonly"):
            await store.purge_expired(NOW + 3600)
    finally:
        await store.aclose()
    assert path.read_bytes() == before
    assert sidecars(path) == []  # no -wal or -shm left behind


async def test_a_read_only_store_sees_what_a_running_worker_commits(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStore(path) as writer:
        await writer.put_checkpoint("orders", "shard-0", Checkpoint("1", 1))
        async with SqliteStore(path, read_only=True) as reader:
            assert await reader.list_checkpoints("orders") == {"shard-0": Checkpoint("1", 1)}
            await writer.put_checkpoint("orders", "shard-0", Checkpoint("2", 2))
            assert await reader.list_checkpoints("orders") == {"shard-0": Checkpoint("2", 2)}
        # The reader closing does not take the writer's WAL away from under it.
        await writer.put_checkpoint("orders", "shard-0", Checkpoint("3", 3))
        assert await writer.get_checkpoint("orders", "shard-0") == Checkpoint("3", 3)


def plain_database(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda path: plain_database(path, "CREATE TABLE notes (text TEXT)"),
            "not a poller state file (it has no schema_version table)",
            id="another-database",
        ),
        pytest.param(
            lambda path: path.write_bytes(b"not a database at all, just text" * 100),
            "cannot read: file is not a database",
            id="not-a-database",
        ),
        pytest.param(
            lambda path: plain_database(
                path,
                "CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER)",
                f"INSERT INTO schema_version VALUES (1, {SCHEMA_VERSION + 1})",
            ),
            f"schema version {SCHEMA_VERSION + 1} was written by a newer poller",
            id="newer-schema",
        ),
        pytest.param(
            lambda path: plain_database(
                path,
                "CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER)",
                "INSERT INTO schema_version VALUES (1, 1)",
            ),
            "schema version 1 was written by an older poller",
            id="older-schema",
        ),
    ],
)
def test_a_file_that_is_not_a_current_state_file_is_refused_unchanged(
    tmp_path: Path, make: Callable[[Path], None], expected: str
) -> None:
    path = tmp_path / "state.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(StoreError) as error:
        SqliteStore(path, read_only=True)
    assert str(error.value).startswith(f"sqlite store {path}: ")
    assert expected in str(error.value)
    assert path.read_bytes() == before


async def test_a_memory_store_url_has_nothing_to_inspect() -> None:
    with pytest.raises(StoreError, match="lives in its worker's process only"):
        await open_for_inspection("memory://")
