"""The redrive runs fetched records through the partition engine with the mapping's rules: batch
size, retries, bisection, partial batch responses, per-partition order, the destination."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from poller.aws import AwsClients
from poller.config import parse_config
from poller.config.fields import ARN
from poller.destinations.record import on_failure_record
from poller.engine.discard import Discard
from poller.engine.invocation import InvocationContext
from poller.functions import target_for
from poller.records import Record
from poller.recovery.failure_records import DiscardedRange, FailureRecord
from poller.recovery.redrive_engine import RecordingSink, in_order, run_partitions
from poller.recovery.stream_fetch import Fetched, RangeFetcher, judge
from poller.recovery.stream_redrive import redrive_stream
from poller.sources.kinesis.codec import KinesisCodec
from poller.sources.spec import OpenedSource
from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN, TypedRecorder, mapping
from tests.kit import RecordingSink as DestinationDouble


def _records(partition: str, count: int) -> list[Record]:
    log = MemoryPartition(partition)
    return [log.put(f"{partition}-{i}".encode()) for i in range(count)]


async def test_failing_records_are_recorded_again_and_the_rest_succeed_in_order() -> None:
    resolved = mapping(
        BatchSize=4,
        MaximumRetryAttempts=1,
        BisectBatchOnFunctionError=True,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    codec = KinesisCodec(KINESIS_ARN, "us-east-1")
    handler = TypedRecorder(lambda record, _attempt: record.data == b"a-5")
    destination = DestinationDouble()
    sink = RecordingSink(destination)
    context = InvocationContext(
        resolved,
        target_for(handler, codec, report_batch_item_failures=True),
        codec,
        sink=sink,
    )
    partitions = {"a": _records("a", 8), "b": _records("b", 3)}
    finished = await run_partitions(context, partitions)
    assert finished == {"a", "b"}
    delivered = {(r.partition, r.ordinal) for _, d in destination.discards for r in d.records}
    assert sink.recorded == delivered, "the sink remembers exactly what the destination took"
    assert ("a", 6) in sink.recorded
    assert not {("a", n) for n in range(1, 6)} & sink.recorded, "records before it succeeded"
    assert all(len(batch) <= 4 for batch in handler.batches), "BatchSize holds"
    seen_a = handler.seen("a")
    assert seen_a.count("6") == 2, "MaximumRetryAttempts 1: the failing record is tried twice"
    first_seen = list(dict.fromkeys(seen_a))
    assert first_seen == [str(n) for n in range(1, 9)], "the partition's order holds"
    assert handler.seen("b") == ["1", "2", "3"]


def test_records_of_overlapping_ranges_are_handed_over_once_in_order() -> None:
    records = _records("a", 5)
    assert in_order([records[3], records[0], records[3], records[1]]) == [
        records[0],
        records[1],
        records[3],
    ]


class _Inbox:
    """A destination double: the records it holds, and what the redrive settled."""

    description = "test inbox"

    def __init__(self, records: list[FailureRecord]) -> None:
        self._records = records
        self.settled: list[tuple[list[str], list[str], list[str]]] = []

    async def read(self) -> list[FailureRecord]:
        return list(self._records)

    def held_back(self, kept: Sequence[FailureRecord]) -> list[FailureRecord]:
        return []

    async def settle(
        self,
        removed: Sequence[FailureRecord],
        kept: Sequence[FailureRecord],
        foreign: Sequence[FailureRecord],
    ) -> dict[str, str]:
        self.settled.append(
            ([r.where for r in removed], [r.where for r in kept], [r.where for r in foreign])
        )
        return {}

    async def aclose(self) -> None:
        pass


class _Fetcher(RangeFetcher):
    def __init__(self, records: list[Record]) -> None:
        self._records = records

    async def fetch(self, wanted: DiscardedRange) -> Fetched:
        return judge(wanted, [r for r in self._records if wanted.covers(r.ordinal)])


def _failure(records: list[Record], function_arn: str) -> str:
    discard = Discard(
        "m", records[0].partition, tuple(records), "RetryAttemptsExhausted", 1, "r", None, 0.0
    )
    codec = KinesisCodec(KINESIS_ARN, "us-east-1")
    return json.dumps(
        on_failure_record(discard, function_arn=function_arn, batch_info=codec.batch_info(records))
    )


async def test_without_a_destination_records_that_fail_again_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing would record them anew, so removing their on-failure record would lose them."""
    (tmp_path / "redrive_always_fails.py").write_text(
        "def handle(event, context):\n    raise RuntimeError('still broken')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = parse_config(
        {
            "aws": {"region": "us-east-1"},
            "store": {"url": "memory://"},
            "functions": [
                {
                    "FunctionName": "f",
                    "Handler": "redrive_always_fails.handle",
                    "Isolation": "thread",
                }
            ],
            "mappings": [
                {
                    "UUID": "m",
                    "EventSourceArn": KINESIS_ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "FunctionName": "f",
                    "MaximumRetryAttempts": 0,
                }
            ],
        }
    )
    records = _records("shardId-1", 4)
    function_arn = f"arn:aws:lambda:us-east-1:{ARN.parse(KINESIS_ARN).account}:function:f"
    inbox = _Inbox(
        [
            FailureRecord("one", _failure(records[:2], function_arn)),
            FailureRecord("other", _failure(records[2:], function_arn + "-other")),
        ]
    )
    codec = KinesisCodec(KINESIS_ARN, "us-east-1")
    clients = AwsClients(config.aws)
    try:
        report = await redrive_stream(
            config,
            config.mappings[0],
            clients=clients,
            inbox=inbox,
            fetcher=_Fetcher(records),
            opened=OpenedSource(MemorySource(), codec),
            dry_run=False,
        )
    finally:
        await clients.aclose()
    fates = [(e.record.where, e.fate, e.removed) for e in report.entries]
    assert fates == [("one", "failed again", False), ("other", "other mapping", False)]
    assert "kept (no destination)" in report.entries[0].detail
    assert inbox.settled == [([], ["one"], ["other"])]
    assert not report.succeeded
