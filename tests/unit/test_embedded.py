"""The embedded endpoint: an in-process moto server with the config's resources created."""

from __future__ import annotations

from typing import Any

import anyio
from aiobotocore.session import get_session

from poller import Batch, Worker, parse_config


def embedded(mapping: dict[str, Any]) -> Any:
    return parse_config(
        {
            "aws": {"endpoint_url": "embedded", "access_key_id": "t", "secret_access_key": "t"},
            "store": {"url": "memory://"},
            "worker": {"idle_poll_seconds": 0.05, "queue_wait_seconds": 1},
            "mappings": [{"UUID": "m", **mapping}],
        }
    )


def client(worker: Worker, service: str) -> Any:
    return get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=worker.endpoint_url,
        aws_access_key_id="t",
        aws_secret_access_key="t",
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
        async with client(worker, "kinesis") as kinesis:
            shards = await kinesis.list_shards(StreamName="embedded-orders")
            assert len(shards["Shards"]) == 2
            for n in range(5):
                await kinesis.put_record(
                    StreamName="embedded-orders", Data=f"r{n}".encode(), PartitionKey=f"k{n}"
                )
        with anyio.fail_after(15):
            while len(seen) < 5:
                await anyio.sleep(0.02)
    assert sorted(seen) == [f"r{n}".encode() for n in range(5)]


async def test_embedded_endpoint_creates_the_queue_of_an_sqs_mapping() -> None:
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        seen.extend(r.data.decode() for r in batch)

    config = embedded({"EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:embedded-jobs"})
    async with Worker(config, handlers={"m": handle}) as worker, client(worker, "sqs") as sqs:
        url = (await sqs.get_queue_url(QueueName="embedded-jobs"))["QueueUrl"]
        for n in range(3):
            await sqs.send_message(QueueUrl=url, MessageBody=f"job-{n}")
        with anyio.fail_after(15):
            while len(seen) < 3:
                await anyio.sleep(0.02)
    assert sorted(seen) == ["job-0", "job-1", "job-2"]
