"""A mapping's filters applied to its records: which document each source's record presents.

AWS's pages say which key each source filters on: SQS the message ``body``, Kinesis the record
``data``, Kafka the ``value``, Amazon MQ the message ``data`` (each decoded by
:func:`~poller.filtering.decode_payload`: JSON objects and arrays as JSON, plain text where the
source compares strings), and DynamoDB Streams the whole stream record (``eventName``,
``dynamodb`` with its typed ``Keys``, ``NewImage``, ...), as the event renders it. A pattern on
any other key never matches, as on AWS; the worker says so in its log when it starts.
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

__all__ = ["MappingFilter", "mapping_filter"]

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


class MappingFilter:
    """Decides, per record, whether it reaches the function (the engine's ``RecordFilter``)."""

    __slots__ = ("_document", "_matches")

    def __init__(self, filters: FilterSet, document: Document) -> None:
        self._matches = filters.matches
        self._document = document

    def accepts(self, record: Record) -> bool:
        return self._matches(self._document(record))


def mapping_filter(
    mapping: ResolvedMapping, codec: EventCodec, *, max_filters: int = 10
) -> MappingFilter | None:
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
    return MappingFilter(filters, _data_document(key, plain_text=plain_text))


def _top_level_keys(text: str) -> list[str]:
    parsed = orjson.loads(text)
    keys = [k for k in parsed if k != "$or"] if isinstance(parsed, dict) else []
    for alternative in parsed.get("$or", []) if isinstance(parsed, dict) else []:
        if isinstance(alternative, dict):
            keys.extend(alternative)
    return keys
