"""A mapping's side of a function: render the event, invoke, read the response by AWS's rules.

The event is rendered once by the source's codec and sent as JSON bytes; the reply is either a
function error (the whole batch failed, as Lambda reports it) or a response payload parsed with
:func:`~poller.engine.outcome.parse_lambda_response`, so ``batchItemFailures`` behave exactly as
with an in-process handler.
"""

from __future__ import annotations

import anyio
import orjson

from poller.engine.invocation import Invocation
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import Failed, Outcome, parse_lambda_response
from poller.engine.protocols import EventCodec
from poller.engine.windows import parse_window_response, window_event
from poller.functions.base import Function
from poller.functions.reply import FunctionError
from poller.records import Batch

__all__ = ["FunctionTarget"]


class FunctionTarget:
    """Invokes a shared :class:`~poller.functions.base.Function` for one mapping."""

    def __init__(
        self,
        function: Function,
        codec: EventCodec,
        *,
        report_batch_item_failures: bool,
        counters: MappingCounters,
    ) -> None:
        self._function = function
        self._codec = codec
        self._report = report_batch_item_failures
        self._counters = counters

    def _throttled(self) -> None:
        self._counters.throttles += 1

    async def invoke(self, batch: Batch, invocation: Invocation) -> Outcome:
        """As :meth:`invoke_timed` with the time left before the invocation's deadline."""
        return await self.invoke_timed(
            batch, invocation, max(0.001, invocation.deadline - anyio.current_time())
        )

    async def invoke_timed(
        self, batch: Batch, invocation: Invocation, time_limit: float
    ) -> Outcome:
        """Render, invoke, and parse what came back."""
        records = batch.records
        event = self._codec.render_event(records)
        window = batch.window
        if window is not None:
            event = window_event(event, batch, window)
        payload = orjson.dumps(event)
        reply = await self._function.call(payload, invocation, time_limit, self._throttled)
        if isinstance(reply, FunctionError):
            return Failed(str(reply))
        text = reply.payload
        try:
            response = orjson.loads(text) if text.strip() else None
        except orjson.JSONDecodeError as error:
            return Failed(f"Runtime.MarshalError: the response is not JSON: {error}")
        parse = parse_lambda_response if window is None else parse_window_response
        return parse(
            response, records, self._codec.item_identifier, report_batch_item_failures=self._report
        )
