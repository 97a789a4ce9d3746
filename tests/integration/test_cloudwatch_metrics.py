"""``[metrics] cloudwatch_namespace``: a worker publishes its mappings' metrics to CloudWatch (the
moto server's), with Lambda's dimensions, counting each record once across publishes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from poller import Batch, Worker, parse_config
from tests.kit import KINESIS_ARN, REGION, wait_until
from tests.kit.aws import moto_clients
from tests.unit.engine_harness import fill

pytestmark = pytest.mark.integration


@pytest.fixture
async def cloudwatch(moto_endpoint: str) -> AsyncIterator[Any]:
    async with moto_clients(moto_endpoint, "cloudwatch") as (client,):
        yield client


async def test_metrics_reach_cloudwatch_with_lambdas_dimensions(
    cloudwatch: Any, moto_endpoint: str
) -> None:
    namespace = f"poller-test-{uuid.uuid4().hex[:8]}"
    config = parse_config(
        {
            "aws": {
                "region": REGION,
                "endpoint_url": moto_endpoint,
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
            "store": {"url": "memory://"},
            "metrics": {"cloudwatch_namespace": namespace, "cloudwatch_interval_seconds": 1},
            "mappings": [
                {
                    "UUID": "orders",
                    "EventSourceArn": KINESIS_ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 5,
                }
            ],
        }
    )
    source = fill([12])
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        seen.extend(record.position for record in batch)

    async def total(metric: str) -> float:
        answer = await cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=metric,
            Dimensions=[
                {"Name": "FunctionName", "Value": "orders"},
                {"Name": "EventSourceMappingUUID", "Value": "orders"},
            ],
            StartTime=datetime.now(UTC) - timedelta(minutes=5),
            EndTime=datetime.now(UTC) + timedelta(minutes=5),
            Period=60,
            Statistics=["Sum"],
        )
        return sum(point["Sum"] for point in answer["Datapoints"])

    async with Worker(config, handlers={"orders": handle}, sources={"orders": source}) as worker:
        await wait_until(lambda: len(seen) == 12, what="every record handled")
        function = worker.views[0].function
        for _ in range(100):  # the first publish lands before the late records come
            if await total("PolledEventCount") == 12:
                break
            await anyio.sleep(0.1)
        assert await total("PolledEventCount") == 12
        for extra in range(8):  # more records in a later period: counted once each
            source.partitions["shardId-000000000000"].put(f"late-{extra}".encode())
        await wait_until(lambda: len(seen) == 20, what="the late records handled")
    # The worker published once more as it stopped: everything is in by now.
    listed = await cloudwatch.list_metrics(Namespace=namespace)
    names = {metric["MetricName"] for metric in listed["Metrics"]}
    assert {"PolledEventCount", "InvokedEventCount", "Invocations", "Duration"} <= names, names
    dimensions = {
        (d["Name"], d["Value"]) for metric in listed["Metrics"] for d in metric["Dimensions"]
    }
    assert dimensions == {("FunctionName", function), ("EventSourceMappingUUID", "orders")}
    assert await total("PolledEventCount") == 20
    assert await total("InvokedEventCount") == 20
    assert await total("Errors") == 0
