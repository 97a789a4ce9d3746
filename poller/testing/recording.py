"""Recording handlers: what reached the function, in order, and failures on demand."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from poller.records import Batch, Record

__all__ = ["RecordingHandler", "RecordingLambdaHandler"]


class RecordingHandler:
    """A typed handler (``handler(batch)``) that keeps every batch it is handed.

    ``fail(batch)`` decides what fails: True fails the whole batch (the handler raises), an
    iterable of records (or item identifiers) fails just those (a partial failure), False or
    None lets the batch succeed. Without it every batch succeeds.
    """

    def __init__(
        self, fail: Callable[[Batch], bool | Iterable[Record | str] | None] | None = None
    ) -> None:
        #: Every batch handed over, in the order the handler was called.
        self.batches: list[Batch] = []
        self._fail = fail
        self._changed = anyio.Event()

    @property
    def records(self) -> list[Record]:
        """Every record handed over, retries included, in order."""
        return [record for batch in self.batches for record in batch]

    def data(self) -> list[bytes]:
        """The payloads handed over, in order."""
        return [record.data for record in self.records]

    async def __call__(self, batch: Batch) -> list[Record | str] | None:
        self.batches.append(batch)
        self._changed.set()
        self._changed = anyio.Event()
        verdict = self._fail(batch) if self._fail is not None else None
        if verdict is True:
            raise RuntimeError(f"batch {batch.batch_id} failed on purpose")
        if verdict is None or verdict is False:
            return None
        return list(verdict)

    async def wait_for(self, count: int, *, within: float = 10.0) -> list[Record]:
        """Wait until at least ``count`` records were handed over; AssertionError after
        ``within`` seconds, saying how many came."""
        with anyio.move_on_after(within):
            while len(self.records) < count:
                await self._changed.wait()
            return self.records
        raise AssertionError(
            f"expected {count} records within {within} s, got {len(self.records)} "
            f"in {len(self.batches)} batches"
        )


class RecordingLambdaHandler:
    """A Lambda-style handler (``handler(event, context)``) that keeps every event.

    Give it your own Lambda handler to run it under poller while recording what reached it; its
    response (``batchItemFailures``) is passed back unchanged, its exceptions raised.
    """

    def __init__(self, inner: Callable[[Any, Any], Any] | None = None) -> None:
        #: Every event handed over, in the order the handler was called.
        self.events: list[dict[str, Any]] = []
        #: The Lambda context of each call (``aws_request_id``, remaining time...).
        self.contexts: list[Any] = []
        self._inner = inner
        self._changed = anyio.Event()

    async def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        self._changed.set()
        self._changed = anyio.Event()
        if self._inner is None:
            return None
        response = self._inner(event, context)
        if inspect.isawaitable(response):
            response = await response
        return response

    async def wait_for(self, count: int, *, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events were handed over; AssertionError after
        ``within`` seconds, saying how many came."""
        with anyio.move_on_after(within):
            while len(self.events) < count:
                await self._changed.wait()
            return self.events
        raise AssertionError(f"expected {count} events within {within} s, got {len(self.events)}")
