"""Durable state: checkpoints and idempotency records behind the engine's ``Store`` protocol.

``MemoryStore`` for tests and benchmarks, ``SqliteStore`` as the embedded default, and
``open_store`` to pick one from the ``[store] url`` of the config.
"""

from poller.stores.factory import open_store
from poller.stores.memory import MemoryStore
from poller.stores.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "open_store"]
