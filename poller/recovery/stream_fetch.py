"""Fetching the records an on-failure record describes, while the source still keeps them.

Kinesis and DynamoDB Streams are read with the source's own calls and record parsing (the same
:class:`~poller.sources.shards.ShardStreamSource` a worker reads with): an iterator
AT_SEQUENCE_NUMBER of the range's first record, then GetRecords until past its last. Kafka is
read with a consumer outside any group, assigned the partition and positioned at the range's
first offset.

A range is *retained* only when its first record, its last record and at least ``batchSize``
records in between are still there. A trimmed start shows as an iterator call that fails or a
first record past the start; such a range is reported with the reason, never cut short
silently. Records the mapping's filter dropped may lie inside a range, so more records than
``batchSize`` is normal (the filter drops them again).

An S3 on-failure record also carries the invocation event (``payload``). The source is read
first all the same, so every destination is redriven alike; the payload is the fallback for a
range the source no longer keeps, and the output says when it was used.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from poller.aws_calls import error_code
from poller.errors import PollerError
from poller.records import Record
from poller.recovery.failure_records import DiscardedRange
from poller.sources.shards import IteratorStart, ShardStreamSource

__all__ = ["Fetched", "RangeFetcher", "ShardRangeFetcher", "judge"]

#: Reads of one range that return nothing new before it is judged to end there.
_EMPTY_READS = 3
#: How long one Kafka fetch waits for records.
_KAFKA_WAIT_MS = 500
#: Empty Kafka fetches in a row tolerated while the broker's end offset says records are due.
_KAFKA_PATIENCE = 60


@dataclass(frozen=True, slots=True)
class Fetched:
    """The records of one range that the source still has, and why it is incomplete if so."""

    records: tuple[Record, ...]
    #: None when the whole range is retained; else what is missing.
    missing: str | None = None


class RangeFetcher:
    """Reads a range of one partition (a seam: shards and Kafka each have one)."""

    async def fetch(self, wanted: DiscardedRange) -> Fetched:
        """The records of ``wanted`` still kept by the source."""
        raise NotImplementedError

    def from_payload(self, wanted: DiscardedRange, document: Mapping[str, Any]) -> Fetched | None:
        """The records of ``wanted`` as the on-failure record's ``payload`` (S3) holds them, or
        None when it holds none this fetcher can read back."""
        return None

    async def aclose(self) -> None:
        """Release what the fetcher opened."""


def judge(wanted: DiscardedRange, records: Sequence[Record]) -> Fetched:
    """``records`` (in order, inside the range) as a :class:`Fetched`: whole, or what is missing."""
    found = tuple(records)
    if not found:
        return Fetched((), f"none of {wanted.first}..{wanted.last} is left in {wanted.partition}")
    if found[0].ordinal != wanted.first_ordinal:
        return Fetched(
            found,
            f"trimmed: the range starts at {wanted.first}, the oldest record "
            f"left in it is {found[0].position}",
        )
    if found[-1].ordinal != wanted.last_ordinal:
        return Fetched(
            found, f"the range ends at {wanted.last}, the last record found is {found[-1].position}"
        )
    if len(found) < wanted.count:
        return Fetched(found, f"{len(found)} of {wanted.count} records left")
    return Fetched(found)


class ShardRangeFetcher(RangeFetcher):
    """Kinesis and DynamoDB Streams: the range read through the mapping's shard source."""

    def __init__(self, source: ShardStreamSource[Any]) -> None:
        self._source = source

    def from_payload(self, wanted: DiscardedRange, document: Mapping[str, Any]) -> Fetched | None:
        """The event an S3 on-failure record carries, turned back into the source's records by
        the source's own parser (the event's fields are GetRecords' under Lambda's names)."""
        payload = document.get("payload")
        events = payload.get("Records") if isinstance(payload, Mapping) else None
        if not isinstance(events, list) or not events:
            return None
        try:
            raw = [_as_read(event) for event in events]
            records = self._source.parse_records(wanted.partition, raw)
        except (KeyError, TypeError, ValueError, binascii.Error):
            return None
        return judge(wanted, [r for r in records if wanted.covers(r.ordinal)])

    async def fetch(self, wanted: DiscardedRange) -> Fetched:
        """Iterator AT_SEQUENCE_NUMBER of the first record, then GetRecords past the last."""
        source, shard = self._source, wanted.partition
        start = IteratorStart("AT_SEQUENCE_NUMBER", sequence_number=wanted.first)
        try:
            # The source's own hooks: its arguments, its error translation, its record parsing.
            response = await source.call(
                "get_shard_iterator",
                "GetShardIterator",
                shard=shard,
                **source.iterator_arguments(shard, start),
            )
            iterator: str | None = str(response["ShardIterator"])
            found: list[Record] = []
            empty = 0
            while iterator is not None and empty < _EMPTY_READS:
                response = await source.call(
                    "get_records",
                    "GetRecords",
                    shard=shard,
                    **source.records_arguments(iterator, source.options.read_limit),
                )
                page = source.parse_page(shard, response)
                iterator = page.next_iterator
                inside = [r for r in page.records if wanted.covers(r.ordinal)]
                found += inside
                if any(r.ordinal >= wanted.last_ordinal for r in page.records):
                    break
                empty = 0 if page.records or page.behind_ms > 0 else empty + 1
                await anyio.sleep(source.min_read_interval)
        except (ClientError, BotoCoreError, PollerError) as error:
            code = error_code(error) if isinstance(error, ClientError) else None
            reason = f"{code}: {error}" if code else str(error)
            return Fetched((), f"the source refused to read {shard} at {wanted.first} ({reason})")
        return judge(wanted, found)


