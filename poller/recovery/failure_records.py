"""On-failure records as ``poller redrive`` reads them back, and what each one says.

An on-failure record names the discarded records only by place: a shard and a sequence number
range (``KinesisBatchInfo``, ``DDBStreamBatchInfo``) or a topic partition and an offset range
(``KafkaBatchInfo``). :func:`discarded_range` reads that place out of a record and decides first
whether the record is this mapping's at all: a destination may be shared by several mappings, and
a record of another one must be left where it is. Everything here is pure, so the rules can be
tested without a destination.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DiscardedRange",
    "FailureRecord",
    "Fate",
    "Refusal",
    "decode_document",
    "discarded_range",
]


class Fate:
    """What became of one on-failure record (the words the table prints)."""

    REDRIVEN = "redriven"
    WOULD_REDRIVE = "would redrive"
    FAILED_AGAIN = "failed again"
    NOT_RETAINED = "not retained"
    OTHER_MAPPING = "other mapping"
    MALFORMED = "malformed"
    HELD_BACK = "held back"
    NOT_RUN = "not run"


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """One on-failure record as read from a destination, with what removing it takes."""

    #: Where it was read, for people: ``sqs:<message id>``, ``s3://bucket/key``, ``topic-0@12``.
    where: str
    #: The record as JSON text (an SNS envelope already taken off).
    text: str
    #: The destination's own handle for it (a receipt handle, an object key, offsets).
    handle: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class DiscardedRange:
    """The records an on-failure record describes: one partition, first..last, how many."""

    #: The shard id, or Kafka's ``topic-N``.
    partition: str
    first: str
    last: str
    #: ``batchSize``: how many records the range held when they were discarded.
    count: int
    #: The discard's ``requestContext.condition`` (RetryAttemptsExhausted, ...).
    condition: str

    @property
    def first_ordinal(self) -> int:
        """The first position as a number (sequence numbers are compared numerically)."""
        return int(self.first)

    @property
    def last_ordinal(self) -> int:
        """The last position as a number."""
        return int(self.last)

    def covers(self, ordinal: int) -> bool:
        """Whether a record at ``ordinal`` lies inside this range."""
        return self.first_ordinal <= ordinal <= self.last_ordinal


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an on-failure record is not redriven: another mapping's, or not readable."""

    fate: str
    reason: str


def decode_document(text: str) -> dict[str, Any] | None:
    """The record as a JSON object; an SNS notification's ``Message`` when it is one (delivery
    without raw message delivery wraps every message in such an envelope); None when not JSON."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if (
        isinstance(document, dict)
        and document.get("Type") == "Notification"
        and isinstance(document.get("Message"), str)
    ):
        return decode_document(document["Message"])
    return document if isinstance(document, dict) else None


def discarded_range(
    document: Mapping[str, Any] | None,
    *,
    function_arn: str,
    source_arn: str,
    kafka_topic: str | None = None,
) -> DiscardedRange | Refusal:
    """The range ``document`` describes, when it is an on-failure record of this mapping.

    A record belongs to the mapping when its ``functionArn`` is the mapping's function and its
    source is the mapping's (``streamArn``; for Kafka the topic of ``recordsInfo``, and the
    ``eventSourceArn`` of an MSK mapping).
    """
    if document is None:
        return Refusal(Fate.MALFORMED, "not a JSON object")
    context = document.get("requestContext")
    if not isinstance(context, Mapping) or not isinstance(context.get("functionArn"), str):
        return Refusal(Fate.MALFORMED, "no requestContext.functionArn")
    condition = str(context.get("condition") or "")
    if "KafkaBatchInfo" in document:
        found = _kafka_range(document["KafkaBatchInfo"], condition, source_arn, kafka_topic)
    else:
        info_key = next(
            (k for k in ("KinesisBatchInfo", "DDBStreamBatchInfo") if k in document), ""
        )
        if not info_key:
            return Refusal(
                Fate.MALFORMED, "no KinesisBatchInfo, DDBStreamBatchInfo or KafkaBatchInfo"
            )
        found = _shard_range(document[info_key], info_key, condition, source_arn)
    if isinstance(found, DiscardedRange) and context["functionArn"] != function_arn:
        return Refusal(Fate.OTHER_MAPPING, f"function {context['functionArn']}")
    return found


def _shard_range(info: Any, key: str, condition: str, source_arn: str) -> DiscardedRange | Refusal:
    if not isinstance(info, Mapping):
        return Refusal(Fate.MALFORMED, f"{key} is not an object")
    names = ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")
    values = [info.get(name) for name in names]
    count = info.get("batchSize")
    stream, shard, first, last = (str(v) for v in values)
    if not all(isinstance(v, str) and v for v in values):
        return Refusal(
            Fate.MALFORMED,
            f"{key} lacks streamArn, shardId, startSequenceNumber or endSequenceNumber",
        )
    if not isinstance(count, int) or count < 1:
        return Refusal(Fate.MALFORMED, f"{key}.batchSize is {count!r}, not a positive integer")
    if not (first.isdigit() and last.isdigit()) or int(first) > int(last):
        return Refusal(Fate.MALFORMED, f"{key} has no sequence number range ({first!r}..{last!r})")
    if stream != source_arn:
        return Refusal(Fate.OTHER_MAPPING, f"stream {stream}")
    return DiscardedRange(shard, first, last, count, condition)


def _kafka_range(
    info: Any, condition: str, source_arn: str, topic: str | None
) -> DiscardedRange | Refusal:
    if not isinstance(info, Mapping):
        return Refusal(Fate.MALFORMED, "KafkaBatchInfo is not an object")
    ranges = info.get("recordsInfo")
    count = info.get("batchSize")
    if not isinstance(ranges, Mapping) or len(ranges) != 1:
        return Refusal(Fate.MALFORMED, "KafkaBatchInfo.recordsInfo does not name one partition")
    if not isinstance(count, int) or count < 1:
        return Refusal(
            Fate.MALFORMED, f"KafkaBatchInfo.batchSize is {count!r}, not a positive integer"
        )
    ((partition, offsets),) = ranges.items()
    first = offsets.get("firstRecordOffset") if isinstance(offsets, Mapping) else None
    last = offsets.get("lastRecordOffset") if isinstance(offsets, Mapping) else None
    name, _, number = str(partition).rpartition("-")
    if not (
        isinstance(first, str) and isinstance(last, str) and first.isdigit() and last.isdigit()
    ):
        return Refusal(Fate.MALFORMED, f"KafkaBatchInfo.recordsInfo[{partition!r}] has no offsets")
    if not name or not number.isdigit() or int(first) > int(last):
        return Refusal(Fate.MALFORMED, f"KafkaBatchInfo.recordsInfo names {partition!r}")
    cluster = info.get("eventSourceArn")
    if name != topic or (source_arn and cluster is not None and cluster != source_arn):
        return Refusal(Fate.OTHER_MAPPING, f"topic partition {partition}")
    return DiscardedRange(str(partition), first, last, count, condition)
