"""The AWS sources of ``latency.py`` on a moto server: Kinesis, DynamoDB Streams and SQS.

Each phase gets a fresh stream, table or queue (a long poll or an iterator of an earlier phase
never sees its records). Each source offers the resource, a hand-written aiobotocore consumer at
the same pace as poller's (the baseline), and the mapping poller runs.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from _common import REGION, aws_config
from _latency_kit import Probe, poller_running, task_running

from poller.aws import AwsClients
from poller.records import Record
from poller.sources.dynamodb_streams.records import DynamoDBRecord

#: Kinesis: a shard takes 5 GetRecords a second; a read behind the tip comes this soon again.
KINESIS_MIN_READ = 0.2
#: AWS's longest SQS long poll, which both sides use.
SQS_WAIT_SECONDS = 20


def aws_document(endpoint: str, mapping: dict[str, Any], **worker: Any) -> dict[str, Any]:
    """A poller config for one mapping on the moto server at ``endpoint``."""
    return {
        "aws": aws_config(endpoint).model_dump(exclude_none=True),
        "worker": {"shard_discovery_seconds": 3600, **worker},
        "mappings": [mapping],
    }


@dataclass(slots=True)
class Aws:
    """One client set for a source's whole run, and the call times of the raw loops' reads."""

    endpoint: str
    clients: AwsClients
    read_ms: list[float] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, endpoint: str) -> AsyncIterator[Aws]:
        clients = AwsClients(aws_config(endpoint))
        try:
            yield cls(endpoint, clients)
        finally:
            await clients.aclose()

    async def timed_call(self, call: Any, **arguments: Any) -> Any:
        """``call(**arguments)``, its duration added to ``read_ms``."""
        before = time.perf_counter()
        response = await call(**arguments)
        self.read_ms.append((time.perf_counter() - before) * 1000.0)
        return response


# --- Kinesis --------------------------------------------------------------------------------------


@dataclass(slots=True)
class KinesisStream:
    aws: Aws
    kinesis: Any
    arn: str
    shard: str
    from_start: bool
    chunk: int = 500

    async def put(self, payloads: Sequence[bytes]) -> None:
        if len(payloads) == 1:
            await self.kinesis.put_record(StreamARN=self.arn, Data=payloads[0], PartitionKey="k")
            return
        entries = [{"Data": data, "PartitionKey": "k"} for data in payloads]
        response = await self.kinesis.put_records(StreamARN=self.arn, Records=entries)
        if response.get("FailedRecordCount"):
            raise RuntimeError(f"PutRecords failed for {response['FailedRecordCount']} records")


async def kinesis_stream(aws: Aws, from_start: bool) -> KinesisStream:
    """A new one-shard stream, ACTIVE."""
    kinesis = await aws.clients.client("kinesis")
    name = f"latency-{uuid.uuid4().hex[:12]}"
    await kinesis.create_stream(StreamName=name, ShardCount=1)
    with anyio.fail_after(30):
        while True:
            summary = (await kinesis.describe_stream_summary(StreamName=name))[
                "StreamDescriptionSummary"
            ]
            if summary["StreamStatus"] == "ACTIVE":
                break
            await anyio.sleep(0.05)
    arn = str(summary["StreamARN"])
    [shard] = (await kinesis.list_shards(StreamARN=arn))["Shards"]
    return KinesisStream(aws, kinesis, arn, str(shard["ShardId"]), from_start)


def raw_kinesis(idle_interval: float) -> Any:
    """GetRecords in a loop, paced as poller paces a shard: ``idle_interval`` after a read that
    found the shard caught up, KINESIS_MIN_READ after the start of one that was behind."""

    @contextlib.asynccontextmanager
    async def consume(stream: KinesisStream, probe: Probe) -> AsyncIterator[None]:
        kinesis = stream.kinesis

        async def loop() -> None:
            iterator = (
                await kinesis.get_shard_iterator(
                    StreamARN=stream.arn,
                    ShardId=stream.shard,
                    ShardIteratorType="TRIM_HORIZON" if stream.from_start else "LATEST",
                )
            )["ShardIterator"]
            while True:
                started = anyio.current_time()
                page = await stream.aws.timed_call(
                    kinesis.get_records, StreamARN=stream.arn, ShardIterator=iterator, Limit=10000
                )
                for record in page["Records"]:
                    probe.note(record["Data"])
                iterator = page["NextShardIterator"]
                if int(page.get("MillisBehindLatest") or 0) <= 0:
                    await anyio.sleep(idle_interval)
                else:
                    await anyio.sleep(max(0.0, started + KINESIS_MIN_READ - anyio.current_time()))

        async with task_running(loop):
            yield

    return consume


def poller_kinesis(idle_poll: float | None, *, lambda_style: bool = False) -> Any:
    """poller on the stream; ``idle_poll`` is ``[worker] idle_poll_seconds`` (None: Lambda's 1 s);
    ``lambda_style`` hands AWS's Kinesis event to ``handler(event, context)``."""

    def consume(stream: KinesisStream, probe: Probe) -> Any:
        worker = {} if idle_poll is None else {"idle_poll_seconds": idle_poll}
        mapping = {
            "EventSourceArn": stream.arn,
            "StartingPosition": "TRIM_HORIZON" if stream.from_start else "LATEST",
            "BatchSize": 100,
        }
        return poller_running(
            aws_document(stream.aws.endpoint, mapping, **worker),
            probe,
            _data,
            _kinesis_event_payloads if lambda_style else None,
        )

    return consume


def _data(record: Record) -> bytes:
    return record.data


def _kinesis_event_payloads(event: Mapping[str, Any]) -> list[bytes | str]:
    return [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]


def _sqs_event_payloads(event: Mapping[str, Any]) -> list[bytes | str]:
    return [str(r["body"]) for r in event["Records"]]


# --- DynamoDB Streams -----------------------------------------------------------------------------

_ITEM_NUMBERS = itertools.count()


@dataclass(slots=True)
class DynamoTable:
    aws: Aws
    dynamodb: Any
    streams: Any
    table: str
    arn: str
    from_start: bool
    chunk: int = 25

    async def put(self, payloads: Sequence[bytes]) -> None:
        items = [
            {"pk": {"S": f"item-{next(_ITEM_NUMBERS)}"}, "p": {"S": data.decode()}}
            for data in payloads
        ]
        if len(items) == 1:
            await self.dynamodb.put_item(TableName=self.table, Item=items[0])
            return
        pending: dict[str, Any] = {self.table: [{"PutRequest": {"Item": item}} for item in items]}
        while pending:
            response = await self.dynamodb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}


