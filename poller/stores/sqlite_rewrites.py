"""What ``poller replay`` changes in a SQLite store: a checkpoint rewritten under a lease the
replay holds (backwards too, finished or not), and a partition's idempotency records forgotten.

Kept out of :class:`~poller.stores.sqlite.SqliteStore`'s worker-facing methods: nothing on the
worker's path calls these (see :class:`~poller.engine.state.CheckpointRewrites`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from poller.engine.state import Checkpoint

__all__ = ["SqliteRewrites"]

_T = TypeVar("_T")

_HOLDS = "SELECT 1 FROM leases WHERE mapping_id = ? AND partition = ? AND owner = ? AND epoch = ?"
_DROP = "DELETE FROM checkpoints WHERE mapping_id = ? AND partition = ?"
_FORGET = "DELETE FROM idempotency WHERE mapping_id = ? AND partition = ?"


class SqliteRewrites:
    """The replay half of :class:`~poller.stores.sqlite.SqliteStore`."""

    _run: Callable[[str, Callable[[sqlite3.Connection], _T]], Awaitable[_T]]
    _write_checkpoint: Callable[[sqlite3.Connection, str, str, Checkpoint], None]

    async def rewrite_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """Check the lease and replace the checkpoint in one transaction."""

        def work(connection: sqlite3.Connection) -> bool:
            connection.execute("BEGIN IMMEDIATE")
            try:
                if connection.execute(_HOLDS, (mapping_id, partition, owner, epoch)).fetchone():
                    # Gone first, so the worker's forward-only write below always lands.
                    connection.execute(_DROP, (mapping_id, partition))
                    self._write_checkpoint(connection, mapping_id, partition, checkpoint)
                    connection.execute("COMMIT")
                    return True
                connection.execute("ROLLBACK")
                return False
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

        return await self._run("rewrite checkpoint (replay)", work)

    async def forget_succeeded(self, mapping_id: str, partition: str) -> int:
        """Delete every idempotency record of the partition; how many there were."""

        def work(connection: sqlite3.Connection) -> int:
            return connection.execute(_FORGET, (mapping_id, partition)).rowcount

        return await self._run("forget idempotency records (replay)", work)
