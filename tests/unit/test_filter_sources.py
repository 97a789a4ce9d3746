"""Which records a mapping's filters let through, per source, for payloads of either form."""

from __future__ import annotations

import json

import pytest

from poller.filtering.records import mapping_filter
from poller.records import Record
from poller.testing import MemorySource
from tests.kit import mapping

KAFKA = {
    "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker:9092"]}},
    "Topics": ["orders"],
    "StartingPosition": "TRIM_HORIZON",
}
SQS = {"EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:orders"}


def record(data: bytes) -> Record:
    return Record("p", "1", 1, "k", data, 0.0, len(data))


def accepts(fields: dict[str, object], pattern: dict[str, object], data: bytes) -> bool:
    resolved = mapping(**fields, FilterCriteria={"Filters": [{"Pattern": json.dumps(pattern)}]})
    found = mapping_filter(resolved, MemorySource())
    assert found is not None
    return found.accepts(record(data))


JSON_PATTERN = {"value": {"kind": ["keep"]}}
PLAIN_PATTERN = {"value": ["hello"]}


@pytest.mark.parametrize(
    ("pattern", "data", "passes"),
    [
        (JSON_PATTERN, b'{"kind": "keep"}', True),
        (JSON_PATTERN, b'{"kind": "drop"}', False),
        # Plain text, or bytes that are not UTF-8, against a pattern on JSON fields: only the
        # pattern's metadata conditions apply, and it has none.
        (JSON_PATTERN, b"hello", True),
        (JSON_PATTERN, b"\xff\xfe", True),
        (PLAIN_PATTERN, b"hello", True),
        (PLAIN_PATTERN, b"bye", False),
        (PLAIN_PATTERN, b'{"kind": "keep"}', True),  # JSON against plain values: the same
    ],
)
def test_kafka_judges_a_payload_of_the_other_form_by_metadata_only(
    pattern: dict[str, object], data: bytes, passes: bool
) -> None:
    assert accepts(KAFKA, pattern, data) is passes


@pytest.mark.parametrize(
    ("data", "passes"),
    [(b'{"kind": "keep"}', True), (b'{"kind": "drop"}', False), (b"hello", False)],
)
def test_sqs_drops_a_body_of_the_other_form(data: bytes, passes: bool) -> None:
    assert accepts(SQS, {"body": {"kind": ["keep"]}}, data) is passes
