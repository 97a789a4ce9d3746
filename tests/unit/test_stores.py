"""The state stores: one behavioural suite that every store passes, then what only SQLite promises.

``TestStoreBehaviour`` runs against the memory and the SQLite store alike, so a test written against
the fast memory store proves the same rules of the durable one: checkpoints only move forward (also
for Kinesis ordinals far beyond 64 bits), a finished partition stays finished, idempotency records
expire and are purged, and mappings and partitions never see each other's state.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.config import StoreConfig
from poller.engine.state import Checkpoint, Store
from poller.errors import StoreError
from poller.stores import MemoryStore, SqliteStore, open_store
from poller.stores.sqlite import ORDINAL_DIGITS, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]

#: A real-looking Kinesis sequence number: 56 digits, about 2**185.
BIG = 49590338271490256608559692538361571095921575989136588898

START = 1_700_000_000.0

#: Ordinals from small numbers up to and past Kinesis sizes.
ORDINALS = st.integers(0, 10**60)

#: Commits 200 checkpoints, then dies by SIGKILL with a 201st write in flight.
CRASH_SCRIPT = """
import os, signal, sys

import anyio

from poller.engine.state import Checkpoint
from poller.stores import SqliteStore


async def main(path):
    store = SqliteStore(path)
    for n in range(1, 201):
        await store.put_checkpoint("mapping", "shard-0", Checkpoint(str(n), n))
    await store.remember_succeeded("mapping", "shard-0", ["200"], 4_000_000_000.0)
    sys.stdout.write("committed 200\\n")
    sys.stdout.flush()
    async with anyio.create_task_group() as group:
        # Die while the next write runs in the store's thread: it lands whole or not at all.
        group.start_soon(store.put_checkpoint, "mapping", "shard-0", Checkpoint("201", 201))
        await anyio.sleep(0)
        os.kill(os.getpid(), signal.SIGKILL)


