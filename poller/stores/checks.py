"""What ``poller validate`` finds out about the store a config names, before anything runs.

``poller run`` opens its store first; a store it cannot use fails the start, so validate looks
at it the same way, without changing what is there:

* **SQLite**: a missing file is created exactly as ``poller run`` would create it (directories,
  schema, the write probe), then removed again with the directories made for it, so a path
  poller cannot create is found now. An existing file is opened read-only and must be a poller
  state file of a schema version this poller knows (an empty file, or a database with no tables,
  is a new store), then probed for writing inside a transaction that is rolled back. A file in
  use by a running worker may be too busy for the probe; that is said in a note, not refused.
* **DynamoDB**: the table is described, never created: a missing table is a note when ``[store]
  create`` is true (``poller run`` creates it) and a problem when it is false; a table whose keys
  are not poller's is a problem. The call is bounded in time; an endpoint that does not answer
  makes the store *unreachable*, which is not a config problem (the config may be right and the
  service down), so ``poller validate`` exits 1 for it rather than 2.
* **memory**: nothing to check.

With ``[aws] endpoint_url = "embedded"`` the DynamoDB table lives in a server poller starts
itself, so there is nothing to look at yet.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import anyio

from poller.aws import AwsClients
from poller.aws_calls import error_code
from poller.config.settings import PollerConfig
from poller.errors import StoreError
from poller.stores.factory import open_store
from poller.stores.sqlite import SCHEMA_VERSION, write_probe

__all__ = ["DYNAMODB_CHECK_SECONDS", "StoreVerdict", "check_store"]

#: The longest ``poller validate`` waits for DynamoDB to describe the table.
DYNAMODB_CHECK_SECONDS = 10.0
#: How long the SQLite write probe waits for a lock another process holds.
_SQLITE_BUSY_SECONDS = 1.0
#: The key schema of poller's DynamoDB table (see :mod:`poller.stores.dynamodb`).
_DYNAMODB_KEYS = {"pk": "HASH", "sk": "RANGE"}
#: Files SQLite keeps beside a database.
_SIDE_FILES = ("-wal", "-shm", "-journal")

_SQLITE = "sqlite:///"
_DYNAMODB = "dynamodb://"


@dataclass(frozen=True, slots=True)
class StoreVerdict:
    """What was found: ``problems`` refuse the config, ``notes`` are worth knowing, and
    ``unreachable`` says why the store could not be asked at all."""

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    unreachable: str | None = None


async def check_store(
    config: PollerConfig, *, dynamodb_seconds: float = DYNAMODB_CHECK_SECONDS
) -> StoreVerdict:
    """Look at the store of ``config`` as ``poller run`` would open it (see the module doc)."""
    url = config.store.url
    if url.startswith(_SQLITE):
        return await check_sqlite(url)
    if url.startswith(_DYNAMODB):
        if config.aws.embedded:
            return StoreVerdict()
        return await _check_dynamodb(config, url[len(_DYNAMODB) :], dynamodb_seconds)
    return StoreVerdict()


# --- SQLite ----------------------------------------------------------------------------------------


async def check_sqlite(url: str) -> StoreVerdict:
    """The verdict on the SQLite state file ``url`` names (the file work runs in a thread)."""
    return await anyio.to_thread.run_sync(_check_sqlite, url)


def _check_sqlite(url: str) -> StoreVerdict:
    path = Path(url[len(_SQLITE) :].partition("?")[0])
    where = f"[store] url: {path}"
    blocker = _non_directory_ancestor(path)
    if blocker is not None:
        return StoreVerdict(
            problems=(f"{where}: cannot be created: {blocker} is a file, not a directory",)
        )
    if path.is_dir():
        return StoreVerdict(problems=(f"{where} is a directory, not a file",))
    if path.exists():
        return _check_existing(path, where)
    return _check_by_creating(url, path, where)


def _non_directory_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a directory (so nothing can be
    created under it), else None."""
    for ancestor in path.absolute().parents:
        if ancestor.exists():
            return None if ancestor.is_dir() else ancestor
    return None


def _check_by_creating(url: str, path: Path, where: str) -> StoreVerdict:
    """Create the store as ``poller run`` would, then remove what was made for it (in a worker
    thread: the store is closed on the event loop)."""
    missing = [a for a in path.absolute().parents if not a.exists()]
    try:
        store = open_store(url)
    except StoreError as error:
        _remove_created(path, missing)
        return StoreVerdict(problems=(f"{where}: {error}",))
    try:
        anyio.from_thread.run(store.aclose)
    finally:
        _remove_created(path, missing)
    return StoreVerdict()


