"""Kinesis Data Streams as a partition source: shards, shard iterators, and Lambda's event shape.

One :class:`KinesisSource` serves one stream. It lists shards with their lineage (so parents can
finish before children), opens one :class:`KinesisShardReader` per shard, and renders records the
way Lambda hands them to a function. Every AWS call goes through the client it is given (see
``poller.sources.base``); the caller owns and closes that client.

A reader owns its shard iterator and keeps it alive without ever skipping or repeating a record:

- ``ExpiredIteratorException``: a new iterator ``AFTER_SEQUENCE_NUMBER`` the last record handed
  out (or at the original start when none was handed out yet), then the read is retried.
- throttling (``ProvisionedThroughputExceededException`` ...): jittered backoff, same iterator.
- shard end: a null ``NextShardIterator`` ends the shard; its ``ChildShards`` become the children.

Reads are paced per shard: at most one ``GetRecords`` per ``min_read_interval`` (AWS allows 5 per
second per shard), and one per ``idle_read_interval`` while the shard has nothing new (Lambda
polls an idle shard about once a second).
"""

from __future__ import annotations

import binascii
import functools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import structlog
from botocore.exceptions import ClientError

from poller.config import ARN, StartingPosition
from poller.errors import SourceError, SourceNotFoundError
from poller.records import KinesisRecord, Record
from poller.sources.base import (
    Backoff,
    ClientCalls,
    PartitionInfo,
    ReadResult,
    StartAt,
    call_with_backoff,
    error_code,
)

if TYPE_CHECKING:
    from poller.sources.base import PartitionReader, PartitionSource

__all__ = ["KinesisOptions", "KinesisShardReader", "KinesisSource"]

_log = structlog.get_logger(__name__)

