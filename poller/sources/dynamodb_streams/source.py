"""DynamoDB Streams as a partition source: a table's change stream, and Lambda's event shape.

One :class:`DynamoDBStreamsSource` serves one stream
(``arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL``). The shard machinery it shares with
Kinesis (lineage, iterators and their renewal, trimming, throttling backoff, shard ends, pacing)
is :mod:`poller.sources.shards`; this module adds only what is DynamoDB's own:

- the client calls: DescribeStream (``ExclusiveStartShardId`` pagination; shards have one parent),
  GetShardIterator with ``SequenceNumber``, GetRecords (no lag figure: a read that returned records
  counts as behind, so the next one follows at once, and an empty one as caught up);
- the limits: 1000 records per GetRecords, 100 shards per DescribeStream page, no AT_TIMESTAMP, no
  documented per-shard read rate (only "at most two readers per shard"), Lambda's pace of 4 polls
  per second per caught-up shard, ``TrimmedDataAccessException`` for records past the 24 hour
  retention (the reader resumes at the oldest record, and counts and logs what was lost);
- the records (:class:`~poller.sources.dynamodb_streams.records.DynamoDBRecord`), rendered by
  its codec as Lambda hands them over, with ``eventVersion`` "1.1" and the ``dynamodb`` block
  in DynamoDB JSON exactly as GetRecords returned it.

Every AWS call goes through the client it is given (a ``dynamodbstreams`` client; see
``poller.aws_calls``); the caller owns and closes that client.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from poller.aws_calls import ClientCalls
from poller.config.resolved import ResolvedMapping
from poller.sources.dynamodb_streams.codec import PROBE_EVENT_ID, DynamoDBStreamsCodec
from poller.sources.dynamodb_streams.records import DynamoDBRecord
from poller.sources.dynamodb_streams.spec import STREAM_ARN
from poller.sources.shards import (
    IteratorStart,
    Page,
    ShardDescription,
    ShardOptions,
    ShardStreamSource,
)

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["DynamoDBStreamsOptions", "DynamoDBStreamsSource"]

_log = structlog.get_logger("poller.sources.dynamodb_streams")


def _wire(value: Any) -> Any:
    """JSON for what the client decoded: binary back to base64, timestamps to epoch seconds."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    raise TypeError(f"cannot render {type(value).__name__} as DynamoDB JSON")


