"""Kinesis Data Streams as a partition source: shards, shard iterators, and Lambda's event shape.

One :class:`KinesisSource` serves one stream. The shard machinery it shares with DynamoDB Streams
(lineage, iterators and their renewal, throttling backoff, shard ends, pacing) is
:mod:`poller.sources.shards`; this module adds only what is Kinesis's own:

- the client calls: ListShards (``NextToken`` pagination), GetShardIterator with
  ``StartingSequenceNumber``/``Timestamp``, GetRecords with ``MillisBehindLatest`` and, at a
  shard's end, ``ChildShards``;
- the limits: 10000 records per GetRecords, 5 reads per second per shard, AT_TIMESTAMP;
- the records and their rendering in the shape Lambda hands them to a function.

Every AWS call goes through the client it is given (see ``poller.aws_calls``); the caller owns
and closes that client. An expired LATEST iterator that has handed out nothing is renewed
AT_TIMESTAMP the reader's open time, so nothing written since is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import structlog
from botocore.exceptions import ClientError

from poller.aws_calls import ClientCalls, error_code
from poller.config.fields import ARN
from poller.config.resolved import ResolvedMapping
from poller.engine.protocols import PartitionInfo
from poller.sources.kinesis.codec import KinesisCodec
from poller.sources.kinesis.records import PLAIN, KinesisRecord, build_kinesis_record, encrypted
from poller.sources.kinesis.spec import STREAM_ARN
from poller.sources.shards import (
    IteratorStart,
    Page,
    ShardDescription,
    ShardOptions,
    ShardStreamSource,
)

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["KinesisOptions", "KinesisSource"]

_log = structlog.get_logger("poller.sources.kinesis")


@dataclass(frozen=True, slots=True)
class KinesisOptions(ShardOptions):
    """How a :class:`KinesisSource` reads; the defaults follow AWS limits and Lambda's pace.

    GetRecords and ListShards (``list_page_size``, ``MaxResults``; None: AWS's 1000) both take
    up to 10000 items; a shard takes 5 reads per second (``min_read_interval`` 0.2 s); Lambda
    polls a caught-up shard once a second (``idle_read_interval``).
    """

    service: ClassVar[str] = "Kinesis"
    min_read_interval: float = 0.2
    idle_read_interval: float = 1.0
    #: ``invokeIdentityArn`` of rendered records; None: ``arn:aws:iam::<account>:role/poller``.
    invoke_identity_arn: str | None = None


class KinesisSource(ShardStreamSource[KinesisOptions]):
    """A Kinesis data stream, read shard by shard (implements ``PartitionSource``)."""

    kind: str = "kinesis"
    arn_pattern = STREAM_ARN
    supports_at_timestamp = True
    client_service = "kinesis"
    options_type = KinesisOptions
    codec: KinesisCodec

    def __init__(
        self,
        stream_arn: str,
        client: ClientCalls,
        region: str,
        options: KinesisOptions | None = None,
    ) -> None:
        super().__init__(stream_arn, client, region, options)
        self.codec = KinesisCodec(stream_arn, region, identity_arn=self.options.invoke_identity_arn)
        # AWS refuses StreamARN next to NextToken; moto refuses NextToken without it. Follow AWS
        # until the endpoint rejects the bare token once, then keep sending both.
        self._token_needs_stream = False

    # --- client calls ----------------------------------------------------------------------------

    async def _list_shards(self) -> list[ShardDescription]:
        shards: list[dict[str, Any]] = []
        token: str | None = None
        restarts = 0
        while True:
            request: dict[str, Any] = {}
            if token is None:
                request["StreamARN"] = self.stream_arn
            else:
                request["NextToken"] = token
                if self._token_needs_stream:
                    request["StreamARN"] = self.stream_arn
            if self.options.list_page_size is not None:
                request["MaxResults"] = self.options.list_page_size
            try:
                page = await self.call("list_shards", "ListShards", **request)
            except ClientError as error:
                code = error_code(error)
                if token is not None and code == "InvalidToken" and not self._token_needs_stream:
                    self._log.info("endpoint wants StreamARN with NextToken; sending both")
                    self._token_needs_stream = True
                    continue
                if code == "ExpiredNextTokenException" and restarts < 3:
                    # Tokens live 300 s; a listing that slow starts over rather than mixing pages.
                    restarts += 1
                    shards.clear()
                    token = None
                    continue
                raise
            shards.extend(page.get("Shards") or ())
            token = page.get("NextToken") or None
            if token is None:
                break
        return [ShardDescription.from_listing(shard) for shard in shards]

    def iterator_arguments(self, shard_id: str, start: IteratorStart) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "StreamARN": self.stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": start.type,
        }
        if start.sequence_number is not None:
            arguments["StartingSequenceNumber"] = start.sequence_number
        if start.timestamp is not None:
            arguments["Timestamp"] = start.timestamp
        return arguments

    def records_arguments(self, iterator: str, limit: int) -> dict[str, Any]:
        # StreamARN is optional for AWS but lets emulators find the stream.
        return {"StreamARN": self.stream_arn, "ShardIterator": iterator, "Limit": limit}

    def parse_page(self, shard_id: str, response: Mapping[str, Any]) -> Page:
        records = self.parse_records(shard_id, response.get("Records") or ())
        next_iterator = response.get("NextShardIterator") or None
        children: tuple[PartitionInfo, ...] = ()
        if next_iterator is None:
            children = tuple(
                PartitionInfo(str(child["ShardId"]), tuple(child.get("ParentShards") or ()))
                for child in response.get("ChildShards") or ()
            )
        behind = int(response.get("MillisBehindLatest") or 0)
        return Page(records, next_iterator, behind, children)

    def parse_records(
        self, shard: str, raw_records: Sequence[Mapping[str, Any]]
    ) -> list[KinesisRecord]:
        """GetRecords entries as KinesisRecords, with their share of the event payload size.

        This runs once per record read, so it is written for speed: the client hands arrival
        times over as epoch floats (see ``poller.aws``), and records are made by the builder.
        """
        envelope = self.codec.envelope_size(shard)
        build = build_kinesis_record
        records: list[KinesisRecord] = []
        append = records.append
        for raw in raw_records:
            seq: str = raw["SequenceNumber"]
            data: bytes = raw["Data"]
            key: str = raw["PartitionKey"]
            stamp = raw["ApproximateArrivalTimestamp"]
            if type(stamp) is not float:
                stamp = round(stamp.timestamp(), 3) if isinstance(stamp, datetime) else float(stamp)
            key_size = len(key) if key.isascii() else len(json.dumps(key)) - 2
            encryption = raw.get("EncryptionType")
            native = PLAIN if not encryption or encryption == "NONE" else encrypted(encryption)
            size = envelope + 2 * len(seq) + (len(data) + 2) // 3 * 4 + key_size
            append(build(shard, seq, int(seq), key, data, stamp, size, native))
        return records


async def create_stream(mapping: ResolvedMapping, clients: AwsClients, shards: int) -> None:
    """Create the stream the mapping reads, with ``shards`` shards, unless it exists."""
    name = ARN.parse(mapping.event_source_arn).resource.removeprefix("stream/")
    kinesis = await clients.client("kinesis")
    try:
        await kinesis.describe_stream_summary(StreamName=name)
        return
    except kinesis.exceptions.ResourceNotFoundException:
        pass
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    with anyio.fail_after(30):
        while True:
            summary = await kinesis.describe_stream_summary(StreamName=name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                break
            await anyio.sleep(0.05)
    _log.info("embedded stream created", stream=name, shards=shards)