#: GetRecords and ListShards both cap a page at 10000 items.
_MAX_LIMIT = 10_000
#: Renewing an iterator that expires again at once this often in one read means something is off.
_MAX_RENEWALS_PER_READ = 3
#: An expired LATEST iterator is renewed AT_TIMESTAMP the open time minus this much, so a clock
#: running ahead of AWS's cannot hide records written after the reader opened.
_CLOCK_SKEW_ALLOWANCE = timedelta(seconds=2)
#: ``native`` of records without server-side encryption: shared, read-only, empty.
_PLAIN: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class KinesisOptions:
    """How a :class:`KinesisSource` reads; the defaults follow AWS limits and Lambda's pace."""

    #: ``Limit`` of each GetRecords call (AWS allows 1..10000).
    read_limit: int = _MAX_LIMIT
    #: Fewest seconds between two GetRecords on one shard (AWS: 5 per second per shard).
    min_read_interval: float = 0.2
    #: Seconds between GetRecords while a shard is idle (caught up and nothing returned).
    idle_read_interval: float = 1.0
    #: ``MaxResults`` of each ListShards page; None lets AWS choose (1000).
    list_page_size: int | None = None
    #: Waits between throttled attempts.
    backoff: Backoff = field(default_factory=Backoff)
    #: ``invokeIdentityArn`` of rendered records; None: ``arn:aws:iam::<account>:role/poller``.
    invoke_identity_arn: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.read_limit <= _MAX_LIMIT:
            problems.append(f"read_limit {self.read_limit!r} (allowed 1..{_MAX_LIMIT})")
        if self.min_read_interval < 0:
            problems.append(f"min_read_interval {self.min_read_interval!r} (allowed >= 0)")
        if self.idle_read_interval < self.min_read_interval:
            problems.append(
                f"idle_read_interval {self.idle_read_interval!r} (allowed >= min_read_interval)"
            )
        if self.list_page_size is not None and not 1 <= self.list_page_size <= _MAX_LIMIT:
            problems.append(f"list_page_size {self.list_page_size!r} (allowed 1..{_MAX_LIMIT})")
        if problems:
            raise ValueError("invalid Kinesis options: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class _ShardFacts:
    """What the last ListShards said about one shard, beyond PartitionInfo."""

    starting: int | None
    #: The shard's EndingSequenceNumber as an integer; None while the shard is open.
    ending: int | None


class KinesisSource:
    """A Kinesis data stream, read shard by shard (implements ``PartitionSource``)."""

    kind: str = "kinesis"

    def __init__(
        self,
        stream_arn: str,
        client: ClientCalls,
        region: str,
        options: KinesisOptions | None = None,
    ) -> None:
        parsed = ARN.parse(stream_arn)
        if parsed.service != "kinesis" or not parsed.resource.startswith("stream/"):
            raise ValueError(f"{stream_arn!r} is not a Kinesis stream ARN")
        self.stream_arn = stream_arn
        self.region = region
        self.options = options or KinesisOptions()
        self.min_read_interval: float = self.options.min_read_interval
        #: Lambda polls a caught-up Kinesis shard once a second.
        self.idle_poll_interval: float = 1.0
        self._calls = client
        self._identity = (
            self.options.invoke_identity_arn
            or f"arn:{parsed.partition}:iam::{parsed.account}:role/poller"
        )
        self._facts: dict[str, _ShardFacts] = {}
        self._children: dict[str, tuple[PartitionInfo, ...]] = {}
        self._envelopes: dict[str, int] = {}
        self._readers: set[KinesisShardReader] = set()
        # AWS refuses StreamARN next to NextToken; moto refuses NextToken without it. Follow AWS
        # until the endpoint rejects the bare token once, then keep sending both.
        self._token_needs_stream = False
        self._log = _log.bind(stream=stream_arn)

    # --- partitions ------------------------------------------------------------------------------

    async def list_partitions(self) -> list[PartitionInfo]:
        """Every shard the stream has now (open and closed, not yet expired), with lineage."""
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
                page = await call_with_backoff(
                    functools.partial(self._calls.list_shards, **request),
                    operation="ListShards",
                    backoff=self.options.backoff,
                    stream=self.stream_arn,
                )
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
                self._raise_translated(error, shard=None)
            shards.extend(page.get("Shards") or ())
            token = page.get("NextToken") or None
            if token is None:
                break
        return self._remember(shards)

    def _remember(self, shards: Sequence[Mapping[str, Any]]) -> list[PartitionInfo]:
        infos: list[PartitionInfo] = []
        facts: dict[str, _ShardFacts] = {}
        children: dict[str, list[PartitionInfo]] = {}
        for shard in shards:
            shard_id = str(shard["ShardId"])
            numbers = shard.get("SequenceNumberRange") or {}
            starting = numbers.get("StartingSequenceNumber")
            ending = numbers.get("EndingSequenceNumber")
            parents = tuple(
                str(p)
                for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                if p
            )
            info = PartitionInfo(shard_id, parents, closed=ending is not None)
            infos.append(info)
            facts[shard_id] = _ShardFacts(
                int(starting) if starting is not None else None,
                int(ending) if ending is not None else None,
            )
            for parent in parents:
                children.setdefault(parent, []).append(info)
        self._facts = facts
        self._children = {parent: tuple(kids) for parent, kids in children.items()}
        return infos

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> KinesisShardReader:
        """A reader on ``partition``, after ``start.after`` or else at the starting position."""
        if partition.closed and partition.id not in self._facts:
            await self.list_partitions()  # learn where the closed shard ends
        reader = KinesisShardReader(self, partition.id, start)
        await reader._open()
        self._readers.add(reader)
        return reader

    async def aclose(self) -> None:
        """Close the readers this source opened (the client belongs to the caller)."""
        for reader in list(self._readers):
            await reader.aclose()

    # --- rendering (hot path) --------------------------------------------------------------------

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"Records": [...]}`` exactly as Lambda passes Kinesis records to a function."""
        arn = self.stream_arn
        region = self.region
        identity = self._identity
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
                "approximateArrivalOfFirstRecord": _iso_millis(first.arrival),
                "approximateArrivalOfLastRecord": _iso_millis(last.arrival),
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
            probe = KinesisRecord(shard_id, "", 0, "", b"", round(time.time(), 3), 0, _PLAIN)
            size = len(json.dumps(self.render_event([probe])["Records"][0])) + 2
            self._envelopes[shard_id] = size
        return size

    # --- helpers shared with readers -------------------------------------------------------------

    def _facts_of(self, shard_id: str) -> _ShardFacts | None:
        return self._facts.get(shard_id)

    def _children_of(self, shard_id: str) -> tuple[PartitionInfo, ...]:
        return self._children.get(shard_id, ())

    def _raise_translated(self, error: ClientError, *, shard: str | None) -> NoReturn:
        """Re-raise ``error``, as a poller error when it means the stream or shard is gone."""
        if error_code(error) == "ResourceNotFoundException":
            message = str(error.response.get("Error", {}).get("Message") or "")
            if shard is not None and message.startswith("Shard "):
                raise SourceError(f"Shard not found: {shard} in {self.stream_arn}") from error
            raise SourceNotFoundError(f"Stream not found: {self.stream_arn}") from error
        raise error


class KinesisShardReader:
    """Reads one shard in order (implements ``PartitionReader``); one task reads at a time."""

    def __init__(self, source: KinesisSource, shard_id: str, start: StartAt) -> None:
        if (
            start.after is None
            and start.starting_position is StartingPosition.AT_TIMESTAMP
            and start.timestamp is None
        ):
            raise ValueError("AT_TIMESTAMP needs a timestamp")
        self.shard_id = shard_id
        self._source = source
        self._calls = source._calls
        self._start = start
        self._options = source.options
        self._envelope = source.envelope_size(shard_id)
        self._iterator: str | None = None
        #: Sequence number of the last record handed out, and its integer value.
        self._last: str | None = None
        self._last_ordinal: int | None = int(start.after) if start.after is not None else None
        self._opened_at = datetime.now(UTC)
        self._next_read_at = 0.0
        self._ended = False
        self._end_children: tuple[PartitionInfo, ...] = ()
        self._closed = False
        self._log = _log.bind(stream=source.stream_arn, shard=shard_id)

    @property
    def position(self) -> str | None:
        """The sequence number of the last record handed out, if any."""
        return self._last

    async def _open(self) -> None:
        self._opened_at = datetime.now(UTC)
        self._iterator = await self._get_iterator(self._iterator_request(renewing=False))

    def _iterator_request(self, *, renewing: bool) -> dict[str, Any]:
        """GetShardIterator arguments that continue exactly where this reader stands."""
        after = self._last if self._last is not None else self._start.after
        if after is not None:
            return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        position = self._start.starting_position
        if position is StartingPosition.TRIM_HORIZON:
            return {"ShardIteratorType": "TRIM_HORIZON"}
        if position is StartingPosition.LATEST:
            if renewing:
                # A fresh LATEST would skip records written since the reader opened; nothing was
                # handed out yet, so reading from the open time repeats nothing.
                return {
                    "ShardIteratorType": "AT_TIMESTAMP",
                    "Timestamp": self._opened_at - _CLOCK_SKEW_ALLOWANCE,
                }
            return {"ShardIteratorType": "LATEST"}
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": self._start.timestamp}

    async def _get_iterator(self, request: dict[str, Any]) -> str:
        source = self._source
        try:
            response = await call_with_backoff(
                functools.partial(
                    self._calls.get_shard_iterator,
                    StreamARN=source.stream_arn,
                    ShardId=self.shard_id,
                    **request,
                ),
                operation="GetShardIterator",
                backoff=self._options.backoff,
                stream=source.stream_arn,
                shard=self.shard_id,
            )
        except ClientError as error:
            source._raise_translated(error, shard=self.shard_id)
        return str(response["ShardIterator"])

    async def _get_records(self) -> dict[str, Any]:
        source = self._source
        renewals = 0
        while True:
            if self._iterator is None:
                raise anyio.ClosedResourceError
            try:
                response: dict[str, Any] = await call_with_backoff(
                    functools.partial(
                        self._calls.get_records,
                        # StreamARN is optional for AWS but lets emulators find the stream.
                        StreamARN=source.stream_arn,
                        ShardIterator=self._iterator,
                        Limit=self._options.read_limit,
                    ),
                    operation="GetRecords",
                    backoff=self._options.backoff,
                    stream=source.stream_arn,
                    shard=self.shard_id,
                )
                return response
            except ClientError as error:
                if (
                    error_code(error) == "ExpiredIteratorException"
                    and renewals < _MAX_RENEWALS_PER_READ
                ):
                    renewals += 1
                    request = self._iterator_request(renewing=True)
                    self._log.info(
                        "shard iterator expired, renewing",
                        iterator_type=request["ShardIteratorType"],
                        after=request.get("StartingSequenceNumber"),
                    )
                    self._iterator = await self._get_iterator(request)
                    continue
                source._raise_translated(error, shard=self.shard_id)

    async def read(self) -> ReadResult:
        """The next records of the shard (possibly none), never skipping or repeating one."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._ended:
            return ReadResult((), ended=True, children=self._end_children)
        now = anyio.current_time()
        if now < self._next_read_at:
            await anyio.sleep(self._next_read_at - now)
        started = anyio.current_time()
        response = await self._get_records()
        records = self._records(response.get("Records") or ())
        behind = int(response.get("MillisBehindLatest") or 0)
        if records:
            last = records[-1]
            self._last, self._last_ordinal = last.position, last.ordinal
        idle = not records and behind == 0
        self._next_read_at = started + (
            self._options.idle_read_interval if idle else self._options.min_read_interval
        )

        next_iterator = response.get("NextShardIterator")
        if not next_iterator:
            children = tuple(
                PartitionInfo(str(child["ShardId"]), tuple(child.get("ParentShards") or ()))
                for child in response.get("ChildShards") or ()
            ) or self._source._children_of(self.shard_id)
            return self._end(records, behind, children, via="null iterator")
        self._iterator = str(next_iterator)
        if self._closed_shard_done(got_records=bool(records)):
            return self._end(records, behind, self._source._children_of(self.shard_id), "ending")
        return ReadResult(records, behind_ms=behind)

    def _closed_shard_done(self, *, got_records: bool) -> bool:
        """Whether a closed shard has been read up to its EndingSequenceNumber.

        AWS signals a shard's end with a null NextShardIterator; moto never does (it keeps
        handing out iterators on closed shards), so the ending sequence number from ListShards
        is the only end marker there. On AWS this check merely agrees with the null iterator.
        """
        facts = self._source._facts_of(self.shard_id)
        if facts is None or facts.ending is None:
            return False
        if self._last_ordinal is not None:
            return self._last_ordinal >= facts.ending
        # Nothing handed out: a closed shard whose range is empty (moto reports 0..0) is done.
        return not got_records and facts.starting is not None and facts.ending <= facts.starting

    def _end(
        self,
        records: list[KinesisRecord],
        behind: int,
        children: tuple[PartitionInfo, ...],
        via: str,
    ) -> ReadResult:
        self._ended = True
        self._end_children = children
        self._iterator = None
        self._log.info(
            "shard end reached",
            via=via,
            last=self._last,
            children=[child.id for child in children],
        )
        return ReadResult(records, behind_ms=behind, ended=True, children=children)

    def _records(self, raw_records: Sequence[Mapping[str, Any]]) -> list[KinesisRecord]:
        """GetRecords entries as KinesisRecords, with their share of the event payload size."""
        shard = self.shard_id
        envelope = self._envelope
        records: list[KinesisRecord] = []
        append = records.append
        for raw in raw_records:
            seq: str = raw["SequenceNumber"]
            data: bytes = raw["Data"]
            key: str = raw["PartitionKey"]
            stamp = raw["ApproximateArrivalTimestamp"]
            arrival = round(stamp.timestamp(), 3) if isinstance(stamp, datetime) else float(stamp)
            key_size = len(key) if key.isascii() else len(json.dumps(key)) - 2
            encryption = raw.get("EncryptionType")
            native = _PLAIN if not encryption or encryption == "NONE" else _native(encryption)
            size = envelope + 2 * len(seq) + (len(data) + 2) // 3 * 4 + key_size
            append(KinesisRecord(shard, seq, int(seq), key, data, arrival, size, native))
        return records

    async def aclose(self) -> None:
        """Forget the iterator; later reads raise ``anyio.ClosedResourceError``."""
        self._closed = True
        self._iterator = None
        self._source._readers.discard(self)


@functools.cache
def _native(encryption: str) -> Mapping[str, str]:
    """The shared, read-only ``native`` of records with server-side encryption ``encryption``."""
    return MappingProxyType({"encryptionType": encryption})


def _iso_millis(epoch_seconds: float) -> str:
    """``2019-11-14T00:38:04.835Z``: how on-failure records spell arrival times."""
    millis = round(epoch_seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


if TYPE_CHECKING:

    def _conforms(source: KinesisSource, reader: KinesisShardReader) -> None:
        """mypy checks here that the classes satisfy the engine's Protocols."""
        _source: PartitionSource = source
        _reader: PartitionReader = reader
