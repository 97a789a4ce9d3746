"""The embedded endpoint: an in-process moto server with the config's resources created."""

from __future__ import annotations

from typing import Any

from poller import Batch, Worker, parse_config
from tests.kit import moto_clients, wait_until


def embedded(mapping: dict[str, Any]) -> Any:
    return parse_config(
        {
            "aws": {"endpoint_url": "embedded", "access_key_id": "t", "secret_access_key": "t"},
            "store": {"url": "memory://"},
            "worker": {"idle_poll_seconds": 0.05, "queue_wait_seconds": 1},
            "mappings": [{"UUID": "m", **mapping}],
        }
    )


async def test_embedded_endpoint_creates_the_stream_and_runs_a_kinesis_mapping() -> None:
    seen: list[bytes] = []

    async def handle(batch: Batch) -> None:
        seen.extend(r.data for r in batch)

    config = embedded(
        {
            "EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/embedded-orders",
            "StartingPosition": "TRIM_HORIZON",
        }
    )
    async with Worker(config, handlers={"m": handle}, embedded_shards=2) as worker:
        assert worker.endpoint_url and worker.endpoint_url.startswith("http://127.0.0.1:")
        async with moto_clients(worker.endpoint_url, "kinesis") as (kinesis,):
            shards = await kinesis.list_shards(StreamName="embedded-orders")
            assert len(shards["Shards"]) == 2
            for n in range(5):
                await kinesis.put_record(
                    StreamName="embedded-orders", Data=f"r{n}".encode(), PartitionKey=f"k{n}"
                )
        await wait_until(lambda: len(seen) >= 5, within=15, what="the 5 records handed over")
    assert sorted(seen) == [f"r{n}".encode() for n in range(5)]


async def test_embedded_endpoint_creates_the_queue_of_an_sqs_mapping() -> None:
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        seen.extend(r.data.decode() for r in batch)

    config = embedded({"EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:embedded-jobs"})
    async with (
        Worker(config, handlers={"m": handle}) as worker,
        moto_clients(str(worker.endpoint_url), "sqs") as (sqs,),
    ):
        url = (await sqs.get_queue_url(QueueName="embedded-jobs"))["QueueUrl"]
        for n in range(3):
            await sqs.send_message(QueueUrl=url, MessageBody=f"job-{n}")
        await wait_until(lambda: len(seen) >= 3, within=15, what="the 3 messages handed over")
    assert sorted(seen) == ["job-0", "job-1", "job-2"]
