"""Helpers for the DynamoDB Streams tests: tables with streams on a real moto server.

Tables, items and queues are created with plain aiobotocore clients (not poller's own), so the setup
does not depend on the code under test. A test writes items with :class:`DynamoDBSetup` and learns
the stream records' sequence numbers from :meth:`DynamoDBSetup.sequence_numbers` (read with a plain
GetRecords loop); configs, handlers, running, waiting and draining the on-failure queue come from
the shared kit (``tests/kit``): they do not depend on the source.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from tests.faults import VirtualShards
from tests.kit import MotoSetup, Sqs, create_table_with_stream, moto_clients

__all__ = [
    "DynamoDBSetup",
    "dynamodb_aws",
    "virtual_streams",
]


@dataclass(slots=True)
class DynamoDBSetup(MotoSetup):
    """DynamoDB, DynamoDB Streams and SQS clients on the moto endpoint."""

    dynamodb: Any
    streams: Any

    async def create_table(self, name: str, view_type: str = "NEW_AND_OLD_IMAGES") -> str:
        """A table keyed by ``pk`` (S) and ``sk`` (N) with a stream; return the stream ARN."""
        return await create_table_with_stream(self.dynamodb, name, view_type)

    async def put_items(self, table: str, count: int, *, first: int = 0) -> None:
        """Insert items ``item-<first>`` .. ``item-<first + count - 1>``, one by one, in order."""
        for n in range(first, first + count):
            await self.dynamodb.put_item(
                TableName=table,
                Item={"pk": {"S": f"item-{n}"}, "sk": {"N": str(n)}, "value": {"S": f"v{n}"}},
            )

    async def sequence_numbers(self, stream_arn: str) -> list[str]:
        """Every record's sequence number in the stream now, oldest first (a plain GetRecords loop)."""
        description = (await self.streams.describe_stream(StreamArn=stream_arn))[
            "StreamDescription"
        ]
        numbers: list[str] = []
        for shard in description["Shards"]:
            iterator = (
                await self.streams.get_shard_iterator(
                    StreamArn=stream_arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )
            )["ShardIterator"]
            with anyio.fail_after(10):
                while iterator:
                    page = await self.streams.get_records(ShardIterator=iterator, Limit=1000)
                    if not page["Records"]:
                        break
                    numbers.extend(r["dynamodb"]["SequenceNumber"] for r in page["Records"])
                    iterator = page.get("NextShardIterator")
        return numbers

    async def write_records(self, table: str, stream_arn: str, count: int) -> list[str]:
        """Insert ``count`` new items; return the sequence numbers of their stream records."""
        before = len(await self.sequence_numbers(stream_arn))
        await self.put_items(table, count, first=before)
        numbers = await self.sequence_numbers(stream_arn)
        return numbers[before:]


@contextlib.asynccontextmanager
async def dynamodb_aws(endpoint: str) -> AsyncIterator[DynamoDBSetup]:
    """DynamoDB, DynamoDB Streams and SQS clients on ``endpoint``, closed on exit."""
    async with moto_clients(endpoint, "dynamodb", "dynamodbstreams", "sqs") as clients:
        dynamodb, streams, sqs = clients
        yield DynamoDBSetup(
            endpoint=endpoint, sqs=Sqs(endpoint, sqs), dynamodb=dynamodb, streams=streams
        )


def virtual_streams(made: list[VirtualShards]) -> Callable[[str, Any], Any]:
    """A ``wrap_client`` that shows the worker moto's shard as a lineage (appended to ``made``)."""

    def wrap(service: str, client: Any) -> Any:
        if service != "dynamodbstreams":
            return client
        shards = VirtualShards(client)
        made.append(shards)
        return shards

    return wrap
