"""The moto side of the contract harnesses: AWS settings, clients, on-failure queues."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from poller.aws import AwsClients
from poller.config import AwsConfig
from tests.contract.stream_contract import Destination

REGION = "us-east-1"
ACCOUNT = "123456789012"


def aws_settings(endpoint: str) -> dict[str, Any]:
    """``[aws]`` for the run's moto server."""
    return {
        "region": REGION,
        "endpoint_url": endpoint,
        "access_key_id": "testing",
        "secret_access_key": "testing",
    }


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    """aiobotocore clients on the run's moto server, closed after the test."""
    aws = AwsClients(AwsConfig.model_validate(aws_settings(moto_endpoint)))
    try:
        yield aws
    finally:
        await aws.aclose()


async def sqs_destination(clients: AwsClients, name: str) -> Destination:
    """A new SQS queue for on-failure records, and a reader of what reached it."""
    sqs = await clients.client("sqs")
    url = (await sqs.create_queue(QueueName=f"{name}-failures"))["QueueUrl"]
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}-failures"

    async def drain() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        with anyio.move_on_after(10):
            while not found:
                response = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                for message in response.get("Messages") or ():
                    found.append(json.loads(message["Body"]))
                    await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        # Anything else that arrived with it (a second record would be a failure).
        response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        found.extend(json.loads(m["Body"]) for m in response.get("Messages") or ())
        return found

    return Destination(arn, drain)
