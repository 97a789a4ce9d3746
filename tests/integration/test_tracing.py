"""Tracing: a span per invocation (OpenTelemetry's SDK, with an in-memory exporter) that
continues the trace an SQS message carries, and the trace header reaching the function as Lambda
passes it (``_X_AMZN_TRACE_ID`` in a process environment)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from poller import Worker, parse_config
from poller.observability.tracing import from_xray_header, to_xray_header
from tests.conformance.kinesis_helpers import AwsSetup, aws_setup
from tests.kit import REGION
from tests.kit.functions import FunctionBench

pytestmark = pytest.mark.integration

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
INCOMING = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[AwsSetup]:
    async with aws_setup(moto_endpoint) as setup:
        yield setup


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider (OpenTelemetry allows one), exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def test_xray_headers_convert_both_ways() -> None:
    parsed = from_xray_header(INCOMING)
    assert parsed == (0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8, True)
    assert to_xray_header(parsed[0], 0x53995C3F42CD8AD8, True) == INCOMING
    for malformed in ("", "Root=2-x-y", "Root=1-zzzzzzzz-bd862e3fe1be46a994272793", "Sampled=1"):
        assert from_xray_header(malformed) is None


async def test_an_sqs_messages_trace_continues_into_the_span_and_the_function(
    aws: AwsSetup,
    spans: InMemorySpanExporter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    bench = FunctionBench(tmp_path)
    bench.module(
        "traced",
        """
        def handle(event, context):
            _log({"trace": os.environ.get("_X_AMZN_TRACE_ID"),
                  "attribute": event["Records"][0]["attributes"].get("AWSTraceHeader")})
        """,
    )
    queue = await aws.sqs.create_queue(unique_name)
    await aws.sqs.client.send_message(
        QueueUrl=queue.url,
        MessageBody="traced",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": INCOMING}},
    )
    config = parse_config(
        {
            "aws": {
                "region": REGION,
                "endpoint_url": aws.endpoint,
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
            "store": {"url": "memory://"},
            "functions": [
                {
                    "FunctionName": "traced",
                    "Handler": "traced.handle",
                    "Environment": {"Variables": {"SEEN_LOG": str(bench.seen)}},
                }
            ],
            "mappings": [{"UUID": "q", "EventSourceArn": queue.arn, "FunctionName": "traced"}],
        }
    )
    async with Worker(config):
        await bench.until(lambda: bool(bench.entries()), "the function ran")
    (seen,) = bench.entries()
    assert seen["attribute"] == INCOMING
    (span,) = [s for s in spans.get_finished_spans() if s.attributes["poller.mapping"] == "q"]
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert attributes == {
        "poller.mapping": "q",
        "poller.source": "sqs",
        "poller.partition": attributes["poller.partition"],
        "poller.batch_size": 1,
        "poller.attempt": 1,
        "poller.outcome": "Succeeded",
    }
    # The span is a child of the message's trace...
    assert f"{span.context.trace_id:032x}" == ROOT[2:].replace("-", "")
    assert span.parent is not None and span.parent.span_id == 0x53995C3F42CD8AD8
    # ...and the function's header names the span as its parent, in the same trace.
    assert seen["trace"] == to_xray_header(span.context.trace_id, span.context.span_id, True)
