"""The redrive runs fetched records through the partition engine with the mapping's rules: batch
size, retries, bisection, partial batch responses, per-partition order, the destination."""

from __future__ import annotations

from poller.engine.invocation import InvocationContext
from poller.functions import target_for
from poller.records import Record
from poller.recovery.redrive_engine import RecordingSink, in_order, run_partitions
from poller.sources.kinesis.codec import KinesisCodec
from poller.testing import MemoryPartition
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
