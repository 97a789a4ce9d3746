"""DynamoDB stream records in AWS's shapes: the Lambda event, item ids, ``DDBStreamBatchInfo``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from poller.records import Record
from poller.sources.dynamodb_streams.records import DynamoDBRecord
from poller.timestamps import iso_seconds

__all__ = ["PROBE_EVENT_ID", "DynamoDBStreamsCodec"]

#: Stream record ids are 32 hex digits; the envelope estimate is measured with one of these.
PROBE_EVENT_ID = "0" * 32


class DynamoDBStreamsCodec:
    """Renders one stream's records as Lambda hands them to a function (an ``EventCodec``)."""

    def __init__(self, stream_arn: str, region: str) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self._envelopes: dict[str, int] = {}

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

    def item_identifier(self, record: Record) -> str:
        """Lambda names DynamoDB stream records in ``batchItemFailures`` by sequence number."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``DDBStreamBatchInfo`` of an on-failure record for ``records`` (one shard, in order)."""
        if not records:
            raise ValueError("batch_info needs at least one record")
        first, last = records[0], records[-1]
        return (
            "DDBStreamBatchInfo",
            {
                "shardId": first.partition,
                "startSequenceNumber": first.position,
                "endSequenceNumber": last.position,
                "approximateArrivalOfFirstRecord": iso_seconds(first.arrival),
                "approximateArrivalOfLastRecord": iso_seconds(last.arrival),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        )

    def envelope_size(self, shard_id: str) -> int:
        """Bytes a record of ``shard_id`` adds to an event besides its ``dynamodb`` block.

        Measured once per shard by rendering a record with an empty block, so the estimate
        follows the real shape (and the ``", "`` between records).
        """
        size = self._envelopes.get(shard_id)
        if size is None:
            native = {"eventID": PROBE_EVENT_ID, "eventName": "INSERT"}
            probe = DynamoDBRecord(shard_id, "0", 0, "{}", b"{}", 0.0, 0, native)
            size = len(json.dumps(self.render_event([probe])["Records"][0])) + 2 - len(b"{}")
            self._envelopes[shard_id] = size
        return size