#: The ``dynamodb`` block as the stream sent it (``json.dumps`` spacing, as the size estimate).
#: Encoders made once (``json.dumps`` with options builds a new one on every call).
_dump_block = json.JSONEncoder(default=_wire).encode
#: An item key as canonical JSON (names sorted), the ordering key of lanes.
_dump_key = json.JSONEncoder(default=_wire, sort_keys=True, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class DynamoDBStreamsOptions(ShardOptions):
    """How a :class:`DynamoDBStreamsSource` reads; the defaults follow AWS limits and Lambda.

    GetRecords takes up to 1000 records and DescribeStream lists up to 100 shards a page
    (``list_page_size``; None lets AWS choose). DynamoDB Streams documents no read rate per
    shard (throttling, should it come, is met with backoff); Lambda polls a caught-up shard four
    times a second (``idle_read_interval`` 0.25 s).
    """

    service: ClassVar[str] = "DynamoDB Streams"
    max_read_limit: ClassVar[int] = 1000
    max_list_page_size: ClassVar[int] = 100
    read_limit: int = 1000
    idle_read_interval: float = 0.25


class DynamoDBStreamsSource(ShardStreamSource[DynamoDBStreamsOptions]):
    """A DynamoDB table's stream, read shard by shard (implements ``PartitionSource``)."""

    kind: str = "dynamodb"
    arn_pattern = STREAM_ARN
    supports_at_timestamp = False
    client_service = "dynamodbstreams"
    options_type = DynamoDBStreamsOptions
    codec: DynamoDBStreamsCodec
    trimmed_codes = frozenset({"TrimmedDataAccessException"})

    def __init__(
        self,
        stream_arn: str,
        client: ClientCalls,
        region: str,
        options: DynamoDBStreamsOptions | None = None,
    ) -> None:
        super().__init__(stream_arn, client, region, options)
        self.codec = DynamoDBStreamsCodec(stream_arn, region)

    # --- client calls ----------------------------------------------------------------------------

    async def _list_shards(self) -> list[ShardDescription]:
        shards: list[ShardDescription] = []
        seen: set[str] = set()
        last: str | None = None
        while True:
            request: dict[str, Any] = {"StreamArn": self.stream_arn}
            if self.options.list_page_size is not None:
                request["Limit"] = self.options.list_page_size
            if last is not None:
                request["ExclusiveStartShardId"] = last
            response = await self.call("describe_stream", "DescribeStream", **request)
            description = response.get("StreamDescription") or {}
            fresh = 0
            for entry in description.get("Shards") or ():
                shard = ShardDescription.from_listing(entry)
                if shard.id not in seen:
                    seen.add(shard.id)
                    shards.append(shard)
                    fresh += 1
            last = description.get("LastEvaluatedShardId") or None
            if last is None:
                break
            if not fresh:
                # An endpoint that ignores ExclusiveStartShardId would page forever.
                self._log.warning("DescribeStream page repeated known shards; listing stops")
                break
        return shards

    def iterator_arguments(self, shard_id: str, start: IteratorStart) -> dict[str, Any]:
        if start.type == "AT_TIMESTAMP":
            raise ValueError("DynamoDB Streams has no AT_TIMESTAMP shard iterator")
        arguments: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": start.type,
        }
        if start.sequence_number is not None:
            arguments["SequenceNumber"] = start.sequence_number
        return arguments

    def records_arguments(self, iterator: str, limit: int) -> dict[str, Any]:
        return {"ShardIterator": iterator, "Limit": limit}

    def _names_shard(self, message: str) -> bool:
        return "shard" in message.lower()

    def parse_page(self, shard_id: str, response: Mapping[str, Any]) -> Page:
        records = self.parse_records(shard_id, response.get("Records") or ())
        # No MillisBehindLatest here: a read that returned records may have more behind it (read
        # again at once), an empty one is at the tip. The lag is the last record's age, which is
        # what Lambda reports as IteratorAge for DynamoDB streams.
        behind = 0
        if records:
            behind = max(1, int((time.time() - records[-1].arrival) * 1000))
        return Page(records, response.get("NextShardIterator") or None, behind)

    def parse_records(
        self, shard: str, raw_records: Sequence[Mapping[str, Any]]
    ) -> list[DynamoDBRecord]:
        """GetRecords entries as DynamoDBRecords, with their share of the event payload size."""
        envelope = self.codec.envelope_size(shard)
        dump_block = _dump_block
        dump_key = _dump_key
        records: list[DynamoDBRecord] = []
        append = records.append
        for raw in raw_records:
            block = raw["dynamodb"]
            seq: str = block["SequenceNumber"]
            stamp = block.get("ApproximateCreationDateTime")
            if isinstance(stamp, datetime):
                arrival = round(stamp.timestamp(), 3)
            elif stamp is not None:
                arrival = float(stamp)
            else:  # never from AWS; an emulator's record without it is aged from its reading
                arrival = round(time.time(), 3)
            text = dump_block(block)
            event_id = raw.get("eventID") or seq
            size = envelope + len(text) + len(event_id) - len(PROBE_EVENT_ID)
            identity = raw.get("userIdentity")
            if identity:
                size += len(json.dumps(identity)) + len('"userIdentity": , ')
            key = dump_key(block.get("Keys") or {})
            append(DynamoDBRecord(shard, seq, int(seq), key, text.encode(), arrival, size, raw))
        return records


async def explain_table(mapping: ResolvedMapping, clients: AwsClients, shards: int) -> None:
    """A stream ARN does not say the table's key schema: the user creates the table."""
    _log.warning(
        "embedded endpoint: create the DynamoDB table and its stream yourself (its key "
        "schema is not in the stream ARN); the mapping waits until the stream exists",
        stream=mapping.event_source_arn,
    )
