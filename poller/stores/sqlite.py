"""The embedded default store: checkpoints and idempotency records in one SQLite file.

One worker process needs durable state without running a database server, and a person needs to
inspect that state with the ``sqlite3`` shell. Both are served by a single file in WAL mode.

Durability. With ``synchronous="NORMAL"`` (the default) a committed write survives the process
crashing or being killed with SIGKILL at any instant, because WAL frames reach the operating system
before the commit returns. It may not survive the machine losing power: the last commits can be
rolled back. ``synchronous="FULL"`` syncs the WAL on every commit and survives power loss too, at a
cost of one fsync per checkpoint write. Losing a checkpoint is never data loss for poller (records
are re-read, at least once), only repeated work.

Concurrency. sqlite3 calls block, so every call runs in a worker thread
(:func:`anyio.to_thread.run_sync`) over ONE connection. A capacity limiter of one token queues
callers in the event loop instead of in threads, and a thread lock keeps the connection to one user
even if the store is shared across event loops. A cancelled call lets its statement finish in the
thread before the cancellation arrives, so a write is applied whole or not at all.

Ordinals. Kinesis sequence numbers have up to 129 decimal digits, far beyond SQLite's 64-bit
integers. Each ordinal is stored as fixed-width zero-padded decimal text, whose byte order is the
numeric order, so "never move backwards" is one atomic ``INSERT ... ON CONFLICT DO UPDATE WHERE``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.to_thread
import structlog

from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.base import ClosingStore
from poller.stores.sqlite_inspection import SqliteInspection, connect_read_only
from poller.stores.sqlite_leases import LEASES_SCHEMA, SqliteLeases
from poller.stores.sqlite_rewrites import SqliteRewrites

__all__ = [
    "ORDINAL_DIGITS",
    "SCHEMA_VERSION",
    "SqliteStore",
    "Synchronous",
    "ordinal_key",
    "write_probe",
]

logger = structlog.get_logger(__name__)

#: The schema this module writes; a file with a higher version was written by a newer poller.
SCHEMA_VERSION = 3

#: Width of the stored ordinal text: the longest Kinesis sequence number (``[1-9]\d{0,128}``).
ORDINAL_DIGITS = 129
_ORDINAL_LIMIT = 10**ORDINAL_DIGITS

#: Positions per ``IN (...)`` list, well under SQLite's smallest variable limit (999).
_IN_CHUNK = 500

Synchronous = Literal["NORMAL", "FULL"]

_T = TypeVar("_T")

# One statement per item: executescript() would commit the transaction they run in.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS checkpoints (
    mapping_id  TEXT    NOT NULL,
    partition   TEXT    NOT NULL,
    position    TEXT    NOT NULL,
    ordinal_key TEXT    NOT NULL,
    finished    INTEGER NOT NULL DEFAULT 0,
    opened_at   REAL,
    updated_at  REAL    NOT NULL,
    window_start INTEGER,
    window_state TEXT,
    PRIMARY KEY (mapping_id, partition)
) WITHOUT ROWID
""",
    """
CREATE TABLE IF NOT EXISTS idempotency (
    mapping_id TEXT NOT NULL,
    partition  TEXT NOT NULL,
    position   TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (mapping_id, partition, position)
) WITHOUT ROWID
""",
    "CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at)",
)

#: Version 3: a tumbling window's start and state travel with the checkpoint.
_WINDOW_COLUMNS = (
    "ALTER TABLE checkpoints ADD COLUMN window_start INTEGER",
    "ALTER TABLE checkpoints ADD COLUMN window_state TEXT",
)

# Replaces the stored row only when the new ordinal is greater, or equal and newly finished or
# changing a tumbling window (Checkpoint.replaces); a finished row is never touched again.
_PUT_CHECKPOINT = """
INSERT INTO checkpoints (mapping_id, partition, position, ordinal_key, finished, opened_at,
    updated_at, window_start, window_state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (mapping_id, partition) DO UPDATE SET
    position = excluded.position,
    ordinal_key = excluded.ordinal_key,
    finished = excluded.finished,
    opened_at = excluded.opened_at,
    updated_at = excluded.updated_at,
    window_start = excluded.window_start,
    window_state = excluded.window_state
WHERE checkpoints.finished = 0
  AND (excluded.ordinal_key > checkpoints.ordinal_key
       OR (excluded.ordinal_key = checkpoints.ordinal_key
           AND (excluded.finished = 1 OR excluded.window_start IS NOT NULL
                OR checkpoints.window_start IS NOT NULL)))
"""

