"""What a shard stream source is, for Kinesis and DynamoDB Streams alike.

Both services keep a stream's records in shards, in order, behind shard iterators, and both roll
shards over (a closed parent, children that must wait for it). Everything that follows from that
lives in this package, once:

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
GetRecords, and how a GetRecords response becomes a :class:`Page`) and its limits (options and
class attributes); its records are rendered by its codec.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

import structlog
from botocore.exceptions import ClientError

from poller.aws_calls import ClientCalls, call_with_backoff, error_code
from poller.config.resolved import ResolvedMapping
from poller.engine.protocols import PartitionInfo, StartAt, TrimmedRange
from poller.errors import SourceError, SourceNotFoundError
from poller.records import Record
from poller.sources.shards.codec import ShardCodec
from poller.sources.shards.parts import IteratorStart, Page, ShardDescription, ShardOptions
from poller.sources.shards.reader import ShardReader
from poller.sources.spec import ArnPattern, OpenedSource, SourceEnvironment

__all__ = ["ShardStreamSource"]

_log = structlog.get_logger("poller.sources.shards")

OptionsT = TypeVar("OptionsT", bound=ShardOptions)


class ShardStreamSource(Generic[OptionsT]):
    """What Kinesis and DynamoDB Streams sources share; subclasses add calls and rendering.

    Subclasses set the class attributes and implement the four hooks ``_list_shards``,
    ``iterator_arguments``, ``records_arguments`` and ``_page``. Lost ranges are reported
    through the engine's ``ReportsTrimming`` capability.
    """

    #: Short name used in logs and metrics ("kinesis").
    kind: str = ""
    #: The stream ARNs the service has (its spec's).
    arn_pattern: ClassVar[ArnPattern]
    #: Whether GetShardIterator takes AT_TIMESTAMP.
    supports_at_timestamp: bool = False
    #: Error codes by which the service says the records asked for were trimmed (retention).
    trimmed_codes: frozenset[str] = frozenset()
    #: The AWS client the service is read with ("kinesis", "dynamodbstreams").
    client_service: ClassVar[str] = ""
    #: The service's options type (its defaults and limits).
    options_type: ClassVar[type[ShardOptions]] = ShardOptions
    #: Renders the stream's records in AWS's shapes; its envelope sizes are the records'.
    codec: ShardCodec

    @classmethod
    async def opened(cls, mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
        """A mapping's source, ready to run (the spec's opener).

        The engine paces the reads of an idle shard (Lambda's pace, or ``idle_poll_seconds``), so
        the reader keeps only the service's own read-rate guard.
        """
        defaults = cls.options_type()
        source = cls(
            mapping.event_source_arn,
            await environment.clients.client(cls.client_service),
            environment.region_of(mapping),
            cast(Any, dataclasses.replace(defaults, idle_read_interval=defaults.min_read_interval)),
        )
        return OpenedSource(source, source.codec)

    def __init__(
        self, stream_arn: str, client: ClientCalls, region: str, options: OptionsT | None = None
    ) -> None:
        self.arn_pattern.check(stream_arn)
        self.stream_arn = stream_arn
        self.region = region
        defaults = cast(OptionsT, self.options_type())
        self.options: OptionsT = options if options is not None else defaults
        self.min_read_interval: float = self.options.min_read_interval
        #: How often Lambda polls a caught-up shard of this service (the engine's default
        #: pace): the service's default idle read interval.
        self.idle_poll_interval: float = defaults.idle_read_interval
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

    def iterator_arguments(self, shard_id: str, start: IteratorStart) -> dict[str, Any]:
        """GetShardIterator arguments for ``start`` on ``shard_id``."""
        raise NotImplementedError

    def records_arguments(self, iterator: str, limit: int) -> dict[str, Any]:
        """GetRecords arguments for one read."""
        raise NotImplementedError

    def parse_page(self, shard_id: str, response: Mapping[str, Any]) -> Page:
        """A GetRecords response as records, next iterator, lag and named children."""
        raise NotImplementedError

    def parse_records(
        self, shard: str, raw_records: Sequence[Mapping[str, Any]]
    ) -> Sequence[Record]:
        """GetRecords entries as records (also how ``poller redrive`` reads a stored payload)."""
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

    async def call(
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
