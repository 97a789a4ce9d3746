"""Helpers for the Kinesis tests: streams on a real moto server, written to with plain clients.

Streams and queues are created with plain aiobotocore clients (not poller's own), so the setup does
not depend on the code under test. A test writes records with :class:`AwsSetup` and builds its
config, handlers and waits from the shared kit (``tests/kit``); what is here is Kinesis's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.faults import Rewriter, arrived_at
from tests.kit import MotoSetup, Sqs, create_stream, moto_clients

__all__ = [
    "SHARD0",
    "AwsSetup",
    "arrived_at_for",
    "aws_setup",
]

SHARD0 = "shardId-000000000000"


@dataclass(slots=True)
class AwsSetup(MotoSetup):
    """Kinesis and SQS clients on the moto endpoint, for creating and inspecting resources."""

    kinesis: Any

    async def create_stream(self, name: str, shards: int = 1) -> str:
        """Create a stream, wait until it is ACTIVE and return its ARN."""
        return await create_stream(self.kinesis, name, shards)

    async def put_records(
        self, stream_arn: str, payloads: Sequence[bytes], *, key: str = "pk"
    ) -> list[str]:
        """Write ``payloads`` one by one, in order; return their sequence numbers."""
        numbers = []
        for payload in payloads:
            response = await self.kinesis.put_record(
                StreamARN=stream_arn, Data=payload, PartitionKey=key
            )
            numbers.append(str(response["SequenceNumber"]))
        return numbers


@contextlib.asynccontextmanager
async def aws_setup(endpoint: str) -> AsyncIterator[AwsSetup]:
    """Kinesis and SQS clients on ``endpoint``, closed on exit."""
    async with moto_clients(endpoint, "kinesis", "sqs") as (kinesis, sqs):
        yield AwsSetup(endpoint=endpoint, sqs=Sqs(endpoint, sqs), kinesis=kinesis)


def arrived_at_for(sequence_numbers: Sequence[str], moment: datetime) -> Rewriter:
    """A GetRecords rewriter that stamps only the named records as arrived at ``moment``."""
    stamp = arrived_at(moment)
    chosen = set(sequence_numbers)

    def rewrite(kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        records = [
            stamp(kwargs, {"Records": [record]})["Records"][0]
            if record["SequenceNumber"] in chosen
            else record
            for record in response.get("Records", [])
        ]
        return {**response, "Records": records}

    return rewrite
