"""Redriving a stream mapping's discarded records: read, fetch, hand over, remove.

1. Every on-failure record in the destination is read (:mod:`~poller.recovery.onfailure_reader`,
   :mod:`~poller.recovery.kafka_inbox`) and judged: another mapping's or malformed records are
   listed and left alone.
2. The records each of this mapping's on-failure records describes are fetched from the source
   (:mod:`~poller.recovery.stream_fetch`); a range the source no longer keeps whole is listed as
   not retained and its record kept.
3. The fetched records go to the mapping's function through the engine
   (:mod:`~poller.recovery.redrive_engine`), with the mapping's rules and its own on-failure
   destination for what fails again. Two rules differ on purpose: MaximumRecordAgeInSeconds is
   not applied (discarded records are old by definition, and would be discarded again unread),
   and the mapping's stored checkpoints are never touched.
4. An on-failure record is removed only when all its records succeeded, or when the ones that
   failed again were recorded anew in the mapping's destination (so one record never stays and
   repeats forever). Without a destination on the mapping, a record that fails again is kept.

``dry_run`` stops after step 2: nothing is invoked and nothing is removed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import structlog

from poller.aws import AwsClients
from poller.config.mapping import MappingConfig
from poller.config.resolved import ResolvedMapping
from poller.config.settings import PollerConfig
from poller.destinations import OnFailureSink
from poller.engine.discard import CountingSink, DiscardSink, DroppingSink
from poller.engine.invocation import FunctionIdentity, InvocationContext
from poller.engine.metrics import MappingCounters
from poller.filtering.records import mapping_filter
from poller.functions import FunctionSet
from poller.records import Record
from poller.recovery.failure_records import (
    DiscardedRange,
    FailureRecord,
    Fate,
    decode_document,
    discarded_range,
)
from poller.recovery.onfailure_reader import FailureInbox
from poller.recovery.redrive_engine import RecordingSink, in_order, run_partitions
from poller.recovery.stream_fetch import RangeFetcher
from poller.runtime.wiring import (
    FunctionPlan,
    build_target,
    function_identity,
    on_failure_destination,
    plan_functions,
)
from poller.sources.spec import OpenedSource
from poller.stores.memory import MemoryStore

__all__ = ["RedriveEntry", "RedriveReport", "redrive_stream"]

_log = structlog.get_logger("poller.recovery")


@dataclass(slots=True)
class RedriveEntry:
    """One on-failure record and what became of it."""

    record: FailureRecord
    fate: str = Fate.NOT_RUN
    detail: str = ""
    range: DiscardedRange | None = None
    #: How many of the range's records the source still has (None: not looked up).
    retained: int | None = None
    records: tuple[Record, ...] = field(default=(), repr=False)
    #: Where the records came from: the source, or the payload an S3 record carries (when the
    #: source no longer has them).
    via: str = "source"
    #: Whether the record may be removed (all its records succeeded or were recorded anew).
    removable: bool = False
    #: Whether the record was removed from the destination.
    removed: bool = False

    def as_json(self) -> dict[str, Any]:
        """The entry as ``--json`` prints it."""
        found = self.range
        return {
            "record": self.record.where,
            "partition": found.partition if found else None,
            "first": found.first if found else None,
            "last": found.last if found else None,
            "batch_size": found.count if found else None,
            "retained": self.retained,
            "records_from": self.via if self.range else None,
            "fate": self.fate,
            "detail": self.detail,
            "removed": self.removed,
        }


@dataclass(slots=True)
class RedriveReport:
    """Everything one run did: where records were read, each record's fate, problems."""

    mapping_id: str
    source: str
    dry_run: bool
    entries: list[RedriveEntry] = field(default_factory=list)
    #: Problems removing records (the records stay; a later run sees them again).
    problems: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """Every record of this mapping redriven (or redrivable, in a dry run) and removed."""
        wanted = Fate.WOULD_REDRIVE if self.dry_run else Fate.REDRIVEN
        return not self.problems and all(
            e.fate in (wanted, Fate.OTHER_MAPPING) for e in self.entries
        )

    def as_json(self) -> dict[str, Any]:
        """The report as ``--json`` prints it."""
        return {
            "mapping": self.mapping_id,
            "from": self.source,
            "dry_run": self.dry_run,
            "records": [e.as_json() for e in self.entries],
            "problems": list(self.problems),
        }


def _sink(
    mapping: ResolvedMapping,
    opened: OpenedSource,
    clients: AwsClients,
    arn: str,
    counters: MappingCounters,
) -> DiscardSink:
    uri = mapping.on_failure_destination
    if not uri:
        return DroppingSink(counters)
    destination = on_failure_destination(uri, opened, clients)
    return CountingSink(OnFailureSink(opened.codec, arn, destination), counters)


