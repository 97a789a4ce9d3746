"""A span per invocation with OpenTelemetry, when it is installed; the trace an SQS message
carries handed to the function either way, as Lambda does.

OpenTelemetry is optional: poller asks the API for the tracer provider the program set up (in
code, or by running ``opentelemetry-instrument poller run ...`` with ``OTEL_*`` variables). With
none set up, the API's tracer records nothing and costs almost nothing.

Lambda continues the trace an SQS message carries in its ``AWSTraceHeader`` attribute: the
function's trace header (``_X_AMZN_TRACE_ID``) has the message's ``Root``. poller does the same:
without OpenTelemetry the header passes through as it is; with it, the invocation's span is a
child of the message's trace, and the function gets a header naming that span as its parent.
The span carries the mapping, the source, the partition, the batch size, the attempt and the
outcome. Handlers running in the worker's threads share one process environment, so they are
not given a header (process environments, HTTP and Runtime API functions are).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from poller.engine.invocation import InvocationTracer, TraceSpan
from poller.engine.outcome import Failed, Outcome, PartiallyFailed
from poller.records import Batch

__all__ = ["from_xray_header", "to_xray_header", "tracer_for"]


def tracer_for(mapping_id: str, source: str) -> InvocationTracer:
    """OpenTelemetry spans when the API is installed; otherwise the SQS trace passes through."""
    try:
        from opentelemetry import trace
    except ImportError:
        return _PassThrough()
    return _OpenTelemetry(trace.get_tracer("poller"), mapping_id, source)


def _incoming(batch: Batch) -> str | None:
    """The trace header the batch's first record carries (SQS's AWSTraceHeader)."""
    if not batch.records:
        return None
    attributes = getattr(batch.records[0], "attributes", None)
    if isinstance(attributes, Mapping):
        header = attributes.get("AWSTraceHeader")
        return header if isinstance(header, str) and header else None
    return None


def from_xray_header(header: str) -> tuple[int, int | None, bool] | None:
    """(trace id, parent span id, sampled) of ``Root=1-xxxxxxxx-yyy…;Parent=…;Sampled=1``, or
    None when it is not one."""
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    root = fields.get("Root", "")
    pieces = root.split("-")
    if len(pieces) != 3 or pieces[0] != "1" or len(pieces[1]) != 8 or len(pieces[2]) != 24:
        return None
    try:
        trace_id = int(pieces[1] + pieces[2], 16)
        parent = int(fields["Parent"], 16) if "Parent" in fields else None
    except ValueError:
        return None
    return trace_id, parent, fields.get("Sampled") == "1"


def to_xray_header(trace_id: int, span_id: int, sampled: bool) -> str:
    """The X-Ray header naming ``span_id`` of ``trace_id`` as the parent."""
    hex_id = f"{trace_id:032x}"
    return f"Root=1-{hex_id[:8]}-{hex_id[8:]};Parent={span_id:016x};Sampled={int(sampled)}"


class _Passed:
    def __init__(self, header: str | None) -> None:
        self.header = header

    def end(self, outcome: Outcome) -> None:
        return None


class _PassThrough:
    """No OpenTelemetry: the function gets the message's own trace header, as on Lambda."""

    def begin(self, batch: Batch) -> TraceSpan:
        return _Passed(_incoming(batch))


class _Span:
    def __init__(self, span: Any, header: str | None) -> None:
        self._span = span
        self.header = header

    def end(self, outcome: Outcome) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("poller.outcome", type(outcome).__name__)
        if isinstance(outcome, PartiallyFailed):
            self._span.set_attribute("poller.failed_records", len(outcome.failed))
        if isinstance(outcome, Failed):
            self._span.set_status(Status(StatusCode.ERROR, str(outcome)))
        self._span.end()


class _OpenTelemetry:
    def __init__(self, tracer: Any, mapping_id: str, source: str) -> None:
        self._tracer = tracer
        self._mapping_id = mapping_id
        self._source = source

    def begin(self, batch: Batch) -> TraceSpan:
        from opentelemetry import trace

        incoming = _incoming(batch)
        context = None
        trace_id, parent, sampled = (from_xray_header(incoming) if incoming else None) or (
            0,
            None,
            False,
        )
        if parent is not None:
            remote = trace.SpanContext(
                trace_id,
                parent,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        span = self._tracer.start_span(
            "poller invoke",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "poller.mapping": self._mapping_id,
                "poller.source": self._source,
                "poller.partition": batch.partition,
                "poller.batch_size": len(batch.records),
                "poller.attempt": batch.attempt,
            },
        )
        own = span.get_span_context()
        header = incoming
        with contextlib.suppress(AttributeError):
            if own.is_valid:
                header = to_xray_header(own.trace_id, own.span_id, own.trace_flags.sampled)
        return _Span(span, header)