def _remove_created(path: Path, directories: list[Path]) -> None:
    """Remove the state file validate created, its side files, and the directories made for it
    (deepest first, and only while they are empty)."""
    for suffix in ("", *_SIDE_FILES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for directory in directories:  # parents are listed deepest first
        try:
            directory.rmdir()
        except OSError:
            break


def _check_existing(path: Path, where: str) -> StoreVerdict:
    if path.stat().st_size == 0:
        return _probe_writing(path, where, notes=())  # SQLite takes an empty file as a new store
    problems, notes = _schema_verdict(path, where)
    if problems:
        return StoreVerdict(problems=problems)
    return _probe_writing(path, where, notes=notes)


def _schema_verdict(path: Path, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(problems, notes) about what the file holds, read without writing it."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        return (f"{where}: cannot be opened: {error}",), ()
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return (), ()
        if "schema_version" not in tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            return (
                f"{where} is an SQLite database of something else (tables: {shown}; no "
                "schema_version table): give poller a file of its own",
            ), ()
        row = connection.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    except sqlite3.DatabaseError as error:
        return (f"{where} is not an SQLite database ({error})",), ()
    finally:
        connection.close()
    if row is None or not isinstance(row[0], int):
        return (f"{where}: not a poller state file (its schema_version table has no version)",), ()
    version = row[0]
    if version > SCHEMA_VERSION:
        return (
            f"{where}: schema version {version} was written by a newer poller (this one reads up "
            f"to {SCHEMA_VERSION}): run the newer poller, or give this one another file",
        ), ()
    if version < SCHEMA_VERSION:
        return (), (
            f"{where}: schema version {version}; poller run brings it up to {SCHEMA_VERSION}",
        )
    return (), ()


def _probe_writing(path: Path, where: str, notes: tuple[str, ...]) -> StoreVerdict:
    """Write inside a transaction and roll it back, as the store does when it opens."""
    try:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw",
            uri=True,
            timeout=_SQLITE_BUSY_SECONDS,
            isolation_level=None,
        )
    except sqlite3.Error as error:
        return StoreVerdict(problems=(f"{where}: cannot be opened for writing: {error}",))
    try:
        write_probe(connection)
    except sqlite3.DatabaseError as error:
        text = str(error)
        if "locked" in text or "busy" in text:
            busy = f"{where}: in use by another process (a running worker?); not probed for writing"
            return StoreVerdict(notes=(*notes, busy))
        if "readonly" in text or "read-only" in text:
            text += " (the file, or its directory, is read-only: poller must write it)"
        return StoreVerdict(problems=(f"{where}: cannot be written: {text}",))
    finally:
        connection.close()
    return StoreVerdict(notes=notes)


# --- DynamoDB --------------------------------------------------------------------------------------


async def _check_dynamodb(config: PollerConfig, table: str, seconds: float) -> StoreVerdict:
    where = f"[store] url: DynamoDB table {table!r}"
    endpoint = config.aws.endpoint_url or f"AWS in {config.aws.region}"
    clients = AwsClients(config.aws, endpoint_url=config.aws.endpoint_url)
    try:
        with anyio.fail_after(seconds):
            client = await clients.client("dynamodb")
            answer = await client.describe_table(TableName=table)
    except TimeoutError:
        return StoreVerdict(
            unreachable=f"{where}: {endpoint} did not answer DescribeTable within {seconds:g} s"
        )
    except Exception as error:
        return _dynamodb_error(error, where, endpoint, create=config.store.create)
    finally:
        with anyio.CancelScope(shield=True):
            await clients.aclose()
    description = answer.get("Table", {})
    keys = {key["AttributeName"]: key["KeyType"] for key in description.get("KeySchema", [])}
    if keys != _DYNAMODB_KEYS:
        return StoreVerdict(
            problems=(
                f"{where} has the keys {keys}, not poller's {_DYNAMODB_KEYS}: give poller a "
                "table of its own",
            )
        )
    return StoreVerdict()


def _dynamodb_error(error: Exception, where: str, endpoint: str, *, create: bool) -> StoreVerdict:
    code = error_code(error)
    if code == "ResourceNotFoundException":
        if create:
            return StoreVerdict(
                notes=(f"{where} does not exist yet; poller run creates it ([store] create)",)
            )
        return StoreVerdict(
            problems=(
                f"{where} does not exist and [store] create = false: create it, or let poller "
                "create it",
            )
        )
    if code is not None:
        response = getattr(error, "response", {})
        message = response.get("Error", {}).get("Message") if isinstance(response, dict) else None
        return StoreVerdict(problems=(f"{where}: DescribeTable refused: {code}: {message}",))
    if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return StoreVerdict(problems=(f"{where}: no AWS credentials: {error}",))
    return StoreVerdict(unreachable=f"{where}: {endpoint} cannot be reached: {error}")
