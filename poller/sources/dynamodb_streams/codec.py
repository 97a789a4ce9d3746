"""DynamoDB stream records in AWS's shapes: the Lambda event, item ids, ``DDBStreamBatchInfo``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from poller.records import Record
from poller.sources.dynamodb_streams.records import DynamoDBRecord
from poller.sources.shards.codec import ShardCodec
from poller.timestamps import iso_seconds

__all__ = ["PROBE_EVENT_ID", "DynamoDBStreamsCodec"]

#: Stream record ids are 32 hex digits; the envelope estimate is measured with one of these.
PROBE_EVENT_ID = "0" * 32


class DynamoDBStreamsCodec(ShardCodec):
    """Renders one stream's records as Lambda hands them to a function (an ``EventCodec``)."""

    batch_info_key = "DDBStreamBatchInfo"

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"Records": [...]}`` exactly as Lambda passes DynamoDB stream records to a function.

        The ``dynamodb`` blocks are decoded afresh from the records' JSON on every call, so a
        handler that changes its event cannot change what a retry sees.
        """
        if not records:
            return {"Records": []}
        blocks = json.loads(b"[" + b",".join([r.data for r in records]) + b"]")
        arn = self.stream_arn
        region = self.region
        rendered: list[dict[str, Any]] = []
        append = rendered.append
        for record, block in zip(records, blocks, strict=True):
            native = record.native or {}
            event = {
                "eventID": native.get("eventID") or record.position,
                "eventName": native.get("eventName"),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": region,
                "dynamodb": block,
            }
            identity = native.get("userIdentity")
            if identity:
                event["userIdentity"] = dict(identity)
            event["eventSourceARN"] = arn
            append(event)
        return {"Records": rendered}

    def arrival_text(self, epoch_seconds: float) -> str:
        """DynamoDB's on-failure records spell times in whole seconds."""
        return iso_seconds(epoch_seconds)

    def measure_envelope(self, shard_id: str) -> int:
        """What a record adds besides its ``dynamodb`` block (an empty one is rendered)."""
        native = {"eventID": PROBE_EVENT_ID, "eventName": "INSERT"}
        probe = DynamoDBRecord(shard_id, "0", 0, "{}", b"{}", 0.0, 0, native)
        return len(json.dumps(self.render_event([probe])["Records"][0])) + 2 - len(b"{}")
