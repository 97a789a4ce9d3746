"""Helpers for the DynamoDB Streams tests: tables with streams on a real moto server, one worker each.

Tables, items and queues are created with plain aiobotocore clients (not poller's own), so the setup
does not depend on the code under test. A test writes items with :class:`DynamoDBSetup`, learns the
stream records' sequence numbers from :meth:`DynamoDBSetup.sequence_numbers` (read with a plain
GetRecords loop), builds a config with :func:`dynamodb_mapping` and ``poller_config``, and hands the
worker :class:`DynamoDBRecorder` handlers. Running, waiting and draining the on-failure queue are
the Kinesis helpers' (``tests/conformance/kinesis_helpers.py``): they do not depend on the source.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from aiobotocore.session import get_session

from tests.conformance.kinesis_helpers import REGION, LambdaRecorder, Queue
from tests.faults import FaultyClient, VirtualShards

__all__ = [
    "DynamoDBRecorder",
    "DynamoDBSetup",
    "dynamodb_aws",
    "dynamodb_mapping",
    "faulty_streams",
    "virtual_streams",
]

_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(slots=True)
class DynamoDBSetup:
    """DynamoDB, DynamoDB Streams and SQS clients on the moto endpoint."""

    endpoint: str
    dynamodb: Any
    streams: Any
    sqs: Any

    async def create_table(self, name: str, view_type: str = "NEW_AND_OLD_IMAGES") -> str:
        """A table keyed by ``pk`` (S) and ``sk`` (N) with a stream; return the stream ARN."""
        response = await self.dynamodb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
        )
        return str(response["TableDescription"]["LatestStreamArn"])

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

    async def create_queue(self, name: str) -> Queue:
        """Create a standard queue for on-failure records."""
        url = (await self.sqs.create_queue(QueueName=name[:80]))["QueueUrl"]
        attributes = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return Queue(url=str(url), arn=str(attributes["Attributes"]["QueueArn"]))


@contextlib.asynccontextmanager
async def dynamodb_aws(endpoint: str) -> AsyncIterator[DynamoDBSetup]:
    """DynamoDB, DynamoDB Streams and SQS clients on ``endpoint``, closed on exit."""
    session = get_session()
    create_client: Any = session.create_client
    options: dict[str, Any] = {"region_name": REGION, "endpoint_url": endpoint, **_CREDENTIALS}
    async with (
        create_client("dynamodb", **options) as dynamodb,
        create_client("dynamodbstreams", **options) as streams,
        create_client("sqs", **options) as sqs,
    ):
        yield DynamoDBSetup(endpoint=endpoint, dynamodb=dynamodb, streams=streams, sqs=sqs)


def dynamodb_mapping(
    stream_arn: str, *, uuid: str, on_failure: Queue | None = None, **fields: Any
) -> dict[str, Any]:
    """One DynamoDB stream mapping under AWS field names: TRIM_HORIZON and quick retries.

    ``fields`` are further mapping fields (``BatchSize=3`` ...) and override the defaults.
    """
    mapping: dict[str, Any] = {
        "UUID": uuid,
        "EventSourceArn": stream_arn,
        "StartingPosition": "TRIM_HORIZON",
        "RetryBackoffSeconds": 0.02,
        "RetryBackoffMaxSeconds": 0.05,
        "FunctionTimeout": 10,
    }
    if on_failure is not None:
        mapping["DestinationConfig"] = {"OnFailure": {"Destination": on_failure.arn}}
    mapping.update(fields)
    return mapping


def faulty_streams(setup: Callable[[FaultyClient], None]) -> Callable[[str, Any], Any]:
    """A ``wrap_client`` that puts the worker's DynamoDB Streams client in a FaultyClient."""

    def wrap(service: str, client: Any) -> Any:
        if service != "dynamodbstreams":
            return client
        faulty = FaultyClient(client)
        setup(faulty)
        return faulty

    return wrap


def virtual_streams(made: list[VirtualShards]) -> Callable[[str, Any], Any]:
    """A ``wrap_client`` that shows the worker moto's shard as a lineage (appended to ``made``)."""

    def wrap(service: str, client: Any) -> Any:
        if service != "dynamodbstreams":
            return client
        shards = VirtualShards(client)
        made.append(shards)
        return shards

    return wrap


class DynamoDBRecorder(LambdaRecorder):
    """The Kinesis recorder (same ``respond`` functions) for DynamoDB Streams events."""

    @staticmethod
    def sequence_number(record: dict[str, Any]) -> str:
        return str(record["dynamodb"]["SequenceNumber"])
