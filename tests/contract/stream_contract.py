"""What every log source does, one behavioural suite: the in-memory double and each real server.

:class:`StreamContract` holds the tests; each source's harness (a :class:`StreamHarness`) makes a
stream, writes records under ordering keys, and names a mapping of it. The tests run a whole
worker with a typed recording handler, so the same promises are checked for Kinesis, DynamoDB
Streams, Kafka and the in-memory source the engine's unit tests use: every record handed over in
order per key and settled once, a failing batch blocks its partition until it succeeds, a partial
failure retries from the failed record, exhausted retries reach the on-failure destination and the
partition goes on, and a restart resumes after the checkpoint.

What each source does beyond this (AWS's exact event shapes, resharding, rebalances, trimming)
is tested in its own modules under ``tests/integration`` and ``tests/conformance``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from poller import Batch, Record, Worker, parse_config
from poller.config import PollerConfig
from poller.testing import RecordingHandler, wait_until_idle

#: How long a test waits for a worker to catch up (Kafka's group join takes about a second).
WITHIN = 30.0
#: Short retry waits: the behaviour, not AWS's pace, is under test.
FAST_RETRIES = {"RetryBackoffSeconds": 0.05, "RetryBackoffMaxSeconds": 0.2}


class Stream(Protocol):
    """One stream made by a harness for one test."""

    async def put(self, records: Iterable[tuple[str, str]]) -> None:
        """Write ``(key, value)`` records in order; one key's records share a partition."""
        ...

    def value(self, record: Record) -> str:
        """The value a record handed to the handler carries (as :meth:`put` wrote it)."""
        ...

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        """A mapping of this stream under AWS field names (TRIM_HORIZON unless given)."""
        ...

    def sources(self, uuid: str) -> Mapping[str, Any] | None:
        """Sources to hand the Worker instead of the ones the mapping names (the double)."""
        ...

    def keep_pattern(self, kind: str) -> str:
        """A FilterCriteria pattern keeping the records :func:`kinded` wrote with ``kind``."""
        ...


class StreamHarness(Protocol):
    """How the suite reaches one kind of log source."""

    #: The key of the on-failure record's batch info ("KinesisBatchInfo").
    batch_info_key: str
    #: ``[aws]`` of the config: the moto server every harness's destinations live on.
    aws: Mapping[str, Any]
    #: ``[worker]`` settings that make the source quick in tests.
    worker: Mapping[str, Any]

    async def create(self, name: str) -> Stream:
        """A new, empty stream for one test."""
        ...

    async def destination(self, name: str) -> Destination:
        """A new SQS queue to record discarded batches in."""
        ...


@dataclass
class Destination:
    """An on-failure SQS queue: its ARN, and a way to read what reached it."""

    arn: str
    #: Every on-failure record in the queue (waits a little for the first), as JSON.
    drain: Callable[[], Awaitable[list[dict[str, Any]]]]


def records_of(keys: Iterable[str], count: int) -> list[tuple[str, str]]:
    """``count`` records per key, interleaved: ``("a", "a:0"), ("b", "b:0"), ("a", "a:1")...``."""
    keys = list(keys)
    return [(key, f"{key}:{n}") for n in range(count) for key in keys]


def in_key_order(values: Iterable[str]) -> dict[str, list[int]]:
    """The sequence numbers each key's values were seen in."""
    seen: dict[str, list[int]] = defaultdict(list)
    for value in values:
        key, number = value.split(":", 1)
        seen[key].append(int(number))
    return dict(seen)


