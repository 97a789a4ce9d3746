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
from poller.sources.shards.codec import ShardCodec

__all__ = ["KinesisCodec"]


class KinesisCodec(ShardCodec):
    """Renders one stream's records as Lambda hands them to a function (an ``EventCodec``)."""

    batch_info_key = "KinesisBatchInfo"

    def __init__(self, stream_arn: str, region: str, *, identity_arn: str | None = None) -> None:
        super().__init__(stream_arn, region)
        parsed = ARN.parse(stream_arn)
        #: ``invokeIdentityArn`` of rendered records.
        self.identity_arn = (
            identity_arn or f"arn:{parsed.partition}:iam::{parsed.account}:role/poller"
        )

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

    def measure_envelope(self, shard_id: str) -> int:
        """What a record adds besides its key, data and sequence number (an empty one)."""
        probe = KinesisRecord(shard_id, "", 0, "", b"", round(time.time(), 3), 0, PLAIN)
        return len(json.dumps(self.render_event([probe])["Records"][0])) + 2