async def dynamo_table(aws: Aws, from_start: bool) -> DynamoTable:
    """A new table with a NEW_IMAGE stream (moto: one shard)."""
    dynamodb = await aws.clients.client("dynamodb")
    name = f"latency-{uuid.uuid4().hex[:12]}"
    response = await dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    arn = str(response["TableDescription"]["LatestStreamArn"])
    streams = await aws.clients.client("dynamodbstreams")
    return DynamoTable(aws, dynamodb, streams, name, arn, from_start)


def raw_dynamodb(idle_interval: float) -> Any:
    """GetRecords on the stream's shard in a loop, ``idle_interval`` after each caught-up read."""

    @contextlib.asynccontextmanager
    async def consume(table: DynamoTable, probe: Probe) -> AsyncIterator[None]:
        streams = table.streams

        async def loop() -> None:
            description = (await streams.describe_stream(StreamArn=table.arn))["StreamDescription"]
            [shard] = description["Shards"]
            iterator = (
                await streams.get_shard_iterator(
                    StreamArn=table.arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON" if table.from_start else "LATEST",
                )
            )["ShardIterator"]
            while True:
                page = await table.aws.timed_call(
                    streams.get_records, ShardIterator=iterator, Limit=1000
                )
                for record in page["Records"]:
                    probe.note(record["dynamodb"]["NewImage"]["p"]["S"])
                iterator = page["NextShardIterator"]
                if not page["Records"]:
                    await anyio.sleep(idle_interval)

        async with task_running(loop):
            yield

    return consume


def poller_dynamodb() -> Any:
    """poller on the table's stream at its default pace."""

    def consume(table: DynamoTable, probe: Probe) -> Any:
        mapping = {
            "EventSourceArn": table.arn,
            "StartingPosition": "TRIM_HORIZON" if table.from_start else "LATEST",
            "BatchSize": 100,
        }
        return poller_running(aws_document(table.aws.endpoint, mapping), probe, _new_item_payload)

    return consume


def _new_item_payload(record: Record) -> str:
    assert isinstance(record, DynamoDBRecord)
    item = record.new_item or {}
    return str(item["p"])


# --- SQS ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SqsQueue:
    aws: Aws
    sqs: Any
    url: str
    arn: str
    from_start: bool
    chunk: int = 10

    async def put(self, payloads: Sequence[bytes]) -> None:
        if len(payloads) == 1:
            await self.sqs.send_message(QueueUrl=self.url, MessageBody=payloads[0].decode())
            return
        entries = [{"Id": str(i), "MessageBody": data.decode()} for i, data in enumerate(payloads)]
        response = await self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")


async def sqs_queue(aws: Aws, from_start: bool) -> SqsQueue:
    """A new standard queue."""
    sqs = await aws.clients.client("sqs")
    name = f"latency-{uuid.uuid4().hex[:12]}"
    url = str((await sqs.create_queue(QueueName=name))["QueueUrl"])
    return SqsQueue(aws, sqs, url, f"arn:aws:sqs:{REGION}:123456789012:{name}", from_start)


def raw_sqs(loops: int = 5) -> Any:
    """``loops`` loops, as many as poller's first pollers, each: ReceiveMessage (10, 20 s long
    poll, every attribute as poller asks), note, DeleteMessageBatch. With one loop a message
    sent during a delete would wait for it."""

    @contextlib.asynccontextmanager
    async def consume(queue: SqsQueue, probe: Probe) -> AsyncIterator[None]:
        sqs = queue.sqs

        async def loop() -> None:
            while True:
                response = await sqs.receive_message(
                    QueueUrl=queue.url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=SQS_WAIT_SECONDS,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                messages = response.get("Messages") or []
                for message in messages:
                    probe.note(message["Body"])
                if messages:
                    await sqs.delete_message_batch(
                        QueueUrl=queue.url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )

        async def loops_running() -> None:
            async with anyio.create_task_group() as group:
                for _ in range(loops):
                    group.start_soon(loop)

        async with task_running(loops_running):
            yield

    return consume


def poller_sqs(*, lambda_style: bool = False) -> Any:
    """poller on the queue with AWS's defaults (BatchSize 10, no batching window);
    ``lambda_style`` hands AWS's SQS event to ``handler(event, context)``."""

    def consume(queue: SqsQueue, probe: Probe) -> Any:
        mapping = {"EventSourceArn": queue.arn, "BatchSize": 10}
        return poller_running(
            aws_document(queue.aws.endpoint, mapping),
            probe,
            _data,
            _sqs_event_payloads if lambda_style else None,
        )

    return consume