def _as_read(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """A rendered stream record as GetRecords returned it (DynamoDB's are the same already)."""
    kinesis = event.get("kinesis")
    if not isinstance(kinesis, Mapping):
        return event
    read = {
        "SequenceNumber": str(kinesis["sequenceNumber"]),
        "Data": base64.b64decode(kinesis["data"], validate=True),
        "PartitionKey": str(kinesis["partitionKey"]),
        "ApproximateArrivalTimestamp": float(kinesis["approximateArrivalTimestamp"]),
    }
    if kinesis.get("encryptionType"):
        read["EncryptionType"] = kinesis["encryptionType"]
    return read


class KafkaRangeFetcher(RangeFetcher):
    """Kafka: the offsets read with a consumer of no group (nothing is committed anywhere)."""

    def __init__(self, consumer: Any, to_record: Callable[[str, Any], Record]) -> None:
        #: A started ``AIOKafkaConsumer`` without a group; this fetcher stops it.
        self._consumer = consumer
        self._to_record = to_record

    async def fetch(self, wanted: DiscardedRange) -> Fetched:
        """Seek to the first offset and read until past the last (or the partition's end)."""
        from aiokafka import TopicPartition

        consumer = self._consumer
        topic, _, number = wanted.partition.rpartition("-")
        await consumer.topics()
        if int(number) not in (consumer.partitions_for_topic(topic) or ()):
            return Fetched((), f"the partition {wanted.partition} does not exist")
        tp = TopicPartition(topic, int(number))
        consumer.assign([tp])
        oldest = (await consumer.beginning_offsets([tp]))[tp]
        if wanted.first_ordinal < oldest:
            return Fetched((), f"trimmed: the oldest offset left in {wanted.partition} is {oldest}")
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, wanted.first_ordinal)
        found: list[Record] = []
        empty = 0
        # Read until past the last offset, or until the partition has nothing more. The end
        # offset only says how long to be patient: some brokers answer it per produced batch,
        # not per record, so it is a floor, not the end.
        while await consumer.position(tp) <= wanted.last_ordinal:
            due = await consumer.position(tp) < end
            if empty >= (_KAFKA_PATIENCE if due else _EMPTY_READS):
                break
            batches = await consumer.getmany(tp, timeout_ms=_KAFKA_WAIT_MS)
            messages = batches.get(tp) or []
            empty = 0 if messages else empty + 1
            found += [
                self._to_record(wanted.partition, m) for m in messages if wanted.covers(m.offset)
            ]
        return judge(wanted, found)

    async def aclose(self) -> None:
        """Stop the consumer."""
        await self._consumer.stop()
