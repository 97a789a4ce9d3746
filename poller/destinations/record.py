"""The on-failure record: the JSON document AWS sends when an event source mapping gives up.

Handlers and tools written against Lambda parse these documents, so the field names, their order
and the timestamp format follow what AWS sends (SPEC.md, "Stream on-failure record"). Everything
here is pure: a record is a function of the :class:`~poller.engine.discard.Discard`, the batch
info the source renders and the function ARN, so tests can pin the exact shape.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from poller.engine.discard import Discard
from poller.timestamps import instant, iso_millis

__all__ = [
    "RECORD_VERSION",
    "encode_record",
    "format_timestamp",
    "on_failure_record",
    "s3_object_key",
    "with_payload",
]

#: The ``version`` AWS stamps on every on-failure record.
RECORD_VERSION = "1.0"


#: ISO 8601 in UTC with milliseconds and a ``Z``, like AWS: ``2026-11-22T10:01:02.345Z``.
format_timestamp = iso_millis


def on_failure_record(
    discard: Discard,
    *,
    function_arn: str,
    batch_info: tuple[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Build the on-failure record for ``discard``.

    ``batch_info`` is what the source's codec returns: the key (``KinesisBatchInfo``,
    ``DDBStreamBatchInfo``, ...) and its body. ``responseContext`` is left out entirely when the
    records were never handed to the function, because AWS sends none in that case (record age
    exceeded before the first invocation).
    """
    key, body = batch_info
    record: dict[str, Any] = {
        "requestContext": {
            "requestId": discard.request_id,
            "functionArn": function_arn,
            "condition": discard.condition,
            "approximateInvokeCount": discard.invoke_count,
        },
    }
    if discard.response is not None:
        record["responseContext"] = {
            "statusCode": discard.response.status_code,
            "executedVersion": discard.response.executed_version,
            "functionError": discard.response.function_error,
        }
    record["version"] = RECORD_VERSION
    record["timestamp"] = format_timestamp(discard.timestamp)
    record[key] = dict(body)
    return record


def with_payload(record: Mapping[str, Any], payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``record`` that also carries the invocation event, as S3 destinations store it."""
    return {**record, "payload": None if payload is None else dict(payload)}


def encode_record(record: Mapping[str, Any]) -> str:
    """The record as compact JSON text: what a queue message, topic message or object holds.

    Compact separators keep records well under the 256 KB message limits of SQS and SNS.
    """
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def s3_object_key(discard: Discard) -> str:
    """Where an S3 destination stores the record for ``discard``.

    The layout is AWS's, in UTC from the discard's timestamp::

        aws/lambda/<mapping UUID>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>

    The trailing UUID is version-4 shaped but derived from the discard itself, so when a delivery
    is retried after a lost response the same object is overwritten instead of a duplicate
    appearing next to it.
    """
    when = instant(discard.timestamp)
    return (
        f"aws/lambda/{discard.mapping_id}/{discard.partition}/"
        f"{when:%Y/%m/%d}/{when:%Y-%m-%dT%H.%M.%S}-{_discard_uuid(discard)}"
    )


def _discard_uuid(discard: Discard) -> uuid.UUID:
    first = discard.records[0].position if discard.records else ""
    last = discard.records[-1].position if discard.records else ""
    identity = "\n".join(
        (
            discard.mapping_id,
            discard.partition,
            discard.request_id,
            discard.condition,
            first,
            last,
            repr(discard.timestamp),
        )
    )
    digest = hashlib.sha256(identity.encode("utf-8")).digest()
    return uuid.UUID(bytes=digest[:16], version=4)
