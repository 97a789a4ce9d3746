"""The shard-reading core that Kinesis and DynamoDB Streams share.

Both services keep a stream's records in shards, in order, behind shard iterators, and both roll
shards over (a closed parent, children that must wait for it). Everything that follows from that
lives here, once:

- listing shards with their lineage (:class:`ShardDescription` -> ``PartitionInfo.parents``) and
  remembering where closed shards end;
- one :class:`ShardReader` per shard: an iterator after the checkpoint or at the starting
  position, renewed after ``ExpiredIteratorException`` right after the last record handed out
  (never at the starting position again, never skipping one), resumed at the oldest record after
  the service trimmed unread records (counted and logged as :class:`TrimmedRange`), jittered
  backoff while throttled, and the end of a closed shard (a null next iterator, or its ending
  sequence number where an emulator never says so);
- per-shard pacing of reads, and the "stream not found" translation of errors.

A source subclasses :class:`ShardStreamSource` and supplies only what differs between the
services: its client calls (how shards are paginated, the arguments of GetShardIterator and
GetRecords, and how a GetRecords response becomes a :class:`Page`), its record rendering (the
engine's ``EventRenderer`` methods) and its limits (options and class attributes).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import anyio
import structlog
from botocore.exceptions import ClientError

from poller.config import StartingPosition
from poller.errors import SourceError, SourceNotFoundError
from poller.records import Record
from poller.sources.base import (
    Backoff,
    ClientCalls,
    PartitionInfo,
    ReadResult,
    StartAt,
    call_with_backoff,
    error_code,
)

__all__ = [
    "IteratorStart",
    "Page",
    "ShardDescription",
    "ShardOptions",
    "ShardReader",
    "ShardStreamSource",
    "TrimmedRange",
    "check_options",
]

_log = structlog.get_logger(__name__)

#: Renewing an iterator that expires again at once this often in one read means something is off.
_MAX_RENEWALS_PER_READ = 3
#: Resuming at the oldest record that is reported trimmed again this often in one read: give up.
_MAX_TRIM_RESUMES_PER_READ = 3
#: An expired LATEST iterator is renewed from the open time minus this much, so a clock running
#: ahead of AWS's cannot hide records written after the reader opened.
_CLOCK_SKEW_ALLOWANCE = timedelta(seconds=2)


class ShardOptions(Protocol):
    """The options the core reads; each source's options dataclass has (at least) these."""

    @property
    def read_limit(self) -> int:
        """``Limit`` of each GetRecords call."""
        ...

    @property
    def min_read_interval(self) -> float:
        """Fewest seconds between two GetRecords on one shard."""
        ...

    @property
    def idle_read_interval(self) -> float:
        """Seconds between GetRecords while a shard is idle (caught up, nothing returned)."""
        ...

    @property
    def backoff(self) -> Backoff:
        """Waits between throttled attempts."""
        ...