class StreamContract:
    """The log-source contract; a subclass provides the ``harness`` fixture."""

    def config(
        self, harness: StreamHarness, mapping: dict[str, Any], store: str = "memory://"
    ) -> PollerConfig:
        return parse_config(
            {
                "aws": dict(harness.aws),
                "store": {"url": store},
                "worker": {"shutdown_grace_seconds": 5, **harness.worker},
                "mappings": [mapping],
            }
        )

    async def run(
        self,
        harness: StreamHarness,
        stream: Stream,
        mapping: dict[str, Any],
        handler: RecordingHandler,
        *,
        records: int,
        store: str = "memory://",
    ) -> Worker:
        """Run a worker until ``handler`` got at least ``records`` records and all is idle."""
        uuid = mapping["UUID"]
        config = self.config(harness, mapping, store)
        async with Worker(config, handlers={uuid: handler}, sources=stream.sources(uuid)) as worker:
            await handler.wait_for(records, within=WITHIN)
            await wait_until_idle(worker, within=WITHIN, steady=0.3)
        return worker

    # --- order and once-only ---------------------------------------------------------------------

    async def test_every_record_is_handed_over_once_in_order_per_key(
        self, harness: StreamHarness, unique_name: str
    ) -> None:
        stream = await harness.create(unique_name)
        written = records_of(["a", "b", "c"], 8)
        await stream.put(written)
        handler = RecordingHandler()
        await self.run(harness, stream, stream.mapping(unique_name), handler, records=len(written))
        values = [stream.value(r) for r in handler.records]
        assert sorted(values) == sorted(v for _, v in written), "a record was lost or repeated"
        assert in_key_order(values) == {key: list(range(8)) for key in "abc"}

    # --- failures --------------------------------------------------------------------------------

    async def test_a_failing_batch_blocks_its_partition_until_it_succeeds(
        self, harness: StreamHarness, unique_name: str
    ) -> None:
        stream = await harness.create(unique_name)
        await stream.put(records_of(["k"], 6))
        attempts: dict[str, int] = defaultdict(int)

        def fail_twice(batch: Batch) -> bool:
            values = [stream.value(r) for r in batch]
            if "k:2" in values:
                attempts["k:2"] += 1
                return attempts["k:2"] <= 2
            return False

        handler = RecordingHandler(fail=fail_twice)
        mapping = stream.mapping(unique_name, BatchSize=2, **FAST_RETRIES)
        await self.run(harness, stream, mapping, handler, records=10)
        batches = [[stream.value(r) for r in batch] for batch in handler.batches]
        first_failure = next(i for i, b in enumerate(batches) if "k:2" in b)
        # Nothing after the failing batch is handed over until its third attempt succeeded.
        with_k2 = [i for i, b in enumerate(batches) if "k:2" in b]
        assert len(with_k2) == 3, batches
        later = [i for i, b in enumerate(batches) if "k:4" in b or "k:5" in b]
        assert min(later) > with_k2[-1], batches
        assert batches[first_failure][0] == batches[with_k2[-1]][0], "the retry moved the batch"
        assert sorted(set(stream.value(r) for r in handler.records)) == [f"k:{n}" for n in range(6)]

    async def test_a_partial_failure_retries_from_the_failed_record(
        self, harness: StreamHarness, unique_name: str
    ) -> None:
        stream = await harness.create(unique_name)
        await stream.put(records_of(["k"], 4))
        failed_once: set[str] = set()

        def fail_k1_once(batch: Batch) -> list[Record]:
            failed = [r for r in batch if stream.value(r) == "k:1" and "k:1" not in failed_once]
            failed_once.update(stream.value(r) for r in failed)
            return failed

        handler = RecordingHandler(fail=fail_k1_once)
        mapping = stream.mapping(
            unique_name,
            BatchSize=4,
            MaximumBatchingWindowInSeconds=1,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            **FAST_RETRIES,
        )
        await self.run(harness, stream, mapping, handler, records=7)
        batches = [[stream.value(r) for r in batch] for batch in handler.batches]
        assert batches[0] == ["k:0", "k:1", "k:2", "k:3"], batches
        assert batches[1] == ["k:1", "k:2", "k:3"], "the retry must start at the failed record"
        assert len(batches) == 2

    async def test_exhausted_retries_reach_the_destination_and_the_partition_goes_on(
        self, harness: StreamHarness, unique_name: str
    ) -> None:
        stream = await harness.create(unique_name)
        destination = await harness.destination(unique_name)
        await stream.put(records_of(["k"], 4))
        handler = RecordingHandler(fail=lambda batch: any(stream.value(r) == "k:1" for r in batch))
        mapping = stream.mapping(
            unique_name,
            BatchSize=1,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": destination.arn}},
            **FAST_RETRIES,
        )
        await self.run(harness, stream, mapping, handler, records=5)
        values = [stream.value(r) for r in handler.records]
        assert values == ["k:0", "k:1", "k:1", "k:2", "k:3"]
        messages = await destination.drain()
        assert len(messages) == 1, messages
        (message,) = messages
        assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert message["requestContext"]["approximateInvokeCount"] == 2
        assert message[harness.batch_info_key]["batchSize"] == 1

    # --- progress --------------------------------------------------------------------------------

    async def test_records_matching_no_filter_are_skipped_and_checkpointed_past(
        self, harness: StreamHarness, unique_name: str, tmp_path: Path
    ) -> None:
        stream = await harness.create(unique_name)
        store = f"sqlite:///{tmp_path / 'state.db'}"
        written = kinded(["a", "b"], 6)
        await stream.put(written)
        mapping = stream.mapping(
            unique_name,
            BatchSize=10,
            FilterCriteria={"Filters": [{"Pattern": stream.keep_pattern("keep")}]},
        )
        first = RecordingHandler()
        worker = await self.run(harness, stream, mapping, first, records=6, store=store)
        kept = [value for _, value in written if '"keep"' in value]
        assert sorted(stream.value(r) for r in first.records) == sorted(kept)
        metrics = worker.status()[unique_name]["metrics"]
        assert metrics["FilteredOutEventCount"] == 6
        assert metrics["InvokedEventCount"] == 6
        # The last record of each key was filtered: the checkpoint moved past it all the same,
        # so a restart hands over only what came after.
        later = json.dumps({"kind": "keep", "key": "a", "n": 6})
        await stream.put([("a", later)])
        second = RecordingHandler()
        await self.run(harness, stream, mapping, second, records=1, store=store)
        assert [stream.value(r) for r in second.records] == [later]

    async def test_a_restart_resumes_after_the_checkpoint(
        self, harness: StreamHarness, unique_name: str, tmp_path: Path
    ) -> None:
        stream = await harness.create(unique_name)
        store = f"sqlite:///{tmp_path / 'state.db'}"
        await stream.put(records_of(["k"], 5))
        first = RecordingHandler()
        mapping = stream.mapping(unique_name)
        await self.run(harness, stream, mapping, first, records=5, store=store)
        await stream.put([("k", f"k:{n}") for n in range(5, 8)])
        second = RecordingHandler()
        await self.run(harness, stream, mapping, second, records=3, store=store)
        assert [stream.value(r) for r in first.records] == [f"k:{n}" for n in range(5)]
        assert [stream.value(r) for r in second.records] == ["k:5", "k:6", "k:7"]


def kinded(keys: Iterable[str], count: int) -> list[tuple[str, str]]:
    """``count`` JSON records per key, alternately of kind "keep" and "drop" (the last "drop")."""
    return [
        (key, json.dumps({"kind": "keep" if n % 2 == 0 else "drop", "key": key, "n": n}))
        for n in range(count)
        for key in keys
    ]
