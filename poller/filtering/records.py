"""A mapping's filters applied to its records: which document each source's record presents.

AWS's pages say which key each source filters on: SQS the message ``body``, Kinesis the record
``data``, Kafka the ``value``, Amazon MQ the message ``data`` (each decoded by
:func:`~poller.filtering.decode_payload`: JSON objects and arrays as JSON, plain text where the
source compares strings), and DynamoDB Streams the whole stream record (``eventName``,
``dynamodb`` with its typed ``Keys``, ``NewImage``, ...), as the event renders it. A pattern on
any other key never matches, as on AWS; the worker says so in its log when it starts.

Kafka and MQ payloads of the other form than a pattern expects (plain text against a pattern on
JSON fields, JSON against plain values, bytes that are not UTF-8) are judged by the pattern's
metadata conditions only (:class:`FormAwareFilter`), as AWS documents for those sources; SQS,
Kinesis and DynamoDB drop them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog

from poller.config import ResolvedMapping
from poller.engine.protocols import EventCodec
from poller.filtering._pattern import FilterSet, compile_filters
from poller.filtering._payload import decode_payload
from poller.records import Record

__all__ = ["FormAwareFilter", "MappingFilter", "mapping_filter"]

_log = structlog.get_logger("poller.filtering")

Document = Callable[[Record], Mapping[str, Any]]


def _data_document(key: str, *, plain_text: bool) -> Document:
    def document(record: Record) -> Mapping[str, Any]:
        return {key: decode_payload(record.data, plain_text=plain_text)}

    return document


def _rendered_document(codec: EventCodec) -> Document:
    def document(record: Record) -> Mapping[str, Any]:
        rendered: Mapping[str, Any] = codec.render_event([record])["Records"][0]
        return rendered

    return document


#: Per source kind: the one key its filters see (None: the whole rendered record) and whether its
#: payload may be compared as plain text.
_KEYS: dict[str, tuple[str | None, bool]] = {
    "sqs": ("body", True),
    "kinesis": ("data", False),
    "memory": ("data", False),  # the in-memory test source renders as Kinesis
    "kafka": ("value", True),
    "mq": ("data", True),
    "dynamodb": (None, False),
}


#: Sources whose filters fall back to metadata conditions on a payload of the other form.
_FORM_AWARE = frozenset({"kafka", "mq"})


class MappingFilter:
    """Decides, per record, whether it reaches the function (the engine's ``RecordFilter``)."""

    __slots__ = ("_document", "_matches")

    def __init__(self, filters: FilterSet, document: Document) -> None:
        self._matches = filters.matches
        self._document = document

    def accepts(self, record: Record) -> bool:
        return self._matches(self._document(record))


class FormAwareFilter:
    """Kafka and Amazon MQ: a pattern applies whole when the payload has the form it expects (a
    JSON object or array for a pattern that reaches into the payload, plain text for one that
    compares it); otherwise, as AWS documents for these sources, only the pattern's other
    (metadata) conditions apply, and with none left the record passes."""

    __slots__ = ("_key", "_tests")

    def __init__(self, filters: FilterSet, key: str) -> None:
        self._key = key
        self._tests = tuple(
            (pattern.forms(key), pattern.matches, pattern.without(key).matches)
            for pattern in filters.patterns
        )

    def accepts(self, record: Record) -> bool:
        value = decode_payload(record.data, plain_text=True)
        form = (
            "object"
            if isinstance(value, dict | list)
            else "values"
            if isinstance(value, str)
            else None
        )
        document = {self._key: value}
        for forms, whole, others in self._tests:
            test = whole if not forms or form in forms else others
            if test(document):
                return True
        return not self._tests


def mapping_filter(
    mapping: ResolvedMapping, codec: EventCodec, *, max_filters: int = 10
) -> MappingFilter | FormAwareFilter | None:
    """The filter of a mapping with FilterCriteria (None without), for its source's records."""
    if not mapping.filter_patterns:
        return None
    filters = compile_filters(mapping.filter_patterns, max_filters=max_filters)
    key, plain_text = _KEYS.get(mapping.source_kind, (None, False))
    if key is None:
        return MappingFilter(filters, _rendered_document(codec))
    for pattern in filters.patterns:
        others = sorted(set(_top_level_keys(pattern.text)) - {key})
        if others:
            _log.warning(
                "a filter pattern names keys this source cannot filter on; they never match",
                mapping=mapping.mapping_id,
                filter=pattern.index,
                keys=others,
                allowed=key,
            )
    if mapping.source_kind in _FORM_AWARE:
        return FormAwareFilter(filters, key)
    return MappingFilter(filters, _data_document(key, plain_text=plain_text))


def _top_level_keys(text: str) -> list[str]:
    parsed = orjson.loads(text)
    keys = [k for k in parsed if k != "$or"] if isinstance(parsed, dict) else []
    for alternative in parsed.get("$or", []) if isinstance(parsed, dict) else []:
        if isinstance(alternative, dict):
            keys.extend(alternative)
    return keys
