"""The queue engine's acknowledgement settlement (RabbitMQ, ActiveMQ) against an in-memory broker.

:class:`~poller.testing.MemoryBroker` behaves like the real sources where the engine can tell: a
failed batch goes back to the head of the queue with everything behind it, deliveries are counted
per message, and dead letters are kept aside. The real brokers are exercised in tests/integration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from poller.config import ResolvedMapping, parse_config
from poller.engine.queues import QueueMappingRunner
from poller.functions import target_for
from poller.testing import MemoryBroker
from tests.kit import RecordingSink, RecordingStore, queue_runner
from tests.kit import run_until as run_runner_until


def mq_mapping(**fields: Any) -> ResolvedMapping:
    base: dict[str, Any] = {
        "UUID": "mq",
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": ["amqp://127.0.0.1:5672"]}},
        "Queues": ["orders"],
        "FunctionTimeout": 5,
    }
    base.update(fields)
    return parse_config({"mappings": [base]}).mappings[0].resolved()


class Handler:
    """Records the ids of every batch; ``fail(ids)`` decides whether a batch fails."""

    def __init__(self, fail: Callable[[list[str]], bool] = lambda ids: False) -> None:
        self.batches: list[list[str]] = []
        self.times: list[float] = []
        self._fail = fail

    async def __call__(self, event: dict[str, Any], context: Any) -> None:
        ids = [m["messageID"] for m in event["messages"]]
        self.batches.append(ids)
        self.times.append(anyio.current_time())
        if self._fail(ids):
            raise RuntimeError("failed on purpose")


async def run_until(
    mapping: ResolvedMapping,
    broker: MemoryBroker,
    handler: Handler,
    condition: Callable[[QueueMappingRunner], bool],
    *,
    sink: Any = None,
    store: Any = None,
    during: Callable[[QueueMappingRunner], Any] | None = None,
) -> QueueMappingRunner:
    runner = queue_runner(
        mapping,
        broker,
        target_for(handler, broker, report_batch_item_failures=False),
        sink=sink,
        store=store,
    )
    await run_runner_until(
        runner,
        lambda: condition(runner),
        within=10,
        during=None if during is None else lambda: during(runner),
    )
    return runner


async def test_one_poller_by_default_and_no_scaling_up() -> None:
    broker = MemoryBroker()
    for index in range(300):
        broker.publish(f"m{index:03d}")
    handler = Handler()
    seen_pollers: set[int] = set()

    async def watch(runner: QueueMappingRunner) -> None:
        seen_pollers.add(runner.pollers)

    await run_until(
        mq_mapping(BatchSize=10, MaximumBatchingWindowInSeconds=0),
        broker,
        handler,
        lambda r: len(broker.acked) == 300,
        during=watch,
    )
    assert seen_pollers <= {0, 1}
    assert [m for batch in handler.batches for m in batch] == [f"m{i:03d}" for i in range(300)]


async def test_maximum_concurrency_sets_a_fixed_number_of_pollers() -> None:
    broker = MemoryBroker()
    runner = await run_until(
        mq_mapping(ScalingConfig={"MaximumConcurrency": 3}),
        broker,
        Handler(),
        lambda r: r.pollers == 3,
    )
    assert runner.status()["queue"]["maximum_concurrency"] == 3


async def test_the_window_starts_at_the_first_message_not_at_the_poll() -> None:
    """The poller waits idle first; a batch then closes one window after its first message."""
    broker = MemoryBroker()
    handler = Handler()
    published: list[float] = []

    async def publish_late(runner: QueueMappingRunner) -> None:
        if not published and anyio.current_time() > started + 0.6:
            published.append(anyio.current_time())
            broker.publish("first")
            await anyio.sleep(0.1)
            broker.publish("second")

    started = anyio.current_time()
    await run_until(
        mq_mapping(BatchSize=10, MaximumBatchingWindowInSeconds=0.4),
        broker,
        handler,
        lambda r: len(broker.acked) == 2,
        during=publish_late,
    )
    assert handler.batches == [["first", "second"]]
    waited = handler.times[0] - published[0]
    assert 0.35 <= waited < 1.0, f"batch handed {waited:.2f} s after its first message"


async def test_a_failed_batch_goes_back_whole_and_comes_first() -> None:
    broker = MemoryBroker()
    for index in range(6):
        broker.publish(f"m{index}")
    failures = iter([True, False])
    handler = Handler(lambda ids: ids[0] == "m0" and next(failures, False))
    await run_until(
        mq_mapping(BatchSize=3, MaximumBatchingWindowInSeconds=0),
        broker,
        handler,
        lambda r: len(broker.acked) == 6,
    )
    assert handler.batches == [["m0", "m1", "m2"], ["m0", "m1", "m2"], ["m3", "m4", "m5"]]
    assert broker.given_back == [["m0", "m1", "m2"]]
    assert broker.dead == []


async def test_after_maximum_redeliveries_a_message_is_dead_lettered() -> None:
    broker = MemoryBroker()
    for body in ("a", "poison", "b"):
        broker.publish(body)
    handler = Handler(lambda ids: "poison" in ids)
    runner = await run_until(
        mq_mapping(BatchSize=1, MaximumBatchingWindowInSeconds=0, MaximumRedeliveries=2),
        broker,
        handler,
        lambda r: broker.acked == ["a", "b"],
    )
    assert handler.batches == [["a"], ["poison"], ["poison"], ["poison"], ["b"]]
    assert broker.dead == ["poison"]
    assert runner.counters.dropped_events == 1


async def test_with_a_destination_the_exhausted_message_is_recorded_and_acked() -> None:
    broker = MemoryBroker()
    broker.publish("poison")
    sink = RecordingSink()
    handler = Handler(lambda ids: True)
    await run_until(
        mq_mapping(
            MaximumRedeliveries=1,
            DestinationConfig={"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:1:dlq"}},
        ),
        broker,
        handler,
        lambda r: broker.acked == ["poison"],
        sink=sink,
    )
    assert len(handler.batches) == 2
    ((_, discard),) = sink.discards
    assert discard.condition == "RetryAttemptsExhausted"
    assert discard.invoke_count == 2
    assert discard.response is not None and discard.response.function_error == "Unhandled"
    assert [r.position for r in discard.records] == ["poison"]
    assert broker.dead == []


async def test_a_message_already_past_the_limit_is_given_up_before_it_is_handed_over() -> None:
    """The broker counted deliveries (a quorum queue's x-delivery-count) across a restart."""
    broker = MemoryBroker()
    broker.publish("old")
    broker.broker_counts["old"] = 8
    broker.publish("new")
    handler = Handler()
    await run_until(
        mq_mapping(MaximumRedeliveries=6, MaximumBatchingWindowInSeconds=0),
        broker,
        handler,
        lambda r: broker.acked == ["new"],
    )
    assert broker.dead == ["old"]
    assert handler.batches == [["new"]]


async def test_a_message_over_the_payload_cap_is_dead_lettered_unseen() -> None:
    broker = MemoryBroker()
    big = broker.publish(b"x" * (6 * 1024 * 1024 + 1))
    broker.publish("small")
    handler = Handler()
    await run_until(mq_mapping(), broker, handler, lambda r: broker.acked == ["small"])
    assert broker.dead == [big]
    assert handler.batches == [["small"]]


async def test_idempotency_acks_what_already_succeeded_without_handing_it_over() -> None:
    store = RecordingStore()
    await store.remember_succeeded("mq", "queue", ["done"], expires_at=4e9)
    broker = MemoryBroker()
    broker.publish("done")
    broker.publish("fresh")
    handler = Handler()
    await run_until(
        mq_mapping(Idempotency=True, MaximumBatchingWindowInSeconds=0),
        broker,
        handler,
        lambda r: sorted(broker.acked) == ["done", "fresh"],
        store=store,
    )
    assert handler.batches == [["fresh"]]
