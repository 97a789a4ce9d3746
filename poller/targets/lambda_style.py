"""Lambda-style handlers: ``handler(event, context)`` with the AWS event JSON.

The event is rendered by the source's codec in AWS's shape; the response is parsed by AWS's
``batchItemFailures`` rules (:func:`poller.engine.outcome.parse_lambda_response`). A sync handler runs
in a worker thread so the event loop never blocks; an async handler is awaited. As in Lambda, the
response must be JSON-serialisable: anything else is a function error.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from poller.engine.invocation import Invocation
from poller.engine.outcome import Failed, Outcome, parse_lambda_response
from poller.engine.protocols import EventCodec
from poller.records import Batch
from poller.targets.context import LambdaContext

__all__ = ["LambdaTarget"]


class LambdaTarget:
    """Renders the AWS event, calls ``handler(event, context)`` and parses the response."""

    def __init__(
        self,
        handler: Callable[[Any, Any], Any],
        codec: EventCodec,
        *,
        report_batch_item_failures: bool,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._handler = handler
        self._codec = codec
        self._report = report_batch_item_failures
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._limiter = limiter

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        """Render, call, check the response is JSON, parse it."""
        records = batch.records
        event = self._codec.render_event(records)
        context = LambdaContext(
            function_name=invocation.function_name,
            invoked_function_arn=invocation.function_arn,
            aws_request_id=invocation.request_id,
            deadline=invocation.deadline,
        )
        try:
            if self._is_async:
                response = await self._handler(event, context)
            else:
                response = await anyio.to_thread.run_sync(
                    self._handler, event, context, abandon_on_cancel=True, limiter=self._limiter
                )
        except Exception as error:
            return Failed(f"{type(error).__name__}: {error}")
        if response is not None and not isinstance(response, str | int | float | bool):
            try:
                json.dumps(response)
            except (TypeError, ValueError) as error:
                return Failed(f"Runtime.MarshalError: response is not JSON serialisable: {error}")
        return parse_lambda_response(
            response,
            records,
            self._codec.item_identifier,
            report_batch_item_failures=self._report,
        )
