"""``poller validate`` looks at the SQLite state file a config names as ``poller run`` would open
it, and leaves it as it was: every refusal names the path and what is wrong."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import anyio
import pytest

from poller.engine.state import Checkpoint
from poller.stores.checks import StoreVerdict, check_sqlite
from poller.stores.sqlite import SCHEMA_VERSION, SqliteStore


def verdict(path: Path | str) -> StoreVerdict:
    return anyio.run(check_sqlite, f"sqlite:///{path}")


async def _state_file(path: Path) -> None:
    store = SqliteStore(path)
    await store.put_checkpoint("m", "shard", Checkpoint(position="7", ordinal=7))
    await store.aclose()


def state_file(path: Path, version: int | None = None) -> Path:
    """A real poller state file at ``path`` (its schema version changed to ``version``)."""
    anyio.run(_state_file, path)
    if version is not None:
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE schema_version SET version = ?", (version,))
        connection.close()
    return path


def test_a_file_that_is_not_a_database_is_refused_by_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"these are not the bytes of an SQLite database, " * 40)

    found = verdict(path)

    (problem,) = found.problems
    assert str(path) in problem and "is not an SQLite database" in problem


def test_a_database_of_another_schema_is_refused_naming_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.close()

    (problem,) = verdict(path).problems

    assert str(path) in problem
    assert "database of something else" in problem and "users" in problem


def test_a_state_file_of_a_newer_poller_is_refused(tmp_path: Path) -> None:
    path = state_file(tmp_path / "state.db", version=SCHEMA_VERSION + 1)

    (problem,) = verdict(path).problems

    assert str(path) in problem
    assert f"schema version {SCHEMA_VERSION + 1} was written by a newer poller" in problem


def test_a_state_file_of_an_older_poller_is_accepted_with_a_note_and_not_upgraded(
    tmp_path: Path,
) -> None:
    path = state_file(tmp_path / "state.db", version=SCHEMA_VERSION - 1)

    found = verdict(path)

    assert found.problems == ()
    (note,) = found.notes
    assert f"schema version {SCHEMA_VERSION - 1}" in note
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT version FROM schema_version").fetchone()
    connection.close()
    assert version == SCHEMA_VERSION - 1  # validate changed nothing


def test_a_store_path_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    path = tmp_path / "not-a-dir" / "deeper" / "state.db"

    (problem,) = verdict(path).problems

    assert str(path) in problem
    assert f"{tmp_path / 'not-a-dir'} is a file, not a directory" in problem


def test_a_store_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (problem,) = verdict(tmp_path).problems

    assert "is a directory, not a file" in problem


def test_a_good_state_file_passes_and_is_left_byte_for_byte(tmp_path: Path) -> None:
    path = state_file(tmp_path / "state.db")
    before = path.read_bytes()

    assert verdict(path) == StoreVerdict()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_an_empty_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()

    assert verdict(path) == StoreVerdict()


def test_a_missing_file_is_created_as_run_would_then_removed_with_its_directories(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "nested" / "state.db"

    assert verdict(path) == StoreVerdict()
    assert list(tmp_path.iterdir()) == []


def test_a_file_another_process_is_writing_is_accepted_with_a_note(tmp_path: Path) -> None:
    path = state_file(tmp_path / "state.db")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        found = verdict(path)
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert found.problems == ()
    assert any("in use by another process" in note for note in found.notes)


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root writes read-only files and directories; the probe cannot be refused as root",
)
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    path = state_file(tmp_path / "state.db")
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        (problem,) = verdict(path).problems
    finally:
        tmp_path.chmod(0o755)
        path.chmod(0o644)

    assert str(path) in problem and "cannot be written" in problem
