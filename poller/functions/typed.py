"""Typed handlers: an async callable that takes a :class:`~poller.records.Batch`.

``async def handle(batch: Batch) -> None | Iterable[Record | str]``: return None when everything
succeeded, or the failed records (or their item identifiers). Returning failed items is a partial
failure whatever ``FunctionResponseTypes`` says: it is the typed API's explicit contract. A sync
callable is accepted too and runs in a worker thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from poller.engine.invocation import Invocation
from poller.engine.outcome import Failed, Outcome, parse_typed_result
from poller.engine.protocols import EventCodec
from poller.functions.in_thread import exit_reason
from poller.records import Batch

__all__ = ["TYPED_WINDOW_REFUSAL", "TypedTarget"]

#: Why a typed handler cannot serve a mapping with TumblingWindowInSeconds.
TYPED_WINDOW_REFUSAL = (
    "TumblingWindowInSeconds needs a Lambda-style handler(event, context) that returns "
    '{"state": {...}}; a typed handler(batch) has no window state'
)


class TypedTarget:
    """Calls a typed handler with the batch itself."""

    def __init__(
        self,
        handler: Callable[[Batch], Any],
        codec: EventCodec,
        *,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._handler = handler
        self._identify = codec.item_identifier
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._limiter = limiter

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        """Call the handler; exceptions are function errors, the result is parsed."""
        if batch.window is not None:
            return Failed(TYPED_WINDOW_REFUSAL, function_error=None)
        try:
            if self._is_async:
                result = await self._handler(batch)
            else:
                result = await anyio.to_thread.run_sync(
                    self._handler, batch, abandon_on_cancel=True, limiter=self._limiter
                )
        except (SystemExit, KeyboardInterrupt) as error:
            return Failed(exit_reason(error))
        except Exception as error:
            return Failed(f"{type(error).__name__}: {error}")
        return parse_typed_result(result, batch.records, self._identify)
