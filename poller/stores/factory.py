"""Turn the ``[store] url`` of the config into an open store.

The config names a store by URL so that one string chooses the backend and its location:
``memory://`` for tests and throwaway runs, ``sqlite:///PATH`` for the embedded default. As with
SQLAlchemy, ``sqlite:///state.db`` is relative to the working directory and ``sqlite:////var/x.db``
(four slashes) is absolute. A ``?synchronous=FULL`` suffix asks SQLite for power-loss durability.
"""

from __future__ import annotations

from poller.engine.state import Store
from poller.errors import StoreError
from poller.stores.memory import MemoryStore
from poller.stores.sqlite import SqliteStore

__all__ = ["open_store"]

_MEMORY = "memory://"
_SQLITE = "sqlite:///"


def open_store(url: str) -> Store:
    """Open the store ``url`` names; :class:`~poller.errors.StoreError` for an unknown URL."""
    if url == _MEMORY:
        return MemoryStore()
    if url.startswith(_SQLITE):
        path, _, query = url[len(_SQLITE) :].partition("?")
        if not path:
            raise StoreError(f"store URL {url!r} names no file (expected sqlite:///PATH)")
        synchronous = _synchronous(url, query)
        if synchronous == "FULL":
            return SqliteStore(path, synchronous="FULL")
        return SqliteStore(path)
    raise StoreError(f"{url!r} is not a store URL (allowed: 'sqlite:///PATH' or 'memory://')")


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
