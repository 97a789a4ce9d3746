"""Leases in the SQLite state file: the lease contract of :mod:`poller.engine.leases`, so that
several ``poller run`` processes on one host sharing a state file split the shards.

Every change is one ``UPDATE ... WHERE`` on what the caller last saw (SQLite serialises writers,
so a compare-and-set is exact); a fenced checkpoint write checks the lease and writes the
checkpoint in one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from poller.engine.leases import Lease
from poller.engine.state import Checkpoint

__all__ = ["LEASES_SCHEMA", "SqliteLeases"]

_T = TypeVar("_T")

LEASES_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    mapping_id TEXT    NOT NULL,
    partition  TEXT    NOT NULL,
    owner      TEXT,
    counter    INTEGER NOT NULL DEFAULT 0,
    epoch      INTEGER NOT NULL DEFAULT 0,
    parents    TEXT    NOT NULL DEFAULT '',
    finished   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mapping_id, partition)
) WITHOUT ROWID
"""

_LIST = """
SELECT partition, owner, counter, epoch, parents, finished FROM leases WHERE mapping_id = ?
"""
_CREATE = """
INSERT INTO leases (mapping_id, partition, parents) VALUES (?, ?, ?)
ON CONFLICT (mapping_id, partition) DO NOTHING
"""
_TAKE = """
UPDATE leases SET owner = ?, counter = counter + 1, epoch = epoch + 1
WHERE mapping_id = ? AND partition = ? AND finished = 0
  AND owner IS ? AND counter = ? AND epoch = ?
"""
_RENEW = """
UPDATE leases SET counter = counter + 1
WHERE mapping_id = ? AND partition = ? AND owner = ? AND epoch = ?
"""
_RELEASE = """
UPDATE leases SET owner = NULL, epoch = epoch + 1
WHERE mapping_id = ? AND partition = ? AND owner = ? AND epoch = ?
"""
_FINISH = "UPDATE leases SET owner = NULL, finished = 1 WHERE mapping_id = ? AND partition = ?"
_DELETE = "DELETE FROM leases WHERE mapping_id = ? AND partition = ?"
_HOLDS = "SELECT 1 FROM leases WHERE mapping_id = ? AND partition = ? AND owner = ? AND epoch = ?"


def _lease(row: tuple[str, str | None, int, int, str, int]) -> Lease:
    partition, owner, counter, epoch, parents, finished = row
    return Lease(
        partition, owner, counter, epoch, tuple(filter(None, parents.split(","))), bool(finished)
    )


class SqliteLeases:
    """The lease half of :class:`~poller.stores.sqlite.SqliteStore`."""

    _run: Callable[[str, Callable[[sqlite3.Connection], _T]], Awaitable[_T]]
    _write_checkpoint: Callable[[sqlite3.Connection, str, str, Checkpoint], None]

    async def list_leases(self, mapping_id: str) -> list[Lease]:
        """Every lease of the mapping."""

        def work(connection: sqlite3.Connection) -> list[Lease]:
            return [_lease(row) for row in connection.execute(_LIST, (mapping_id,))]

        return await self._run("read leases", work)

    async def create_leases(
        self, mapping_id: str, partitions: Sequence[tuple[str, tuple[str, ...]]]
    ) -> None:
        """Create a free lease for each (partition, parents) that has none yet."""
        rows = [(mapping_id, partition, ",".join(parents)) for partition, parents in partitions]

        def work(connection: sqlite3.Connection) -> None:
            connection.executemany(_CREATE, rows)

        if rows:
            await self._run("create leases", work)

    async def take_lease(self, mapping_id: str, seen: Lease, owner: str) -> Lease | None:
        """Become the owner if the lease is exactly as ``seen``."""
        parameters = (owner, mapping_id, seen.partition, seen.owner, seen.counter, seen.epoch)

        def work(connection: sqlite3.Connection) -> bool:
            return connection.execute(_TAKE, parameters).rowcount == 1

        if not await self._run("take lease", work):
            return None
        return Lease(seen.partition, owner, seen.counter + 1, seen.epoch + 1, seen.parents)

    async def renew_lease(self, mapping_id: str, held: Lease) -> Lease | None:
        """Bump the counter if still held as ``held``."""
        parameters = (mapping_id, held.partition, held.owner, held.epoch)

        def work(connection: sqlite3.Connection) -> bool:
            return connection.execute(_RENEW, parameters).rowcount == 1

        if not await self._run("renew lease", work):
            return None
        return Lease(held.partition, held.owner, held.counter + 1, held.epoch, held.parents)

    async def release_lease(self, mapping_id: str, held: Lease) -> bool:
        """Give the lease up if still held as ``held``."""
        parameters = (mapping_id, held.partition, held.owner, held.epoch)

        def work(connection: sqlite3.Connection) -> bool:
            return connection.execute(_RELEASE, parameters).rowcount == 1

        return await self._run("release lease", work)

    async def finish_lease(self, mapping_id: str, partition: str) -> None:
        """Mark the partition finished."""

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(_FINISH, (mapping_id, partition))

        await self._run("finish lease", work)

    async def delete_leases(self, mapping_id: str, partitions: Sequence[str]) -> None:
        """Forget these leases."""

        def work(connection: sqlite3.Connection) -> None:
            connection.executemany(_DELETE, [(mapping_id, p) for p in partitions])

        await self._run("delete leases", work)

    async def put_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """Check the lease and write the checkpoint in one transaction."""

        def work(connection: sqlite3.Connection) -> bool:
            connection.execute("BEGIN IMMEDIATE")
            try:
                if connection.execute(_HOLDS, (mapping_id, partition, owner, epoch)).fetchone():
                    self._write_checkpoint(connection, mapping_id, partition, checkpoint)
                    connection.execute("COMMIT")
                    return True
                connection.execute("ROLLBACK")
                return False
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

        return await self._run("write checkpoint (fenced)", work)
