"""Reading one shard in order: iterators and their renewal, trimming, pacing, the shard's end."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from botocore.exceptions import ClientError

from poller.aws_calls import error_code
from poller.config.fields import StartingPosition
from poller.engine.cutoff import CLOCK_SKEW_ALLOWANCE, ArrivalCutoff
from poller.engine.protocols import PartitionInfo, ReadResult, StartAt, TrimmedRange
from poller.records import Record
from poller.sources.shards.parts import IteratorStart

if TYPE_CHECKING:
    from poller.sources.shards.source import ShardStreamSource

__all__ = ["ShardReader"]

_log = structlog.get_logger("poller.sources.shards")

#: Renewing an iterator that expires again at once this often in one read means something is off.
_MAX_RENEWALS_PER_READ = 3
#: Resuming at the oldest record that is reported trimmed again this often in one read: give up.
_MAX_TRIM_RESUMES_PER_READ = 3


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
                    f"{source.options.service} has no AT_TIMESTAMP starting position "
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
        #: While active, records created before its moment are not handed out: a LATEST reader
        #: renewed at TRIM_HORIZON (no AT_TIMESTAMP) passes over what predates its opening.
        self._cutoff = ArrivalCutoff()
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
        # A clock running ahead of AWS's must not hide records written after the reader opened.
        since = self._opened_at - timedelta(seconds=CLOCK_SKEW_ALLOWANCE)
        if self._source.supports_at_timestamp:
            return IteratorStart("AT_TIMESTAMP", timestamp=since)
        # Creation times are rounded down to the second (DynamoDB): allow one more.
        self._cutoff = ArrivalCutoff(since.timestamp() - 1.0)
        return IteratorStart("TRIM_HORIZON")

    async def _get_iterator(self, start: IteratorStart) -> str:
        source = self._source
        try:
            response = await source.call(
                "get_shard_iterator",
                "GetShardIterator",
                shard=self.shard_id,
                **source.iterator_arguments(self.shard_id, start),
            )
        except ClientError as error:
            code = error_code(error)
            if code not in source.trimmed_codes or start.type == "TRIM_HORIZON":
                raise
            self._notice_trimmed(start.sequence_number, code)
            response = await source.call(
                "get_shard_iterator",
                "GetShardIterator",
                shard=self.shard_id,
                **source.iterator_arguments(self.shard_id, IteratorStart("TRIM_HORIZON")),
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
                return await source.call(
                    "get_records",
                    "GetRecords",
                    shard=self.shard_id,
                    **source.records_arguments(self._iterator, self._options.read_limit),
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
        return self._cutoff.screen(records)

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
        page = self._source.parse_page(self.shard_id, await self._get_records())
        got_records = bool(page.records)
        records = page.records
        if self._gap is not None or self._cutoff.active:
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