_GET_CHECKPOINT = """
SELECT position, ordinal_key, finished, opened_at, window_start, window_state FROM checkpoints
WHERE mapping_id = ? AND partition = ?
"""

_REMEMBER = """
INSERT INTO idempotency (mapping_id, partition, position, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT (mapping_id, partition, position) DO UPDATE SET
    expires_at = max(idempotency.expires_at, excluded.expires_at)
"""

_PURGE = "DELETE FROM idempotency WHERE expires_at <= ?"


def ordinal_key(ordinal: int) -> str:
    """The fixed-width decimal text that sorts like ``ordinal``; ValueError when out of range."""
    if not 0 <= ordinal < _ORDINAL_LIMIT:
        raise ValueError(f"checkpoint ordinal must be in 0..10**{ORDINAL_DIGITS}-1, got {ordinal}")
    return f"{ordinal:0{ORDINAL_DIGITS}d}"


class SqliteStore(SqliteInspection, SqliteLeases, SqliteRewrites, ClosingStore):
    """Checkpoints and idempotency records in a SQLite file; implements the Store protocol (and
    the read-only :class:`~poller.stores.inspection.InspectableStore`).

    Opening is synchronous (a one-time cost at startup, so a bad path fails before anything runs);
    every later call runs off the event loop. Raises :class:`~poller.errors.StoreError`, naming the
    file and the cause, when the file cannot be opened, read or written.
    """

    __slots__ = ("_clock", "_connection", "_limiter", "_lock", "_path", "_synchronous")

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        """Open (creating it and its parent directories if needed) the store file at ``path``.

        ``read_only`` opens an existing file for inspection only: nothing is created or written
        (see :mod:`poller.stores.sqlite_inspection`).

        ``synchronous="FULL"`` adds durability against power loss (see the module docstring).
        ``busy_timeout`` is how long a write waits for another process holding the file's lock.
        ``clock`` returns epoch seconds; it decides whether an idempotency record expired.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self._path = Path(path)
        self._synchronous: Synchronous = synchronous
        self._clock = clock
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._connection: sqlite3.Connection | None = (
            connect_read_only(self._path, busy_timeout, SCHEMA_VERSION)
            if read_only
            else _open(self._path, synchronous, busy_timeout)
        )
        #: The file's identity when opened: a state file deleted or replaced while the worker runs
        #: would otherwise go unnoticed until a restart re-handed everything.
        self._identity = _identity(self._path)
        self._checked_at = time.monotonic()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r}, synchronous={self._synchronous!r})"

    # --- checkpoints -----------------------------------------------------------------------------

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        """The stored checkpoint, or None when the partition was never checkpointed."""

        def work(connection: sqlite3.Connection) -> Checkpoint | None:
            row = connection.execute(_GET_CHECKPOINT, (mapping_id, partition)).fetchone()
            if row is None:
                return None
            position, key, finished, opened_at, window_start, window_state = row
            return Checkpoint(
                position=position,
                ordinal=int(key),
                finished=bool(finished),
                opened_at=opened_at,
                window_start=window_start,
                window_state=window_state,
            )

        return await self._run("read checkpoint", work)

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` unless the stored one is further or finished (one SQL statement)."""
        ordinal_key(checkpoint.ordinal)  # a bad ordinal is refused before the thread hop

        def work(connection: sqlite3.Connection) -> None:
            self._write_checkpoint(connection, mapping_id, partition, checkpoint)

        await self._run("write checkpoint", work)

    def _write_checkpoint(
        self,
        connection: sqlite3.Connection,
        mapping_id: str,
        partition: str,
        checkpoint: Checkpoint,
    ) -> None:
        connection.execute(
            _PUT_CHECKPOINT,
            (
                mapping_id,
                partition,
                checkpoint.position,
                ordinal_key(checkpoint.ordinal),
                int(checkpoint.finished),
                checkpoint.opened_at,
                self._clock(),
                checkpoint.window_start,
                checkpoint.window_state,
            ),
        )

    # --- idempotency -----------------------------------------------------------------------------

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        """Record that these positions succeeded (one transaction); a later expiry wins."""
        if not positions:
            return
        rows = [(mapping_id, partition, position, expires_at) for position in positions]

        def work(connection: sqlite3.Connection) -> None:
            with _transaction(connection):
                connection.executemany(_REMEMBER, rows)

        await self._run("write idempotency records", work)

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        """Which of ``positions`` are recorded as succeeded and not yet expired."""
        if not positions:
            return frozenset()
        wanted = list(dict.fromkeys(positions))
        now = self._clock()

        def work(connection: sqlite3.Connection) -> frozenset[str]:
            found: set[str] = set()
            for chunk in _chunks(wanted, _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                cursor = connection.execute(
                    "SELECT position FROM idempotency"
                    " WHERE mapping_id = ? AND partition = ? AND expires_at > ?"
                    f" AND position IN ({marks})",
                    (mapping_id, partition, now, *chunk),
                )
                found.update(row[0] for row in cursor)
            return frozenset(found)

        return await self._run("read idempotency records", work)

    async def purge_expired(self, now: float) -> int:
        """Delete idempotency records whose expiry is at or before ``now``; return how many."""

        def work(connection: sqlite3.Connection) -> int:
            return connection.execute(_PURGE, (now,)).rowcount

        return await self._run("purge idempotency records", work)

    async def aclose(self) -> None:
        """Close the connection (SQLite folds the WAL back into the file); idempotent."""

        def work() -> None:
            with self._lock:
                connection, self._connection = self._connection, None
                if connection is not None:
                    connection.close()

        await anyio.to_thread.run_sync(work, limiter=self._limiter)
        logger.debug("sqlite store closed", path=str(self._path))

    # --- plumbing --------------------------------------------------------------------------------

    async def _run(self, action: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._locked, action, work, limiter=self._limiter)

    def _locked(self, action: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            connection = self._connection
            if connection is None:
                raise StoreError(f"sqlite store {self._path}: cannot {action}, the store is closed")
            self._check_file(action)
            try:
                return work(connection)
            except sqlite3.Error as error:
                raise StoreError(
                    f"sqlite store {self._path}: cannot {action}: {_describe(error)}"
                ) from error

    def _check_file(self, action: str) -> None:
        """At most once a second: the file on disk is still the one this store opened."""
        now = time.monotonic()
        if now - self._checked_at < _FILE_CHECK_SECONDS:
            return
        self._checked_at = now
        if _identity(self._path) != self._identity:
            raise StoreError(
                f"sqlite store {self._path}: cannot {action}: the state file was deleted or "
                "replaced while poller ran (checkpoints written now would be lost); restore it "
                "or restart the worker"
            )


#: How often each store checks that its file is still there.
_FILE_CHECK_SECONDS = 1.0


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _open(path: Path, synchronous: Synchronous, busy_timeout: float) -> sqlite3.Connection:
    """Create directories, connect, set pragmas and bring the schema up to date."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"sqlite store {path}: cannot create directory {path.parent}: {_describe(error)}"
        ) from error
    try:
        connection = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as error:
        raise StoreError(f"sqlite store {path}: cannot open: {_describe(error)}") from error
    try:
        (journal_mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        _migrate(connection, path)
        write_probe(connection)
    except sqlite3.Error as error:
        connection.close()
        hint = ""
        if "readonly" in str(error).lower() or "read-only" in str(error).lower():
            hint = " (the state file, or its directory, is read-only: poller must write it)"
        raise StoreError(f"sqlite store {path}: cannot open: {_describe(error)}{hint}") from error
    except BaseException:
        connection.close()
        raise
    if str(journal_mode).lower() != "wal":
        logger.warning(
            "sqlite store cannot use WAL mode; writes block readers",
            path=str(path),
            journal_mode=journal_mode,
        )
    logger.info("sqlite store opened", path=str(path), synchronous=synchronous)
    return connection


def write_probe(connection: sqlite3.Connection) -> None:
    """Write once, rolled back. SQLite opens a file it may not write read-only, without a word,
    and the first checkpoint would fail; this makes that show at once (sqlite3.Error)."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        connection.execute("ROLLBACK")


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file; refuse a file written by a newer schema."""
    with _transaction(connection):
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        row = connection.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
        if row is None:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(LEASES_SCHEMA)
            connection.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?)", (SCHEMA_VERSION,)
            )
        elif row[0] < SCHEMA_VERSION:
            if row[0] < 2:  # version 1 files gain the leases table
                connection.execute(LEASES_SCHEMA)
            for statement in _WINDOW_COLUMNS:  # and version 2 files the window columns
                connection.execute(statement)
            connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise StoreError(
                f"sqlite store {path}: schema version {row[0]} was written by a newer poller"
                f" (this one reads up to {SCHEMA_VERSION})"
            )


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back when the body or the commit fails."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
