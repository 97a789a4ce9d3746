"""Kinesis records in AWS's shapes: the Lambda event, item identifiers, ``KinesisBatchInfo``."""

from __future__ import annotations

import binascii
import json
import time
from collections.abc import Sequence
from typing import Any

from poller.config.fields import ARN
from poller.records import Record
from poller.sources.kinesis.records import PLAIN, KinesisRecord
from poller.timestamps import iso_millis

__all__ = ["KinesisCodec"]


class KinesisCodec:
    """Renders one stream's records as Lambda hands them to a function (an ``EventCodec``)."""

    def __init__(self, stream_arn: str, region: str, *, identity_arn: str | None = None) -> None:
        parsed = ARN.parse(stream_arn)
        self.stream_arn = stream_arn
        self.region = region
        #: ``invokeIdentityArn`` of rendered records.
        self.identity_arn = (
            identity_arn or f"arn:{parsed.partition}:iam::{parsed.account}:role/poller"
        )
        self._envelopes: dict[str, int] = {}

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"Records": [...]}`` exactly as Lambda passes Kinesis records to a function."""
        arn = self.stream_arn
        region = self.region
        identity = self.identity_arn
        b64 = binascii.b2a_base64
        rendered: list[dict[str, Any]] = []
        append = rendered.append
        for record in records:
            seq = record.position
            kinesis = {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record.key,
                "sequenceNumber": seq,
                "data": b64(record.data, newline=False).decode("ascii"),
                "approximateArrivalTimestamp": record.arrival,
            }
            native = record.native
            if native:
                encryption = native.get("encryptionType")
                if encryption:
                    kinesis["encryptionType"] = encryption
            append(
                {
                    "kinesis": kinesis,
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{record.partition}:{seq}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": identity,
                    "awsRegion": region,
                    "eventSourceARN": arn,
                }
            )
        return {"Records": rendered}

    def item_identifier(self, record: Record) -> str:
        """Lambda names Kinesis records in ``batchItemFailures`` by sequence number."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``KinesisBatchInfo`` of an on-failure record for ``records`` (one shard, in order)."""
        if not records:
            raise ValueError("batch_info needs at least one record")
        first, last = records[0], records[-1]
        return (
            "KinesisBatchInfo",
            {
                "shardId": first.partition,
                "startSequenceNumber": first.position,
                "endSequenceNumber": last.position,
                "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
                "approximateArrivalOfLastRecord": iso_millis(last.arrival),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        )

    def envelope_size(self, shard_id: str) -> int:
        """Bytes a record of ``shard_id`` adds to an event besides its key, data and number.

        Measured once per shard by rendering an empty record, so the estimate follows the real
        shape (and the ``", "`` between records) instead of a hand-counted constant.
        """
        size = self._envelopes.get(shard_id)
        if size is None:
            probe = KinesisRecord(shard_id, "", 0, "", b"", round(time.time(), 3), 0, PLAIN)
            size = len(json.dumps(self.render_event([probe])["Records"][0])) + 2
            self._envelopes[shard_id] = size
        return size
