"""poller.testing: the doubles run mappings through the Worker as users test their handlers."""

from __future__ import annotations

from typing import Any

from poller import Batch, Worker, parse_config
from poller.testing import (
    MemoryBroker,
    MemoryPartition,
    MemoryQueue,
    MemorySource,
    RecordingHandler,
    RecordingLambdaHandler,
    wait_until,
    wait_until_idle,
)

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"


def config(**mapping: Any) -> Any:
    return parse_config({"store": {"url": "memory://"}, "mappings": [{"UUID": "m", **mapping}]})


async def test_a_lambda_handler_sees_kinesis_events_and_its_failures_are_retried() -> None:
    """The README's example: the user's handler, wrapped to record what reached it."""
    calls: list[list[str]] = []

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        numbers = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        calls.append(numbers)
        failed = [n for n in numbers if n == "2" and len(calls) == 1]
        return {"batchItemFailures": [{"itemIdentifier": n} for n in failed]}

    shard = MemoryPartition("shardId-000000000000")
    for n in range(3):
        shard.put(f'{{"order": {n}}}'.encode(), key="customer-1")
    handler = RecordingLambdaHandler(handle)
    mapping = config(
        EventSourceArn=STREAM,
        StartingPosition="TRIM_HORIZON",
        FunctionResponseTypes=["ReportBatchItemFailures"],
        RetryBackoffSeconds=0,
    )
    source = MemorySource([shard], arn=STREAM)
    async with Worker(mapping, handlers={"m": handler}, sources={"m": source}) as worker:
        await wait_until_idle(worker, within=10)
    assert calls == [["1", "2", "3"], ["2", "3"]]
    record = handler.events[0]["Records"][0]
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventSourceARN"] == STREAM
    assert record["kinesis"]["partitionKey"] == "customer-1"
    assert handler.contexts[0].function_name == "m"


async def test_a_typed_recorder_fails_what_it_is_told_and_waits_for_records() -> None:
    queue = MemoryQueue(visibility_timeout=0.2)
    for n in range(4):
        queue.send(f"job-{n}")
    first_try = {"job-1"}

    def fail_once(batch: Batch) -> list[Any]:
        failed = [r for r in batch if r.data.decode() in first_try]
        first_try.clear()
        return failed

    recorder = RecordingHandler(fail=fail_once)
    mapping = config(
        EventSourceArn="arn:aws:sqs:us-east-1:000000000000:memory",
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    async with Worker(mapping, handlers={"m": recorder}, sources={"m": queue}):
        records = await recorder.wait_for(5, within=10)
        await wait_until(lambda: not queue.remaining, what="the queue to empty")
    assert sorted(r.data for r in records) == sorted(
        [b"job-0", b"job-1", b"job-1", b"job-2", b"job-3"]
    )


async def test_a_memory_broker_renders_mq_events_and_acknowledges_what_succeeded() -> None:
    broker = MemoryBroker("orders")
    for n in range(3):
        broker.publish(f"m{n}")
    handler = RecordingLambdaHandler()
    mapping = config(
        SelfManagedEventSource={"Endpoints": {"MQ_BROKER_URLS": ["stomp://127.0.0.1:61613"]}},
        Queues=["orders"],
        MaximumBatchingWindowInSeconds=0,
    )
    async with Worker(mapping, handlers={"m": handler}, sources={"m": broker}):
        await wait_until(lambda: len(broker.acked) == 3, what="three acks")
    event = handler.events[0]
    assert event["eventSource"] == "aws:mq"
    assert [m["messageID"] for m in event["messages"]] == ["m0", "m1", "m2"]
    assert broker.dead == [] and broker.given_back == []
