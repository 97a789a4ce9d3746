"""DynamoDB Streams event source mappings behave as AWS was recorded to behave (SPEC.md).

The same behaviours the Kinesis suite checks, by SPEC item number (1-5 and 9), for a table's
stream: a whole worker runs against a real moto server over HTTP. Record ages that moto cannot
produce come from rewriting GetRecords responses through the worker's client seam
(``tests/faults.py``); everything else is moto's real answers.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime
from typing import Any

import pytest

from poller.errors import ConfigError
from poller.runtime.worker import Worker
from tests.conformance.dynamodb_helpers import DynamoDBSetup, dynamodb_aws
from tests.conformance.stream_suite import StreamConformance, StreamKit
from tests.faults import created_at
from tests.kit import (
    ACCOUNT,
    REGION,
    LambdaRecorder,
    faulty,
    new_id,
    poller_config,
    run_until_idle,
    stream_mapping,
)

pytestmark = pytest.mark.integration

#: DynamoDB on-failure records spell arrival times to the second.
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[DynamoDBSetup]:
    async with dynamodb_aws(moto_endpoint) as setup:
        yield setup


async def table_with_records(aws: DynamoDBSetup, name: str, count: int) -> tuple[str, list[str]]:
    """A table whose stream holds ``count`` INSERT records; its stream ARN and their numbers."""
    arn = await aws.create_table(name)
    return arn, await aws.write_records(name, arn, count)


async def shard_of(aws: DynamoDBSetup, arn: str) -> str:
    description = (await aws.streams.describe_stream(StreamArn=arn))["StreamDescription"]
    return str(description["Shards"][0]["ShardId"])


# --- 1-5, 9, 11: the suite every stream source passes (tests/conformance/stream_suite.py) ----------------


class TestDynamoDBStreams(StreamConformance):
    """SPEC 1-5, 9 and 11 on a table's stream."""

    @pytest.fixture
    def kit(self, aws: DynamoDBSetup) -> StreamKit:
        async def stream_with_records(name: str, count: int) -> tuple[str, list[str]]:
            return await table_with_records(aws, name, count)

        async def shard(arn: str) -> str:
            return await shard_of(aws, arn)

        def aged(moment: datetime, numbers: Collection[str] | None) -> Callable[[str, Any], Any]:
            stamp = created_at(moment, numbers)
            return faulty("dynamodbstreams", lambda f: f.rewrite("get_records", stamp, times=None))

        return StreamKit(
            aws=aws,
            batch_info_key="DDBStreamBatchInfo",
            arrival_pattern=ISO_SECONDS,
            stream_with_records=stream_with_records,
            shard_of=shard,
            aged=aged,
        )


# --- configuration ---------------------------------------------------------------------------------


def test_at_timestamp_is_refused_for_dynamodb_streams() -> None:
    """AWS refuses AT_TIMESTAMP for DynamoDB Streams; so does poller, naming what is allowed."""
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders/stream/2026-01-01T00:00:00.000"
    with pytest.raises(ConfigError) as refused:
        poller_config(
            "http://127.0.0.1:1",
            stream_mapping(
                arn,
                uuid=new_id(),
                StartingPosition="AT_TIMESTAMP",
                StartingPositionTimestamp=1_700_000_000,
            ),
        )

    assert any(
        "AT_TIMESTAMP" in problem and "TRIM_HORIZON, LATEST" in problem
        for problem in refused.value.problems
    )


# --- event and context shapes ----------------------------------------------------------------------


async def test_event_and_context_have_lambdas_shape(aws: DynamoDBSetup, unique_name: str) -> None:
    """SPEC "Event record shapes": the DynamoDB event and context a Python Lambda handler gets."""
    arn = await aws.create_table(unique_name)
    before = time.time()
    await aws.dynamodb.put_item(
        TableName=unique_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "one"}}
    )
    await aws.dynamodb.update_item(
        TableName=unique_name,
        Key={"pk": {"S": "a"}, "sk": {"N": "1"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "two"}},
    )
    await aws.dynamodb.delete_item(TableName=unique_name, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})
    numbers = await aws.sequence_numbers(arn)
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = poller_config(aws.endpoint, stream_mapping(arn, uuid=mapping_id, FunctionTimeout=30))

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    [seen] = handler.invocations
    assert set(seen.event) == {"Records"}
    records = seen.event["Records"]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    for record, number in zip(records, numbers, strict=True):
        assert set(record) == {
            "eventID",
            "eventName",
            "eventVersion",
            "eventSource",
            "awsRegion",
            "dynamodb",
            "eventSourceARN",
        }
        assert record["eventVersion"] == "1.1"
        assert record["eventSource"] == "aws:dynamodb"
        assert record["awsRegion"] == REGION
        assert record["eventSourceARN"] == arn
        assert isinstance(record["eventID"], str) and record["eventID"]
        block = record["dynamodb"]
        assert block["SequenceNumber"] == number
        assert block["Keys"] == {"pk": {"S": "a"}, "sk": {"N": "1"}}
        assert block["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(block["SizeBytes"], int)
        stamp = block["ApproximateCreationDateTime"]
        assert isinstance(stamp, float)
        assert before - 60 <= stamp <= time.time()
    assert "OldImage" not in records[0]["dynamodb"]
    assert records[0]["dynamodb"]["NewImage"]["v"] == {"S": "one"}
    assert records[1]["dynamodb"]["OldImage"]["v"] == {"S": "one"}
    assert records[1]["dynamodb"]["NewImage"]["v"] == {"S": "two"}
    assert "NewImage" not in records[2]["dynamodb"]
    assert records[2]["dynamodb"]["OldImage"]["v"] == {"S": "two"}

    assert seen.function_name
    assert seen.invoked_function_arn == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{seen.function_name}"
    )
    assert uuid.UUID(seen.aws_request_id)
    assert 0 < seen.remaining_ms <= 30_000
