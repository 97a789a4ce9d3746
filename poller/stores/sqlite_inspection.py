"""Reading the SQLite state file without changing it: what ``poller status`` shows, while a worker
runs or after it stopped.

:func:`connect_read_only` never creates anything: a missing file is a
:class:`~poller.errors.StoreError` naming it, and no table is made in a file that lacks them. The
file is opened ``mode=rw`` (which does not create it) with ``PRAGMA query_only``, so no statement
of the connection writes. Not ``mode=ro``: a read-only connection to a WAL file leaves its
``-wal`` and ``-shm`` files behind, owned by whoever ran it, where a connection that closes last
removes them, as a worker's does. A file its user may not write is opened read-only by SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from poller.engine.state import Checkpoint
from poller.errors import StoreError

__all__ = ["SqliteInspection", "connect_read_only"]

_T = TypeVar("_T")

_CHECKPOINTS = """
SELECT partition, position, ordinal_key, finished, opened_at FROM checkpoints
WHERE mapping_id = ? ORDER BY partition
"""
_IDEMPOTENCY_COUNTS = """
SELECT partition, count(*) FROM idempotency
WHERE mapping_id = ? AND expires_at > ? GROUP BY partition ORDER BY partition
"""


def connect_read_only(path: Path, busy_timeout: float, schema_version: int) -> sqlite3.Connection:
    """A connection to the existing state file at ``path`` that never writes it.

    Refuses a missing file, a file that is not a poller state file, and one whose schema is not
    ``schema_version`` (written by a newer poller, or an older one no worker has upgraded yet).
    """
    if not path.is_file():
        raise StoreError(
            f"no state file at {path.resolve()}: no worker has run with this config yet"
        )
    try:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as error:
        raise StoreError(f"sqlite store {path}: cannot open: {error}") from error
    try:
        connection.execute("PRAGMA query_only = ON")
        row = connection.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    except sqlite3.Error as error:
        connection.close()
        if "no such table" in str(error):
            raise StoreError(
                f"sqlite store {path}: not a poller state file (it has no schema_version table)"
            ) from error
        raise StoreError(f"sqlite store {path}: cannot read: {error}") from error
    problem = None
    if row is None:
        problem = "not a poller state file (its schema_version table is empty)"
    elif row[0] > schema_version:
        problem = (
            f"schema version {row[0]} was written by a newer poller"
            f" (this one reads up to {schema_version})"
        )
    elif row[0] < schema_version:
        problem = (
            f"schema version {row[0]} was written by an older poller"
            " (a worker of this version brings it up to date when it starts)"
        )
    if problem is not None:
        connection.close()
        raise StoreError(f"sqlite store {path}: {problem}")
    return connection


class SqliteInspection:
    """The read-only half of :class:`~poller.stores.sqlite.SqliteStore`'s
    :class:`~poller.stores.inspection.InspectableStore`."""

    _run: Callable[[str, Callable[[sqlite3.Connection], _T]], Awaitable[_T]]

    async def list_checkpoints(self, mapping_id: str) -> dict[str, Checkpoint]:
        """Every checkpoint of the mapping, by partition."""

        def work(connection: sqlite3.Connection) -> dict[str, Checkpoint]:
            return {
                partition: Checkpoint(position, int(key), bool(finished), opened_at)
                for partition, position, key, finished, opened_at in connection.execute(
                    _CHECKPOINTS, (mapping_id,)
                )
            }

        return await self._run("read checkpoints", work)

    async def count_idempotency_records(self, mapping_id: str, now: float) -> dict[str, int]:
        """How many idempotency records of the mapping expire after ``now``, by partition."""

        def work(connection: sqlite3.Connection) -> dict[str, int]:
            return dict(connection.execute(_IDEMPOTENCY_COUNTS, (mapping_id, now)).fetchall())

        return await self._run("count idempotency records", work)