async def redrive_stream(
    config: PollerConfig,
    mapping_config: MappingConfig,
    *,
    clients: AwsClients,
    inbox: FailureInbox,
    fetcher: RangeFetcher,
    opened: OpenedSource,
    dry_run: bool,
) -> RedriveReport:
    """Redrive what ``inbox`` holds for the mapping (see the module docstring)."""
    mapping = mapping_config.resolved()
    plan = plan_functions(config, None)[mapping.mapping_id]
    mapping = replace(mapping, function_timeout=plan.config.timeout, maximum_record_age=-1)
    identity = function_identity(plan.config, mapping, clients.region)
    report = RedriveReport(mapping.mapping_id, inbox.description, dry_run)
    read = await inbox.read()
    report.entries = [RedriveEntry(record) for record in read]
    try:
        await _judge_and_run(report, mapping, identity, plan, opened, clients, fetcher, inbox)
    except BaseException:
        # Whatever stopped the redrive (Ctrl-C included), what was read stays: SQS messages
        # become visible again now rather than when their hold ends.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await inbox.settle([], read, [])
        raise
    removed = [e for e in report.entries if e.removable and not dry_run]
    removed_ids = {id(e) for e in removed}
    foreign = [e.record for e in report.entries if e.fate == Fate.OTHER_MAPPING]
    kept_records = [
        e.record
        for e in report.entries
        if id(e) not in removed_ids and e.fate != Fate.OTHER_MAPPING
    ]
    failures = await inbox.settle([e.record for e in removed], kept_records, foreign)
    report.problems += list(failures.values())
    for entry in removed:
        entry.removed = entry.record.where not in failures and inbox.description not in failures
    return report


async def _judge_and_run(
    report: RedriveReport,
    mapping: ResolvedMapping,
    identity: FunctionIdentity,
    plan: FunctionPlan,
    opened: OpenedSource,
    clients: AwsClients,
    fetcher: RangeFetcher,
    inbox: FailureInbox,
) -> None:
    """Judge every record read, fetch its range, and (unless a dry run) hand the records over."""
    topic = getattr(mapping.settings, "topic", None)
    for entry in report.entries:
        record = entry.record
        found = discarded_range(
            decode_document(record.text),
            function_arn=identity.arn,
            source_arn=mapping.event_source_arn,
            kafka_topic=topic,
        )
        if not isinstance(found, DiscardedRange):
            entry.fate, entry.detail = found.fate, found.reason
            continue
        entry.range = found
        fetched = await fetcher.fetch(found)
        entry.retained, entry.records = len(fetched.records), fetched.records
        if fetched.missing is not None:
            carried = fetcher.from_payload(found, decode_document(record.text) or {})
            if carried is not None and carried.missing is None:
                entry.records, entry.via = carried.records, "payload"
                continue
            entry.fate, entry.detail = Fate.NOT_RETAINED, fetched.missing
    candidates = [e for e in report.entries if e.range is not None and e.fate == Fate.NOT_RUN]
    kept = [e.record for e in report.entries if e.fate not in (Fate.NOT_RUN, Fate.OTHER_MAPPING)]
    held = {id(r) for r in inbox.held_back(kept)}
    for entry in candidates:
        if id(entry.record) in held:
            entry.fate = Fate.HELD_BACK
            entry.detail = "behind a kept on-failure record in the destination topic"
    ready = [e for e in candidates if e.fate == Fate.NOT_RUN]
    if report.dry_run:
        for entry in ready:
            entry.fate = Fate.WOULD_REDRIVE
            entry.detail = f"{len(entry.records)} records{_via(entry)}"
    elif ready:
        await _hand_over(mapping, identity, plan, opened, clients, ready)


async def _hand_over(
    mapping: ResolvedMapping,
    identity: FunctionIdentity,
    plan: FunctionPlan,
    opened: OpenedSource,
    clients: AwsClients,
    ready: list[RedriveEntry],
) -> None:
    """Run the records of ``ready`` through the engine and set each entry's fate."""
    counters = MappingCounters()
    sink = RecordingSink(_sink(mapping, opened, clients, identity.arn, counters))
    functions = FunctionSet(region=clients.region, endpoint_url=clients.endpoint_url)
    store = MemoryStore()
    try:
        target = await build_target(
            mapping,
            plan,
            opened.codec,
            identity=identity,
            functions=functions,
            counters=counters,
            limiter=anyio.CapacityLimiter(8),
        )
        context = InvocationContext(
            mapping,
            target,
            opened.codec,
            counters,
            sink,
            identity,
            store,
            filters=mapping_filter(mapping, opened.codec),
        )
        partitions: dict[str, list[Record]] = {}
        for entry in ready:
            assert entry.range is not None
            partitions.setdefault(entry.range.partition, []).extend(entry.records)
        finished = await run_partitions(
            context, {pid: in_order(records) for pid, records in partitions.items()}
        )
    finally:
        with contextlib.suppress(Exception):
            await functions.aclose()
        await store.aclose()
    has_destination = bool(mapping.on_failure_destination)
    for entry in ready:
        assert entry.range is not None
        count = len(entry.records)
        if entry.range.partition not in finished:
            entry.fate, entry.detail = (
                Fate.NOT_RUN,
                "the redrive stopped before its records settled",
            )
            continue
        failed = sum((r.partition, r.ordinal) in sink.recorded for r in entry.records)
        entry.fate = Fate.FAILED_AGAIN if failed else Fate.REDRIVEN
        # Without a destination nothing recorded what failed again: the old record must stay.
        entry.removable = not failed or has_destination
        if not failed:
            entry.detail = f"redriven {count} records{_via(entry)}"
        elif has_destination:
            entry.detail = (
                f"{failed} of {count} records failed again -> new on-failure record in "
                f"{mapping.on_failure_destination}; this one removed"
            )
        else:
            entry.detail = f"{failed} of {count} records failed again; kept (no destination)"
    _log.info(
        "redrive finished",
        mapping=mapping.mapping_id,
        invocations=counters.invocations,
        recorded_again=len(sink.recorded),
    )


def _via(entry: RedriveEntry) -> str:
    if entry.via == "payload":
        return f" from the S3 payload (the source has {entry.retained} of them)"
    return ""
