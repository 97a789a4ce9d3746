"""Lambda-style handlers in the worker's own process (``Isolation = "thread"``, or passed from
Python): ``handler(event, context)`` with the AWS event JSON.

The event is rendered by the source's codec in AWS's shape; the response is parsed by AWS's
``batchItemFailures`` rules (:func:`poller.engine.outcome.parse_lambda_response`). A sync handler
runs in a worker thread so the event loop never blocks; an async handler is awaited.

As in Lambda, the response must be JSON-serialisable and at most 6 MB, and a handler that raises
``SystemExit`` or ``KeyboardInterrupt`` fails its invocation (``Runtime.ExitError``) instead of
stopping the worker. ``environments`` bounds how many invocations of the function run at once
(``ReservedConcurrentExecutions``); waiting for one is back-pressure, not part of the timeout.

What a thread cannot do: be stopped. A sync handler past its timeout is abandoned, its thread runs
on; process isolation (the default for handlers named in the config) stops it for real.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import anyio.to_thread

from poller.engine.invocation import Invocation
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import Failed, Outcome, parse_lambda_response
from poller.engine.protocols import EventCodec
from poller.engine.windows import parse_window_response, window_event
from poller.functions.context import LambdaContext
from poller.functions.reply import MAX_RESPONSE_BYTES, exit_error, response_too_large
from poller.records import Batch

__all__ = ["LambdaTarget", "exit_reason"]


def exit_reason(error: BaseException) -> str:
    """A handler's ``SystemExit``/``KeyboardInterrupt`` as Lambda reports a runtime exit."""
    if isinstance(error, SystemExit):
        code = error.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        return str(exit_error(status))
    return str(exit_error(-2))  # SIGINT, as Ctrl-C would end a process


def _call_catching_exit(handler: Callable[[Any, Any], Any], event: Any, context: Any) -> Any:
    """Run in the thread: an exit request becomes a value, never a worker shutdown."""
    try:
        return handler(event, context)
    except (SystemExit, KeyboardInterrupt) as error:
        return _Exited(exit_reason(error))


class _Exited:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class LambdaTarget:
    """Renders the AWS event, calls ``handler(event, context)`` and parses the response."""

    def __init__(
        self,
        handler: Callable[[Any, Any], Any],
        codec: EventCodec,
        *,
        report_batch_item_failures: bool,
        limiter: anyio.CapacityLimiter | None = None,
        environments: anyio.CapacityLimiter | None = None,
        counters: MappingCounters | None = None,
    ) -> None:
        self._handler = handler
        self._codec = codec
        self._report = report_batch_item_failures
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._limiter = limiter
        self._environments = environments
        self._counters = counters

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        """Render, call, check the response is JSON of at most 6 MB, parse it."""
        records = batch.records
        event = self._codec.render_event(records)
        window = batch.window
        if window is not None:
            event = window_event(event, batch, window)
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
                    _call_catching_exit,
                    self._handler,
                    event,
                    context,
                    abandon_on_cancel=True,
                    limiter=self._limiter,
                )
        except (SystemExit, KeyboardInterrupt) as error:
            return Failed(exit_reason(error))
        except Exception as error:
            return Failed(f"{type(error).__name__}: {error}")
        if isinstance(response, _Exited):
            return Failed(response.reason)
        if response is not None and not isinstance(response, str | int | float | bool):
            try:
                size = len(json.dumps(response))
            except (TypeError, ValueError) as error:
                return Failed(f"Runtime.MarshalError: response is not JSON serialisable: {error}")
            if size > MAX_RESPONSE_BYTES:
                return Failed(str(response_too_large(size)))
        elif isinstance(response, str) and len(response) > MAX_RESPONSE_BYTES:
            return Failed(str(response_too_large(len(response))))
        parse = parse_lambda_response if window is None else parse_window_response
        return parse(
            response,
            records,
            self._codec.item_identifier,
            report_batch_item_failures=self._report,
        )

    async def invoke_timed(
        self, batch: Batch, invocation: Invocation, time_limit: float
    ) -> Outcome:
        """Wait for a free environment (a throttle if none is), then invoke within ``time_limit``."""
        environments = self._environments
        token = object()
        if environments is not None:
            if environments.available_tokens < 1 and self._counters is not None:
                self._counters.throttles += 1
            await environments.acquire_on_behalf_of(token)
        try:
            timed = _with_deadline(invocation, time_limit)
            with anyio.move_on_after(time_limit) as scope:
                outcome = await self.invoke(batch, timed)
            if scope.cancelled_caught:
                return Failed(f"Task timed out after {time_limit:.2f} seconds")
            return outcome
        finally:
            if environments is not None:
                environments.release_on_behalf_of(token)


def _with_deadline(invocation: Invocation, time_limit: float) -> Invocation:
    return replace(invocation, deadline=anyio.current_time() + time_limit)