def check_options(
    service: str,
    *,
    read_limit: int,
    max_read_limit: int,
    min_read_interval: float,
    idle_read_interval: float,
    list_page_size: int | None,
    max_list_page_size: int,
) -> None:
    """Raise ValueError naming every option outside what ``service`` allows."""
    problems = []
    if not 1 <= read_limit <= max_read_limit:
        problems.append(f"read_limit {read_limit!r} (allowed 1..{max_read_limit})")
    if min_read_interval < 0:
        problems.append(f"min_read_interval {min_read_interval!r} (allowed >= 0)")
    if idle_read_interval < min_read_interval:
        problems.append(f"idle_read_interval {idle_read_interval!r} (allowed >= min_read_interval)")
    if list_page_size is not None and not 1 <= list_page_size <= max_list_page_size:
        problems.append(f"list_page_size {list_page_size!r} (allowed 1..{max_list_page_size})")
    if problems:
        raise ValueError(f"invalid {service} options: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class ShardDescription:
    """One shard as the service lists it (Kinesis ListShards, DynamoDB DescribeStream)."""

    id: str
    #: The parent shard, then the adjacent parent of a merge (Kinesis only).
    parents: tuple[str, ...] = ()
    #: StartingSequenceNumber as an integer, when listed.
    starting: int | None = None
    #: EndingSequenceNumber as an integer; None while the shard is open.
    ending: int | None = None

    @classmethod
    def from_listing(cls, shard: Mapping[str, Any]) -> ShardDescription:
        """Parse a ``Shard`` entry; both services spell these fields the same way."""
        numbers = shard.get("SequenceNumberRange") or {}
        starting = numbers.get("StartingSequenceNumber")
        ending = numbers.get("EndingSequenceNumber")
        return cls(
            str(shard["ShardId"]),
            tuple(
                str(p)
                for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                if p
            ),
            int(starting) if starting is not None else None,
            int(ending) if ending is not None else None,
        )


@dataclass(frozen=True, slots=True)
class IteratorStart:
    """Where a new shard iterator points, in the services' shared vocabulary."""

    #: TRIM_HORIZON | LATEST | AFTER_SEQUENCE_NUMBER | AT_TIMESTAMP
    type: str
    sequence_number: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords response, as the source translated it for the core."""

    records: Sequence[Record]
    #: The iterator for the next read; None when the shard is closed and read to its end.
    next_iterator: str | None
    #: How far behind the tip the read was, in ms; 0 = caught up.
    behind_ms: int = 0
    #: Children the service named along with the shard's end (Kinesis ChildShards).
    children: tuple[PartitionInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class TrimmedRange:
    """Records the service trimmed (retention passed) before they were read: they are lost."""

    shard: str
    #: The last record handed out (or the checkpoint) before the gap; None: from the start.
    after: str | None
    #: The first record read after resuming at the oldest one; None if none came before the
    #: reader ended or closed.
    resumed_at: str | None
    #: Epoch seconds when the trimming was noticed.
    noticed_at: float


OptionsT = TypeVar("OptionsT", bound=ShardOptions)


class ShardStreamSource(Generic[OptionsT]):
    """What Kinesis and DynamoDB Streams sources share; subclasses add calls and rendering.

    Subclasses set the class attributes and implement the four hooks ``_list_shards``,
    ``_iterator_arguments``, ``_records_arguments`` and ``_page``, plus the renderer methods of
    the engine's ``PartitionSource``.
    """

    #: Short name used in logs and metrics ("kinesis").
    kind: str = ""
    #: The service as messages name it ("Kinesis").
    service_name: str = ""
    #: Whether GetShardIterator takes AT_TIMESTAMP.
    supports_at_timestamp: bool = False
    #: Error codes by which the service says the records asked for were trimmed (retention).
    trimmed_codes: frozenset[str] = frozenset()

    def __init__(
        self,
        stream_arn: str,
        client: ClientCalls,
        region: str,
        options: OptionsT,
        *,
        idle_poll_interval: float,
    ) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self.options = options
        self.min_read_interval: float = options.min_read_interval
        #: How often Lambda polls a caught-up shard of this service (the engine's default pace).
        self.idle_poll_interval: float = idle_poll_interval
        #: How many times a reader found unread records trimmed and resumed at the oldest one.
        self.trimmed_events = 0
        #: The ranges lost to trimming, oldest first.
        self.trimmed_ranges: list[TrimmedRange] = []
        self._calls = client
        self._facts: dict[str, ShardDescription] = {}
        self._children: dict[str, tuple[PartitionInfo, ...]] = {}
        self._readers: set[ShardReader] = set()
        self._log = _log.bind(stream=stream_arn)

    # --- hooks: the service's calls -----------------------------------------------------------------

    async def _list_shards(self) -> list[ShardDescription]:
        """Every shard of the stream now, following the service's pagination."""
        raise NotImplementedError

    def _iterator_arguments(self, shard_id: str, start: IteratorStart) -> dict[str, Any]:
        """GetShardIterator arguments for ``start`` on ``shard_id``."""
        raise NotImplementedError

    def _records_arguments(self, iterator: str, limit: int) -> dict[str, Any]:
        """GetRecords arguments for one read."""
        raise NotImplementedError

    def _page(self, shard_id: str, response: Mapping[str, Any]) -> Page:
        """A GetRecords response as records, next iterator, lag and named children."""
        raise NotImplementedError

    def _names_shard(self, message: str) -> bool:
        """Whether a ResourceNotFoundException message is about the shard, not the stream."""
        return message.lower().startswith("shard ")

    # --- partitions ----------------------------------------------------------------------------------

    async def list_partitions(self) -> list[PartitionInfo]:
        """Every shard the stream has now (open and closed, not yet expired), with lineage."""
        return self._remember(await self._list_shards())

    def _remember(self, shards: Sequence[ShardDescription]) -> list[PartitionInfo]:
        infos: list[PartitionInfo] = []
        facts: dict[str, ShardDescription] = {}
        children: dict[str, list[PartitionInfo]] = {}
        for shard in shards:
            if shard.id in facts:
                continue  # a page boundary repeated it
            info = PartitionInfo(shard.id, shard.parents, closed=shard.ending is not None)
            infos.append(info)
            facts[shard.id] = shard
            for parent in shard.parents:
                children.setdefault(parent, []).append(info)
        self._facts = facts
        self._children = {parent: tuple(kids) for parent, kids in children.items()}
        return infos

    async def open_reader(self, partition: PartitionInfo, start: StartAt) -> ShardReader:
        """A reader on ``partition``, after ``start.after`` or else at the starting position."""
        if partition.closed and partition.id not in self._facts:
            await self.list_partitions()  # learn where the closed shard ends
        reader = ShardReader(self, partition.id, start)
        await reader._open()
        self._readers.add(reader)
        return reader

    async def aclose(self) -> None:
        """Close the readers this source opened (the client belongs to the caller)."""
        for reader in list(self._readers):
            await reader.aclose()

    # --- helpers shared with readers -------------------------------------------------------------

    async def _call(
        self, method: str, operation: str, *, shard: str | None = None, **arguments: Any
    ) -> dict[str, Any]:
        """One AWS call with throttling backoff; "not found" becomes a poller error."""
        fields: dict[str, Any] = {"stream": self.stream_arn}
        if shard is not None:
            fields["shard"] = shard
        try:
            response: dict[str, Any] = await call_with_backoff(
                functools.partial(getattr(self._calls, method), **arguments),
                operation=operation,
                backoff=self.options.backoff,
                **fields,
            )
        except ClientError as error:
            translated = self._translate(error, shard=shard)
            if translated is None:
                raise
            raise translated from error
        return response

    def _translate(self, error: ClientError, *, shard: str | None) -> Exception | None:
        """The poller error for ``error`` when it means the stream or shard is gone, else None."""
        if error_code(error) != "ResourceNotFoundException":
            return None
        message = str(error.response.get("Error", {}).get("Message") or "")
        if shard is not None and self._names_shard(message):
            return SourceError(f"Shard not found: {shard} in {self.stream_arn}")
        return SourceNotFoundError(f"Stream not found: {self.stream_arn}")

    def _facts_of(self, shard_id: str) -> ShardDescription | None:
        return self._facts.get(shard_id)

    def _children_of(self, shard_id: str) -> tuple[PartitionInfo, ...]:
        return self._children.get(shard_id, ())


@dataclass(slots=True)
class _Gap:
    """Trimmed records noticed by a reader, until the first record after them arrives."""

    after: str | None
    noticed_at: float


class ShardReader:
    """Reads one shard in order (implements ``PartitionReader``); one task reads at a time."""

    def __init__(self, source: ShardStreamSource[Any], shard_id: str, start: StartAt) -> None:
        if start.after is None and start.starting_position is StartingPosition.AT_TIMESTAMP:
            if not source.supports_at_timestamp:
                raise ValueError(
                    f"{source.service_name} has no AT_TIMESTAMP starting position "
                    "(allowed: TRIM_HORIZON, LATEST)"
                )
            if start.timestamp is None:
                raise ValueError("AT_TIMESTAMP needs a timestamp")
        self.shard_id = shard_id
        self._source = source
        self._start = start
        self._options = source.options
        self._iterator: str | None = None
        #: Sequence number of the last record handed out, and its integer value.
        self._last: str | None = None
        self._last_ordinal: int | None = int(start.after) if start.after is not None else None
        self._opened_at = datetime.now(UTC)
        self._next_read_at = 0.0
        self._ended = False
        self._end_children: tuple[PartitionInfo, ...] = ()
        self._closed = False
        #: While set, records created before this epoch time are not handed out: a LATEST reader
        #: renewed at TRIM_HORIZON (no AT_TIMESTAMP) passes over what predates its opening.
        self._skip_before: float | None = None
        #: Set between noticing trimmed records and reading the first record after them.
        self._gap: _Gap | None = None
        self._log = _log.bind(stream=source.stream_arn, shard=shard_id)

    @property
    def position(self) -> str | None:
        """The sequence number of the last record handed out, if any."""
        return self._last

    # --- iterators ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        self._opened_at = datetime.now(UTC)
        self._iterator = await self._get_iterator(self._iterator_start())

    def _iterator_start(self) -> IteratorStart:
        """Where an iterator continues exactly where this reader stands."""
        after = self._last if self._last is not None else self._start.after
        if after is not None:
            return IteratorStart("AFTER_SEQUENCE_NUMBER", sequence_number=after)
        position = self._start.starting_position
        if position is StartingPosition.AT_TIMESTAMP:
            return IteratorStart("AT_TIMESTAMP", timestamp=self._start.timestamp)
        return IteratorStart(position.value)

    def _renewal_start(self) -> IteratorStart:
        """Where to renew an expired iterator: after the last record handed out, else the start.

        A fresh LATEST would skip what was written since the reader opened, so a LATEST reader
        that has handed out nothing yet renews at its open time instead: AT_TIMESTAMP where the
        service has it, else at the oldest record, passing over records created before then.
        """
        start = self._iterator_start()
        if start.type != "LATEST":
            return start
        since = self._opened_at - _CLOCK_SKEW_ALLOWANCE
        if self._source.supports_at_timestamp:
            return IteratorStart("AT_TIMESTAMP", timestamp=since)
        # Creation times are rounded down to the second (DynamoDB): allow one more.
        self._skip_before = since.timestamp() - 1.0
        return IteratorStart("TRIM_HORIZON")

    async def _get_iterator(self, start: IteratorStart) -> str:
        source = self._source
        try:
            response = await source._call(
                "get_shard_iterator",
                "GetShardIterator",
                shard=self.shard_id,
                **source._iterator_arguments(self.shard_id, start),
            )
        except ClientError as error:
            code = error_code(error)
            if code not in source.trimmed_codes or start.type == "TRIM_HORIZON":
                raise
            self._notice_trimmed(start.sequence_number, code)
            response = await source._call(
                "get_shard_iterator",
                "GetShardIterator",
                shard=self.shard_id,
                **source._iterator_arguments(self.shard_id, IteratorStart("TRIM_HORIZON")),
            )
        return str(response["ShardIterator"])

    async def _get_records(self) -> Mapping[str, Any]:
        source = self._source
        renewals = 0
        resumes = 0
        while True:
            if self._iterator is None:
                raise anyio.ClosedResourceError
            try:
                return await source._call(
                    "get_records",
                    "GetRecords",
                    shard=self.shard_id,
                    **source._records_arguments(self._iterator, self._options.read_limit),
                )
            except ClientError as error:
                code = error_code(error)
                if code == "ExpiredIteratorException" and renewals < _MAX_RENEWALS_PER_READ:
                    renewals += 1
                    start = self._renewal_start()
                    self._log.info(
                        "shard iterator expired, renewing",
                        iterator_type=start.type,
                        after=start.sequence_number,
                    )
                    self._iterator = await self._get_iterator(start)
                    continue
                if code in source.trimmed_codes and resumes < _MAX_TRIM_RESUMES_PER_READ:
                    resumes += 1
                    after = self._last if self._last is not None else self._start.after
                    self._notice_trimmed(after, code)
                    self._iterator = await self._get_iterator(IteratorStart("TRIM_HORIZON"))
                    continue
                raise

    # --- trimming ----------------------------------------------------------------------------------

    def _notice_trimmed(self, after: str | None, code: str | None) -> None:
        self._source.trimmed_events += 1
        if self._gap is None:
            self._gap = _Gap(after, time.time())
        self._log.error(
            "unread records were trimmed; resuming at the oldest available record",
            code=code,
            after=after,
            trimmed_events=self._source.trimmed_events,
        )

    def _close_gap(self, resumed_at: str | None) -> None:
        gap = self._gap
        if gap is None:
            return
        self._gap = None
        lost = TrimmedRange(self.shard_id, gap.after, resumed_at, gap.noticed_at)
        self._source.trimmed_ranges.append(lost)
        self._log.error(
            "records lost to trimming",
            after=lost.after,
            resumed_at=resumed_at,
            trimmed_events=self._source.trimmed_events,
        )

    def _screen(self, records: Sequence[Record]) -> Sequence[Record]:
        """Drop what must not be handed out after a trim resume or a LATEST renewal."""
        if self._gap is not None:
            last = self._last_ordinal
            if last is not None:
                # The oldest record may still be one already handed out: never repeat it.
                records = [r for r in records if r.ordinal > last]
            if records:
                self._close_gap(records[0].position)
        if self._skip_before is not None and records:
            before = self._skip_before
            kept = next((i for i, r in enumerate(records) if r.arrival >= before), len(records))
            if kept < len(records):
                self._skip_before = None
            records = records[kept:]
        return records

    # --- reading -----------------------------------------------------------------------------------

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
        page = self._source._page(self.shard_id, await self._get_records())
        got_records = bool(page.records)
        records = page.records
        if self._gap is not None or self._skip_before is not None:
            records = self._screen(records)
        if records:
            last = records[-1]
            self._last, self._last_ordinal = last.position, last.ordinal
        behind = page.behind_ms
        idle = not got_records and behind == 0
        self._next_read_at = started + (
            self._options.idle_read_interval if idle else self._options.min_read_interval
        )
        if page.next_iterator is None:
            children = page.children or self._source._children_of(self.shard_id)
            return self._end(records, behind, children, via="null iterator")
        self._iterator = page.next_iterator
        if self._closed_shard_done(got_records=got_records):
            return self._end(records, behind, self._source._children_of(self.shard_id), "ending")
        return ReadResult(records, behind_ms=behind)

    def _closed_shard_done(self, *, got_records: bool) -> bool:
        """Whether a closed shard has been read up to its EndingSequenceNumber.

        AWS signals a shard's end with a null next iterator; moto never does (it keeps handing
        out iterators on closed shards), so the ending sequence number from the listing is the
        only end marker there. On AWS this check merely agrees with the null iterator.
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
        records: Sequence[Record],
        behind: int,
        children: tuple[PartitionInfo, ...],
        via: str,
    ) -> ReadResult:
        self._ended = True
        self._end_children = children
        self._iterator = None
        self._close_gap(None)
        self._log.info(
            "shard end reached",
            via=via,
            last=self._last,
            children=[child.id for child in children],
        )
        return ReadResult(records, behind_ms=behind, ended=True, children=children)

    async def aclose(self) -> None:
        """Forget the iterator; later reads raise ``anyio.ClosedResourceError``."""
        self._closed = True
        self._iterator = None
        self._close_gap(None)
        self._source._readers.discard(self)
