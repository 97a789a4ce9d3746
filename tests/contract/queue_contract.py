"""What every queue source does, one behavioural suite: the in-memory doubles and each real server.

:class:`QueueContract` holds the tests; each source's harness (a :class:`QueueHarness`) makes a
queue, sends messages and names a mapping of it. The tests run a whole worker with a typed
recording handler, so the same promises are checked for SQS, RabbitMQ, ActiveMQ and the two
in-memory doubles (SQS-like and broker-like): every message handed over and settled once, a failed
message handed over again until it succeeds, and a message that keeps failing recorded in the
on-failure destination and settled.

The two ways queues settle (a visibility timeout for SQS, acknowledgement for brokers) and what
is each source's own (FIFO groups, partial responses, dead-letter exchanges, reconnects) are
tested in ``tests/unit/test_queue_engine.py``, ``tests/unit/test_mq_engine.py`` and the source
modules under ``tests/integration`` and ``tests/conformance``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from poller import Batch, Record, Worker, parse_config
from poller.testing import RecordingHandler, wait_until_idle
from tests.contract.stream_contract import Destination
from tests.kit import scrape

T = TypeVar("T")

#: How long a test waits for a worker to settle everything.
WITHIN = 30.0


class Queue(Protocol):
    """One queue made by a harness for one test."""

    async def send(self, bodies: Iterable[str]) -> None:
        """Send text messages in order."""
        ...

    def value(self, record: Record) -> str:
        """The body of a message handed to the handler."""
        ...

    def deliveries(self, record: Record) -> int:
        """How many times the queue handed this message out, this time included."""
        ...

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        """A mapping of this queue under AWS field names."""
        ...

    def sources(self, uuid: str) -> Mapping[str, Any] | None:
        """Sources to hand the Worker instead of the ones the mapping names (the doubles)."""
        ...

    async def assert_drained(self) -> None:
        """Nothing is left on the queue (nothing unsettled, nothing to come back)."""
        ...


class QueueHarness(Protocol):
    """How the suite reaches one kind of queue source."""

    #: The key of the on-failure record's batch info ("SQSBatchInfo").
    batch_info_key: str
    #: ``[aws]`` of the config: the moto server every harness's destinations live on.
    aws: Mapping[str, Any]

    async def create(self, name: str) -> Queue:
        """A new, empty queue for one test (failed SQS messages come back after 1 or 2 s)."""
        ...

    def retry_limit(self, retries: int) -> dict[str, Any]:
        """The mapping fields that send a message to the destination after ``retries``
        retries (``MaximumRetryAttempts`` for SQS, ``MaximumRedeliveries`` for brokers)."""
        ...

    async def destination(self, name: str) -> Destination:
        """A new SQS queue to record discarded messages in."""
        ...


class QueueContract:
    """The queue-source contract; a subclass provides the ``harness`` fixture."""

    #: What the worker's ``/metrics`` said at the end of :meth:`run`.
    metrics: dict[str, float]

    async def run(
        self,
        harness: QueueHarness,
        queue: Queue,
        mapping: dict[str, Any],
        handler: RecordingHandler,
        *,
        records: int,
        then: Callable[[], Awaitable[T]] | None = None,
    ) -> T | None:
        """Run a worker until ``handler`` got ``records`` messages and everything settled.

        ``then`` is awaited while the worker still runs, after those messages arrived: what must
        happen before it stops (an SQS message goes to its destination only when it comes back
        after its visibility timeout, seconds after the worker last looked idle).
        """
        uuid = mapping["UUID"]
        config = parse_config(
            {
                "aws": dict(harness.aws),
                "store": {"url": "memory://"},
                "worker": {"queue_wait_seconds": 1, "shutdown_grace_seconds": 5},
                "http": {"listen": "127.0.0.1:0"},
                "mappings": [mapping],
            }
        )
        async with Worker(config, handlers={uuid: handler}, sources=queue.sources(uuid)) as worker:
            await handler.wait_for(records, within=WITHIN)
            result = await then() if then is not None else None
            await wait_until_idle(worker, within=WITHIN, steady=0.5)
            self.metrics = await scrape(worker.http_port)
        return result

    def assert_counted(self, **expected: float) -> None:
        """The scraped counters (``poller_<name>_total``) are exactly ``expected``."""
        found = {name: self.metrics.get(f"poller_{name}_total") for name in expected}
        assert found == expected, f"/metrics: {found}, expected {expected}"

    async def test_every_message_is_handed_over_and_settled_once(
        self, harness: QueueHarness, unique_name: str
    ) -> None:
        queue = await harness.create(unique_name)
        bodies = [f"m{n}" for n in range(12)]
        await queue.send(bodies)
        handler = RecordingHandler()
        mapping = queue.mapping(unique_name, BatchSize=5, MaximumBatchingWindowInSeconds=1)
        await self.run(harness, queue, mapping, handler, records=len(bodies))
        values = [queue.value(r) for r in handler.records]
        assert sorted(values) == sorted(bodies), "a message was lost or handed over twice"
        self.assert_counted(
            polled_events=12, invoked_events=12, failed_invoke_events=0, errors=0, deleted_events=12
        )
        await queue.assert_drained()

    async def test_messages_matching_no_filter_are_settled_and_never_handed_over(
        self, harness: QueueHarness, unique_name: str
    ) -> None:
        queue = await harness.create(unique_name)
        bodies = [json.dumps({"kind": "keep" if n % 2 == 0 else "drop", "n": n}) for n in range(10)]
        await queue.send([*bodies, "plain text, not JSON"])
        probe = queue.mapping(unique_name)
        key = "body" if ":sqs:" in str(probe.get("EventSourceArn", "")) else "data"  # SQS, MQ
        pattern = json.dumps({key: {"kind": ["keep"]}})
        mapping = queue.mapping(
            unique_name, BatchSize=10, FilterCriteria={"Filters": [{"Pattern": pattern}]}
        )
        handler = RecordingHandler()
        # AWS's payload rules: SQS drops a plain-text body against a pattern on JSON fields; MQ
        # applies only the pattern's other (metadata) conditions to it, and there are none.
        kept = bodies[::2] if key == "body" else [*bodies[::2], "plain text, not JSON"]
        await self.run(harness, queue, mapping, handler, records=len(kept))
        assert sorted(queue.value(r) for r in handler.records) == sorted(kept)
        # The others were settled (deleted, acknowledged) without a hand-over.
        self.assert_counted(
            polled_events=11,
            filtered_out_events=11 - len(kept),
            invoked_events=len(kept),
            deleted_events=11,
        )
        await queue.assert_drained()

    async def test_a_failed_message_comes_back_until_it_succeeds(
        self, harness: QueueHarness, unique_name: str
    ) -> None:
        queue = await harness.create(unique_name)
        await queue.send(["m0", "m1", "m2"])
        failed: set[str] = set()

        def fail_m1_once(batch: Batch) -> bool:
            if any(queue.value(r) == "m1" for r in batch) and "m1" not in failed:
                failed.add("m1")
                return True
            return False

        handler = RecordingHandler(fail=fail_m1_once)
        await self.run(harness, queue, queue.mapping(unique_name, BatchSize=1), handler, records=4)
        seen = Counter(queue.value(r) for r in handler.records)
        assert seen == {"m0": 1, "m1": 2, "m2": 1}
        again = [r for r in handler.records if queue.value(r) == "m1"][-1]
        assert queue.deliveries(again) >= 2, "the second delivery must say it is one"
        self.assert_counted(
            polled_events=4,
            invocations=4,
            invoked_events=4,
            errors=1,
            failed_invoke_events=1,
            deleted_events=3,
        )
        await queue.assert_drained()

    async def test_a_message_that_keeps_failing_goes_to_the_destination_and_is_settled(
        self, harness: QueueHarness, unique_name: str
    ) -> None:
        queue = await harness.create(unique_name)
        destination = await harness.destination(unique_name)
        await queue.send(["m0", "m1", "m2"])
        handler = RecordingHandler(fail=lambda batch: any(queue.value(r) == "m1" for r in batch))
        mapping = queue.mapping(
            unique_name,
            BatchSize=1,
            DestinationConfig={"OnFailure": {"Destination": destination.arn}},
            **harness.retry_limit(1),
        )
        discarded = await self.run(
            harness, queue, mapping, handler, records=4, then=destination.drain
        )
        seen = Counter(queue.value(r) for r in handler.records)
        assert seen == {"m0": 1, "m1": 2, "m2": 1}, "one retry, then the destination"
        assert discarded is not None and len(discarded) == 1, discarded
        (message,) = discarded
        assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert message[harness.batch_info_key]["batchSize"] == 1
        # (How often m1 is polled differs: SQS-like queues see it once more, to discard it.)
        self.assert_counted(
            invocations=4,
            errors=2,
            failed_invoke_events=2,
            on_failure_destination_delivered_events=1,
            dropped_events=0,
            deleted_events=3,
        )
        await queue.assert_drained()
