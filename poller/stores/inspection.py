"""Reading a store's state without running a worker: what ``poller status`` shows.

Every store (memory, SQLite, DynamoDB) is an :class:`InspectableStore`: read-only calls that
list a mapping's checkpoints, count its idempotency records and list its leases (the
``list_leases`` of :class:`~poller.engine.leases.LeaseStore`). :func:`open_for_inspection` opens
the store a ``[store] url`` names without creating anything: a SQLite state file or a DynamoDB
table that does not exist is a :class:`~poller.errors.StoreError` saying so, never a new empty
store; a memory store has nothing to open from outside its worker's process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from poller.aws import AwsClients
from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.dynamodb import DynamoDBStore
from poller.stores.factory import open_store
from poller.stores.sqlite import SqliteStore

__all__ = ["InspectableStore", "open_for_inspection"]

_SQLITE = "sqlite:///"


@runtime_checkable
class InspectableStore(Protocol):
    """A store's state, read without changing it."""

    async def list_checkpoints(self, mapping_id: str) -> dict[str, Checkpoint]:
        """Every checkpoint of the mapping, by partition."""
        ...

    async def count_idempotency_records(self, mapping_id: str, now: float) -> dict[str, int]:
        """How many idempotency records of the mapping are still held (they expire after
        ``now``, epoch seconds), by partition; partitions without any are left out."""
        ...

    async def list_leases(self, mapping_id: str) -> list[Lease]:
        """Every lease of the mapping."""
        ...

    async def aclose(self) -> None:
        """Close."""
        ...


async def open_for_inspection(url: str, *, clients: AwsClients | None = None) -> InspectableStore:
    """Open the existing store ``url`` names, read-only; :class:`~poller.errors.StoreError` when
    there is none (or it cannot be read). A DynamoDB store needs the AWS ``clients``."""
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :].partition("?")[0]
        if not path:
            raise StoreError(f"store URL {url!r} names no file (expected sqlite:///PATH)")
        return SqliteStore(Path(path), read_only=True)
    store = open_store(url, clients=clients, create=False)
    if isinstance(store, DynamoDBStore):
        await store.open_existing()
        return store
    await store.aclose()
    raise StoreError(
        f"store URL {url!r}: a memory store lives in its worker's process only; there is no"
        " state to open from outside it"
    )
