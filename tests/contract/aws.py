"""The moto side of the contract harnesses: plain clients, and on-failure queues to read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio

from tests.contract.stream_contract import Destination
from tests.kit import ACCOUNT, REGION

#: The services the harnesses set resources up with.
SERVICES = ("sqs", "kinesis", "dynamodb")

Clients = Mapping[str, Any]


async def sqs_destination(clients: Clients, name: str) -> Destination:
    """A new SQS queue for on-failure records, and a reader of what reached it."""
    sqs = clients["sqs"]
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