anyio.run(main, sys.argv[1])
"""


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


StoreMaker = Callable[[], Store]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> StoreMaker:
    """Opens a fresh, empty store of one kind on each call."""
    if request.param == "memory":
        return lambda: MemoryStore(clock=clock)
    counter = itertools.count()
    return lambda: SqliteStore(tmp_path / f"state-{next(counter)}.db", clock=clock)


@pytest.fixture
async def store(make_store: StoreMaker) -> AsyncIterator[Store]:
    opened = make_store()
    yield opened
    await opened.aclose()


def cp(ordinal: int, *, finished: bool = False) -> Checkpoint:
    """A checkpoint whose position is its ordinal in decimal, as for Kinesis."""
    return Checkpoint(position=str(ordinal), ordinal=ordinal, finished=finished)


class TestStoreBehaviour:
    """Rules every store follows."""

    async def test_missing_checkpoint_is_none(self, store: Store) -> None:
        assert await store.get_checkpoint("mapping", "shard-0") is None

    async def test_put_then_get(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(7))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(7)

    async def test_checkpoint_only_moves_forward(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(10))
        await store.put_checkpoint("mapping", "shard-0", cp(5))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(10)
        # An equal ordinal changes nothing, not even the position text.
        await store.put_checkpoint("mapping", "shard-0", Checkpoint("other", 10))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(10)
        await store.put_checkpoint("mapping", "shard-0", cp(11))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(11)

    async def test_ordinals_beyond_64_bits_compare_as_integers(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(BIG))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(BIG)
        await store.put_checkpoint("mapping", "shard-0", cp(BIG - 1))
        await store.put_checkpoint("mapping", "shard-0", cp(2**64 + 1))
        await store.put_checkpoint("mapping", "shard-0", cp(9))  # longer text would sort after
        assert await store.get_checkpoint("mapping", "shard-0") == cp(BIG)
        await store.put_checkpoint("mapping", "shard-0", cp(BIG + 1))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(BIG + 1)

    async def test_largest_kinesis_ordinal_round_trips(self, store: Store) -> None:
        largest = 10**ORDINAL_DIGITS - 1
        await store.put_checkpoint("mapping", "shard-0", cp(largest))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(largest)

    async def test_negative_ordinal_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"negative|0\.\."):
            await store.put_checkpoint("mapping", "shard-0", cp(-1))

    async def test_finished_put_with_equal_ordinal_sets_finished(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(BIG))
        await store.put_checkpoint("mapping", "shard-0", cp(BIG, finished=True))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(BIG, finished=True)

    async def test_finished_put_with_greater_ordinal(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(3))
        await store.put_checkpoint("mapping", "shard-0", cp(4, finished=True))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(4, finished=True)

    async def test_finished_put_behind_is_ignored(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(10))
        await store.put_checkpoint("mapping", "shard-0", cp(9, finished=True))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(10)

    async def test_finished_is_never_unfinished(self, store: Store) -> None:
        await store.put_checkpoint("mapping", "shard-0", cp(10, finished=True))
        await store.put_checkpoint("mapping", "shard-0", cp(10))
        await store.put_checkpoint("mapping", "shard-0", cp(11))
        await store.put_checkpoint("mapping", "shard-0", cp(12, finished=True))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(10, finished=True)

    async def test_concurrent_puts_keep_the_greatest(self, store: Store) -> None:
        ordinals = list(range(200))
        random.Random(7).shuffle(ordinals)
        async with anyio.create_task_group() as group:
            for ordinal in ordinals:
                group.start_soon(store.put_checkpoint, "mapping", "shard-0", cp(ordinal))
        assert await store.get_checkpoint("mapping", "shard-0") == cp(199)

    async def test_remember_and_lookup(self, store: Store, clock: FakeClock) -> None:
        await store.remember_succeeded("mapping", "shard-0", ["1", "2"], clock.now + 60)
        assert await store.succeeded_among("mapping", "shard-0", ["1", "2", "3"]) == {"1", "2"}
        assert await store.succeeded_among("mapping", "shard-0", ["3"]) == frozenset()
        assert await store.succeeded_among("mapping", "shard-0", []) == frozenset()
        await store.remember_succeeded("mapping", "shard-0", [], clock.now + 60)

    async def test_lookup_of_many_positions(self, store: Store, clock: FakeClock) -> None:
        positions = [str(BIG + n) for n in range(2_500)]
        await store.remember_succeeded("mapping", "shard-0", positions[::2], clock.now + 60)
        found = await store.succeeded_among("mapping", "shard-0", positions + positions[:10])
        assert found == frozenset(positions[::2])

    async def test_records_expire(self, store: Store, clock: FakeClock) -> None:
        await store.remember_succeeded("mapping", "shard-0", ["1"], START + 10)
        clock.now = START + 9.5
        assert await store.succeeded_among("mapping", "shard-0", ["1"]) == {"1"}
        clock.now = START + 10
        assert await store.succeeded_among("mapping", "shard-0", ["1"]) == frozenset()

    async def test_remember_extends_and_never_shortens(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.remember_succeeded("mapping", "shard-0", ["1", "2"], START + 10)
        await store.remember_succeeded("mapping", "shard-0", ["1"], START + 100)
        await store.remember_succeeded("mapping", "shard-0", ["2"], START + 5)
        clock.now = START + 50
        assert await store.succeeded_among("mapping", "shard-0", ["1", "2"]) == {"1"}
        clock.now = START + 9
        assert await store.succeeded_among("mapping", "shard-0", ["1", "2"]) == {"1", "2"}

    async def test_purge_expired(self, store: Store, clock: FakeClock) -> None:
        await store.remember_succeeded("mapping", "shard-0", ["1", "2"], START + 10)
        await store.remember_succeeded("mapping", "shard-1", ["1"], START + 5)
        await store.remember_succeeded("mapping", "shard-0", ["3"], START + 100)
        assert await store.purge_expired(START) == 0
        assert await store.purge_expired(START + 10) == 3
        assert await store.purge_expired(START + 10) == 0
        assert await store.succeeded_among("mapping", "shard-0", ["1", "2", "3"]) == {"3"}
        # Purged records are gone, not only hidden: moving the clock back cannot revive them.
        clock.now = START - 1000
        assert await store.succeeded_among("mapping", "shard-0", ["1", "2", "3"]) == {"3"}

    async def test_mappings_and_partitions_are_isolated(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.put_checkpoint("a", "shard-0", cp(5))
        await store.put_checkpoint("a", "shard-1", cp(9, finished=True))
        await store.put_checkpoint("b", "shard-0", cp(1))
        assert await store.get_checkpoint("a", "shard-0") == cp(5)
        assert await store.get_checkpoint("a", "shard-1") == cp(9, finished=True)
        assert await store.get_checkpoint("b", "shard-0") == cp(1)
        assert await store.get_checkpoint("b", "shard-1") is None

        await store.remember_succeeded("a", "shard-0", ["1"], clock.now + 60)
        assert await store.succeeded_among("a", "shard-0", ["1"]) == {"1"}
        assert await store.succeeded_among("a", "shard-1", ["1"]) == frozenset()
        assert await store.succeeded_among("b", "shard-0", ["1"]) == frozenset()

    async def test_closed_store_refuses_calls(self, make_store: StoreMaker) -> None:
        closed = make_store()
        await closed.aclose()
        await closed.aclose()  # idempotent
        with pytest.raises(StoreError, match="close"):
            await closed.get_checkpoint("mapping", "shard-0")

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(ordinals=st.lists(st.one_of(ORDINALS, st.integers(0, 20)), min_size=1, max_size=15))
    def test_stored_ordinal_is_the_greatest_put(
        self, make_store: StoreMaker, ordinals: list[int]
    ) -> None:
        async def scenario() -> None:
            store = make_store()
            try:
                for count, ordinal in enumerate(ordinals, start=1):
                    await store.put_checkpoint("mapping", "shard-0", cp(ordinal))
                    stored = await store.get_checkpoint("mapping", "shard-0")
                    assert stored == cp(max(ordinals[:count]))
            finally:
                await store.aclose()

        anyio.run(scenario)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        puts=st.lists(
            st.tuples(st.integers(0, 8), st.sampled_from([False, False, False, True])),
            min_size=1,
            max_size=12,
        )
    )
    def test_a_finished_checkpoint_is_final(
        self, make_store: StoreMaker, puts: list[tuple[int, bool]]
    ) -> None:
        async def scenario() -> None:
            store = make_store()
            expected: Checkpoint | None = None
            try:
                for ordinal, finished in puts:
                    put = cp(ordinal, finished=finished)
                    await store.put_checkpoint("mapping", "shard-0", put)
                    if expected is None or (
                        not expected.finished
                        and (
                            ordinal > expected.ordinal or (ordinal == expected.ordinal and finished)
                        )
                    ):
                        expected = put
                    assert await store.get_checkpoint("mapping", "shard-0") == expected
            finally:
                await store.aclose()

        anyio.run(scenario)


class TestSqliteStore:
    """What only the durable store promises."""

    async def test_state_survives_close_and_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "nested" / "dirs" / "state.db"
        async with SqliteStore(path) as store:
            await store.put_checkpoint("mapping", "shard-0", cp(BIG))
            await store.put_checkpoint("mapping", "shard-1", cp(4, finished=True))
            await store.remember_succeeded("mapping", "shard-0", ["a", "b"], 4_000_000_000.0)
        async with SqliteStore(path) as store:
            assert await store.get_checkpoint("mapping", "shard-0") == cp(BIG)
            assert await store.get_checkpoint("mapping", "shard-1") == cp(4, finished=True)
            assert await store.succeeded_among("mapping", "shard-0", ["a", "b", "c"]) == {"a", "b"}
            await store.put_checkpoint("mapping", "shard-0", cp(BIG - 1))
            assert await store.get_checkpoint("mapping", "shard-0") == cp(BIG)

    async def test_file_is_plain_sqlite_in_wal_mode(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        async with SqliteStore(path) as store:
            await store.put_checkpoint("mapping", "shard-0", cp(42))
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert raw.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            ((key,),) = raw.execute("SELECT ordinal_key FROM checkpoints").fetchall()
        raw.close()
        assert len(key) == ORDINAL_DIGITS
        assert int(key) == 42

    async def test_lookup_stays_under_the_variable_limit(self, tmp_path: Path) -> None:
        async with SqliteStore(tmp_path / "state.db") as store:
            # Builds of SQLite before 3.32 allow 999 variables per statement; so does this one now.
            connection = store._connection
            assert connection is not None
            connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
            positions = [str(BIG + n) for n in range(2_500)]
            await store.remember_succeeded("mapping", "shard-0", positions[1::3], 4_000_000_000.0)
            found = await store.succeeded_among("mapping", "shard-0", positions)
            assert found == frozenset(positions[1::3])

    @pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
    def test_committed_checkpoints_survive_sigkill(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        result = subprocess.run(
            [sys.executable, "-c", CRASH_SCRIPT, str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == -signal.SIGKILL, result.stderr
        assert "committed 200" in result.stdout
        # The process never closed the store: the writes are still in the write-ahead log.
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        assert wal.stat().st_size > 0

        async def reopen() -> None:
            async with SqliteStore(path) as store:
                assert await store.get_checkpoint("mapping", "shard-0") in (cp(200), cp(201))
                assert await store.succeeded_among("mapping", "shard-0", ["200"]) == {"200"}

        anyio.run(reopen)

    def test_unwritable_path_raises_store_error(self, tmp_path: Path) -> None:
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a directory should be")
        path = blocker / "sub" / "state.db"
        with pytest.raises(StoreError) as caught:
            SqliteStore(path)
        assert str(path) in str(caught.value)

    @pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere"
    )
    def test_read_only_directory_raises_store_error(self, tmp_path: Path) -> None:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(StoreError) as caught:
                SqliteStore(locked / "state.db")
        finally:
            locked.chmod(0o700)
        assert str(locked / "state.db") in str(caught.value)

    def test_a_file_that_is_not_a_database_raises_store_error(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        path.write_bytes(b"definitely not sqlite" * 100)
        with pytest.raises(StoreError, match=r"state\.db"):
            SqliteStore(path)

    def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "state.db"
        anyio.run(SqliteStore(path).aclose)
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        raw.close()
        with pytest.raises(StoreError, match="newer"):
            SqliteStore(path)

    def test_synchronous_option(self, tmp_path: Path) -> None:
        anyio.run(SqliteStore(tmp_path / "full.db", synchronous="FULL").aclose)
        with pytest.raises(ValueError, match="synchronous"):
            SqliteStore(tmp_path / "bad.db", synchronous="OFF")  # type: ignore[arg-type]


class TestOpenStore:
    """The ``[store] url`` of the config."""

    async def test_memory(self) -> None:
        store = open_store("memory://")
        assert isinstance(store, MemoryStore)
        await store.aclose()

    async def test_relative_sqlite_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        store = open_store(StoreConfig().url)
        assert isinstance(store, SqliteStore)
        await store.aclose()
        assert (tmp_path / ".poller" / "state.db").is_file()

    async def test_absolute_sqlite_path(self, tmp_path: Path) -> None:
        path = tmp_path / "abs" / "state.db"
        assert path.is_absolute()
        store = open_store(f"sqlite:///{path}")  # -> sqlite:////tmp/...
        assert isinstance(store, SqliteStore)
        assert store.path == path
        await store.aclose()
        assert path.is_file()

    async def test_synchronous_full(self, tmp_path: Path) -> None:
        store = open_store(f"sqlite:///{tmp_path / 'state.db'}?synchronous=full")
        assert isinstance(store, SqliteStore)
        assert "FULL" in repr(store)
        await store.aclose()

    @pytest.mark.parametrize(
        "url",
        [
            "",
            "memory://x",
            "sqlite://",
            "sqlite:///",
            "sqlite://relative.db",
            "postgres://localhost/poller",
            "sqlite:///state.db?journal=off",
        ],
    )
    def test_unknown_urls_raise_store_error(self, url: str) -> None:
        with pytest.raises(StoreError):
            open_store(url)


async def test_a_state_file_deleted_while_running_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import poller.stores.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_FILE_CHECK_SECONDS", 0.0)
    path = tmp_path / "state.db"
    async with SqliteStore(path) as store:
        await store.put_checkpoint("m", "s", Checkpoint("1", 1))
        path.unlink()
        with pytest.raises(StoreError, match="state file was deleted or replaced") as error:
            await store.put_checkpoint("m", "s", Checkpoint("2", 2))
        assert str(path) in str(error.value)


async def test_a_state_file_poller_may_not_write_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without write permission, SQLite opens a file read-only and says nothing; the store must
    say so at open, not at the first checkpoint. (Tests run as root, whom permissions do not
    stop, so the file is opened read-only as SQLite would open it.)"""
    import poller.stores.sqlite as sqlite_module

    path = tmp_path / "state.db"
    async with SqliteStore(path) as store:
        await store.put_checkpoint("m", "s", Checkpoint("1", 1))
    connect = sqlite3.connect

    def read_only(database: Path, **options: Any) -> sqlite3.Connection:
        return connect(f"file:{database}?mode=ro", uri=True, **options)

    monkeypatch.setattr(sqlite_module.sqlite3, "connect", read_only)
    with pytest.raises(StoreError) as error:
        SqliteStore(path)
    assert str(error.value).startswith(f"sqlite store {path}: cannot open: ")
    assert "read-only" in str(error.value)
