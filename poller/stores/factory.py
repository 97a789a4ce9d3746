"""Turn the ``[store] url`` of the config into an open store.

The config names a store by URL so that one string chooses the backend and its location:
``memory://`` for tests and throwaway runs, ``sqlite:///PATH`` for the embedded default,
``dynamodb://TABLE`` for workers on many hosts. As with
SQLAlchemy, ``sqlite:///state.db`` is relative to the working directory and ``sqlite:////var/x.db``
(four slashes) is absolute. A ``?synchronous=FULL`` suffix asks SQLite for power-loss durability.
"""

from __future__ import annotations

from poller.aws import AwsClients
from poller.engine.state import Store
from poller.errors import StoreError
from poller.stores.dynamodb import DynamoDBStore
from poller.stores.memory import MemoryStore
from poller.stores.sqlite import SqliteStore

__all__ = ["open_store"]

_MEMORY = "memory://"
_SQLITE = "sqlite:///"
_DYNAMODB = "dynamodb://"


def open_store(url: str, *, clients: AwsClients | None = None, create: bool = True) -> Store:
    """Open the store ``url`` names; :class:`~poller.errors.StoreError` for an unknown URL.

    A DynamoDB store needs the worker's AWS ``clients`` (region, endpoint, credentials) and is
    checked (or its table created, with ``create``) by its ``open()``.
    """
    if url == _MEMORY:
        return MemoryStore()
    if url.startswith(_DYNAMODB):
        table = url[len(_DYNAMODB) :]
        if not table:
            raise StoreError(f"store URL {url!r} names no table (expected dynamodb://TABLE)")
        if clients is None:
            raise StoreError(f"store URL {url!r}: a DynamoDB store needs AWS clients")
        aws = clients

        async def client() -> object:
            return await aws.client("dynamodb")

        return DynamoDBStore(table, client, create=create)
    if url.startswith(_SQLITE):
        path, _, query = url[len(_SQLITE) :].partition("?")
        if not path:
            raise StoreError(f"store URL {url!r} names no file (expected sqlite:///PATH)")
        synchronous = _synchronous(url, query)
        if synchronous == "FULL":
            return SqliteStore(path, synchronous="FULL")
        return SqliteStore(path)
    raise StoreError(
        f"{url!r} is not a store URL (allowed: 'sqlite:///PATH', 'dynamodb://TABLE' or 'memory://')"
    )


def _synchronous(url: str, query: str) -> str:
    """The ``synchronous`` option of a SQLite URL: NORMAL unless ``?synchronous=FULL``."""
    if not query:
        return "NORMAL"
    name, _, value = query.partition("=")
    if name != "synchronous" or value.upper() not in ("NORMAL", "FULL"):
        raise StoreError(
            f"store URL {url!r}: unknown option {query!r} (allowed: synchronous=NORMAL|FULL)"
        )
    return value.upper()
