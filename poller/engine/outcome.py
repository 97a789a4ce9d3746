"""What a target answered, and the exact AWS rules that turn a handler response into an outcome.

Three outcomes: :class:`Succeeded`, :class:`PartiallyFailed` (some items named as failed) and
:class:`Failed` (exception, timeout, or a response AWS would reject). The rules for Lambda-style
responses follow AWS:

* Without ``ReportBatchItemFailures`` the response is not looked at: returning is success.
* With it, success is ``None``, ``""``, ``[]``, ``{}``, ``{"batchItemFailures": []}`` or
  ``{"batchItemFailures": null}``; a dict without ``batchItemFailures`` is an empty response.
* The whole batch fails when the response is another string or type, when ``batchItemFailures`` is
  not a list, or when any entry is not an object, lacks ``itemIdentifier``, or has an identifier
  that is null, empty, not a string, or not in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from poller.records import Record

__all__ = [
    "SUCCEEDED",
    "Failed",
    "Outcome",
    "PartiallyFailed",
    "Succeeded",
    "parse_lambda_response",
    "parse_typed_result",
]


@dataclass(frozen=True, slots=True)
class Succeeded:
    """Every record of the batch succeeded."""

    #: A tumbling window's ``state`` from the response (None without a window).
    state: Any = None


@dataclass(frozen=True, slots=True)
class PartiallyFailed:
    """The handler named some records as failed; the others succeeded."""

    #: Indexes into the batch of the failed records, ascending, never empty.
    failed: tuple[int, ...]
    #: A tumbling window's ``state`` from the response (None without a window).
    state: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The whole batch failed: an exception, a timeout, or a response AWS would not accept."""

    reason: str
    #: The on-failure record's ``responseContext.functionError``: "Unhandled" when the function
    #: raised or timed out, None when it returned a response that failed the batch.
    function_error: str | None = "Unhandled"


Outcome = Succeeded | PartiallyFailed | Failed

SUCCEEDED = Succeeded()


#: How a record is named in ``batchItemFailures``: a string (a sequence number, a message id) or,
#: for Kafka, the pair (``"topic-N"``, offset) that ``{"partition": ..., "offset": ...}`` names.
ItemId = str | tuple[str, int]


def item_key(identifier: Any) -> ItemId | None:
    """The key a response's ``itemIdentifier`` names, or None when it is not a valid identifier.

    Strings name themselves (empty is invalid); an object with exactly ``partition`` (text) and
    ``offset`` (a whole number) names a Kafka record.
    """
    if isinstance(identifier, str):
        return identifier or None
    if isinstance(identifier, dict) and set(identifier) == {"partition", "offset"}:
        partition, offset = identifier["partition"], identifier["offset"]
        if isinstance(partition, str) and isinstance(offset, int) and not isinstance(offset, bool):
            return (partition, offset)
    return None


def _index_of(records: Sequence[Record], identify: Callable[[Record], ItemId]) -> dict[Any, int]:
    return {identify(record): index for index, record in enumerate(records)}


def parse_lambda_response(
    response: Any,
    records: Sequence[Record],
    identify: Callable[[Record], ItemId],
    *,
    report_batch_item_failures: bool,
) -> Outcome:
    """Turn what a Lambda-style handler returned into an outcome, by AWS's rules."""
    if not report_batch_item_failures:
        return SUCCEEDED
    if response is None or response == "" or response == []:
        return SUCCEEDED
    if not isinstance(response, dict):
        return Failed(
            f"response is a {type(response).__name__}, not an object with batchItemFailures",
            function_error=None,
        )
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return SUCCEEDED
    if not isinstance(failures, list):
        return Failed(
            f"batchItemFailures is a {type(failures).__name__}, not a list", function_error=None
        )
    index = _index_of(records, identify)
    failed: set[int] = set()
    for entry in failures:
        if not isinstance(entry, dict) or "itemIdentifier" not in entry:
            return Failed(
                f"batchItemFailures entry {entry!r} has no itemIdentifier", function_error=None
            )
        identifier = entry["itemIdentifier"]
        key = item_key(identifier)
        if key is None:
            return Failed(
                f"batchItemFailures entry has an invalid itemIdentifier {identifier!r} "
                "(must be a non-empty string, or {partition, offset} for Kafka)",
                function_error=None,
            )
        position = index.get(key)
        if position is None:
            return Failed(
                f"itemIdentifier {identifier!r} is not a record of this batch", function_error=None
            )
        failed.add(position)
    return PartiallyFailed(tuple(sorted(failed)))


def parse_typed_result(
    result: Any, records: Sequence[Record], identify: Callable[[Record], ItemId]
) -> Outcome:
    """Turn what a typed handler returned (None, or the failed records/identifiers) into an outcome.

    The typed API always honours the failed items it is given: returning them is its contract.
    """
    if result is None:
        return SUCCEEDED
    if isinstance(result, str | bytes | dict) or not isinstance(result, Iterable):
        return Failed(
            f"typed handler returned a {type(result).__name__}; expected None or an iterable "
            "of failed records or item identifiers",
            function_error=None,
        )
    items = list(result)
    if not items:
        return SUCCEEDED
    index: dict[Any, int] | None = None
    positions = {id(record): i for i, record in enumerate(records)}
    failed: set[int] = set()
    for item in items:
        if isinstance(item, Record):
            found = positions.get(id(item))
            if found is None:
                if index is None:
                    index = _index_of(records, identify)
                found = index.get(identify(item))
        elif (key := item_key(item)) is not None:
            if index is None:
                index = _index_of(records, identify)
            found = index.get(key)
        else:
            return Failed(
                f"typed handler returned a failed item {item!r}; expected a Record or an item "
                "identifier (a string, or {partition, offset} for Kafka)",
                function_error=None,
            )
        if found is None:
            return Failed(
                f"failed item {item!r} is not a record of this batch", function_error=None
            )
        failed.add(found)
    return PartiallyFailed(tuple(sorted(failed)))
