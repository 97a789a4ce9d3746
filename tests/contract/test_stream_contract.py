"""The log-source contract, run against the in-memory double, Kinesis, DynamoDB Streams and Kafka.

Each harness here is what the contract needs of one source and nothing more: make a stream, write
keyed records, read a record's value back, and name a mapping of it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from poller import Record
from poller.testing import MemoryPartition, MemorySource
from tests.contract.aws import Clients, sqs_destination
from tests.contract.stream_contract import Destination, StreamContract
from tests.kit import ACCOUNT, REGION, create_table_with_stream, moto_aws

pytestmark = pytest.mark.integration

#: Fast polling: tests wait for the worker to catch up, not for AWS's pace.
QUICK_POLLS = {"idle_poll_seconds": 0.05, "shard_discovery_seconds": 0.5}


def _mapping(uuid: str, source: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"UUID": uuid, **source, "StartingPosition": "TRIM_HORIZON", **fields}


# --- the in-memory double ------------------------------------------------------------------------


@dataclass
class MemoryStream:
    arn: str
    source: MemorySource

    async def put(self, records: Iterable[tuple[str, str]]) -> None:
        partitions = list(self.source.partitions.values())
        for key, value in records:
            partitions[zlib.crc32(key.encode()) % len(partitions)].put(value.encode(), key=key)

    def value(self, record: Record) -> str:
        return record.data.decode()

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        return _mapping(uuid, {"EventSourceArn": self.arn}, fields)

    def keep_pattern(self, kind: str) -> str:
        """A filter keeping records whose JSON value has this ``kind`` (Kinesis filters ``data``)."""
        return json.dumps({"data": {"kind": [kind]}})

    def sources(self, uuid: str) -> Mapping[str, Any]:
        return {uuid: self.source}


class MemoryHarness:
    batch_info_key = "KinesisBatchInfo"
    worker = QUICK_POLLS

    def __init__(self, endpoint: str, aws: Clients) -> None:
        self.aws = moto_aws(endpoint)
        self._clients = aws

    async def create(self, name: str) -> MemoryStream:
        arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"
        shards = [MemoryPartition(f"shardId-00000000000{n}") for n in range(2)]
        return MemoryStream(arn, MemorySource(shards, arn=arn, region=REGION))

    async def destination(self, name: str) -> Destination:
        return await sqs_destination(self._clients, name)


# --- Kinesis -------------------------------------------------------------------------------------


@dataclass
class KinesisStream:
    arn: str
    kinesis: Any

    async def put(self, records: Iterable[tuple[str, str]]) -> None:
        for key, value in records:  # one at a time: PutRecords does not promise order
            await self.kinesis.put_record(StreamARN=self.arn, Data=value.encode(), PartitionKey=key)

    def value(self, record: Record) -> str:
        return record.data.decode()

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        return _mapping(uuid, {"EventSourceArn": self.arn}, fields)

    def keep_pattern(self, kind: str) -> str:
        """A filter keeping records whose JSON value has this ``kind`` (Kinesis filters ``data``)."""
        return json.dumps({"data": {"kind": [kind]}})

    def sources(self, uuid: str) -> None:
        return None


class KinesisHarness(MemoryHarness):
    async def create(self, name: str) -> KinesisStream:  # type: ignore[override]
        kinesis = self._clients["kinesis"]
        await kinesis.create_stream(StreamName=name, ShardCount=2)
        with anyio.fail_after(10):
            while True:
                summary = await kinesis.describe_stream_summary(StreamName=name)
                if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                    break
                await anyio.sleep(0.05)
        return KinesisStream(summary["StreamDescriptionSummary"]["StreamARN"], kinesis)


# --- DynamoDB Streams ----------------------------------------------------------------------------


@dataclass
class DynamoDBStream:
    arn: str
    table: str
    dynamodb: Any
    written: int = 0

    async def put(self, records: Iterable[tuple[str, str]]) -> None:
        for key, value in records:  # each write a new item: an INSERT in the stream
            self.written += 1
            await self.dynamodb.put_item(
                TableName=self.table,
                Item={"pk": {"S": key}, "sk": {"N": str(self.written)}, "value": {"S": value}},
            )

    def value(self, record: Record) -> str:
        return str(json.loads(record.data)["NewImage"]["value"]["S"])

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        return _mapping(uuid, {"EventSourceArn": self.arn}, fields)

    def keep_pattern(self, kind: str) -> str:
        """A filter on the stream record: the item's ``value`` string starts with the kind."""
        prefix = json.dumps({"kind": kind})[:-1]
        return json.dumps({"dynamodb": {"NewImage": {"value": {"S": [{"prefix": prefix}]}}}})

    def sources(self, uuid: str) -> None:
        return None


class DynamoDBHarness(MemoryHarness):
    batch_info_key = "DDBStreamBatchInfo"

    async def create(self, name: str) -> DynamoDBStream:  # type: ignore[override]
        dynamodb = self._clients["dynamodb"]
        arn = await create_table_with_stream(dynamodb, name, "NEW_IMAGE")
        return DynamoDBStream(arn, name, dynamodb)


# --- Kafka ---------------------------------------------------------------------------------------


@dataclass
class KafkaStream:
    bootstrap: str
    topic: str

    async def put(self, records: Iterable[tuple[str, str]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for key, value in records:  # the default partitioner keeps a key on one partition
                await producer.send_and_wait(self.topic, value=value.encode(), key=key.encode())
        finally:
            await producer.stop()

    def value(self, record: Record) -> str:
        return record.data.decode()

    def mapping(self, uuid: str, **fields: Any) -> dict[str, Any]:
        source = {
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [self.bootstrap]}},
            "Topics": [self.topic],
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": uuid},
        }
        return _mapping(uuid, source, fields)

    def keep_pattern(self, kind: str) -> str:
        """A filter keeping records whose JSON value has this ``kind`` (Kafka filters ``value``)."""
        return json.dumps({"value": {"kind": [kind]}})

    def sources(self, uuid: str) -> None:
        return None


class KafkaHarness(MemoryHarness):
    batch_info_key = "KafkaBatchInfo"
    #: Short group timings: the broker holds a join for about half the session timeout.
    worker = {"kafka_session_timeout_seconds": 2, "kafka_revoke_grace_seconds": 5}

    def __init__(self, endpoint: str, aws: Clients, bootstrap: str) -> None:
        super().__init__(endpoint, aws)
        self._bootstrap = bootstrap

    async def create(self, name: str) -> KafkaStream:  # type: ignore[override]
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        return KafkaStream(self._bootstrap, name)


# --- the suite, once per source ------------------------------------------------------------------


class TestInMemory(StreamContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients) -> MemoryHarness:
        return MemoryHarness(moto_endpoint, clients)


class TestKinesis(StreamContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients) -> KinesisHarness:
        return KinesisHarness(moto_endpoint, clients)


class TestDynamoDBStreams(StreamContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients) -> DynamoDBHarness:
        return DynamoDBHarness(moto_endpoint, clients)


class TestKafka(StreamContract):
    @pytest.fixture
    def harness(self, moto_endpoint: str, clients: Clients, kafka_bootstrap: str) -> KafkaHarness:
        return KafkaHarness(moto_endpoint, clients, kafka_bootstrap)
