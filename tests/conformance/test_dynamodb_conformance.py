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
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from poller.errors import ConfigError
from poller.runtime.worker import Worker
from tests.conformance.dynamodb_helpers import (
    DynamoDBRecorder,
    DynamoDBSetup,
    dynamodb_aws,
    dynamodb_mapping,
    faulty_streams,
)
from tests.conformance.kinesis_helpers import (
    ACCOUNT,
    REGION,
    Seen,
    always_fail,
    drain_queue,
    fail_items,
    poller_config,
    run_until_idle,
)
from tests.faults import FaultyClient, created_at

pytestmark = pytest.mark.integration

#: DynamoDB on-failure records spell arrival times to the second.
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BATCH_INFO_KEYS = {
    "shardId",
    "startSequenceNumber",
    "endSequenceNumber",
    "approximateArrivalOfFirstRecord",
    "approximateArrivalOfLastRecord",
    "batchSize",
    "streamArn",
}


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[DynamoDBSetup]:
    async with dynamodb_aws(moto_endpoint) as setup:
        yield setup


def new_id() -> str:
    return str(uuid.uuid4())


async def table_with_records(aws: DynamoDBSetup, name: str, count: int) -> tuple[str, list[str]]:
    """A table whose stream holds ``count`` INSERT records; its stream ARN and their numbers."""
    arn = await aws.create_table(name)
    return arn, await aws.write_records(name, arn, count)


async def shard_of(aws: DynamoDBSetup, arn: str) -> str:
    description = (await aws.streams.describe_stream(StreamArn=arn))["StreamDescription"]
    return str(description["Shards"][0]["ShardId"])


def assert_ddb_batch_info(
    message: dict[str, Any], *, stream_arn: str, shard: str, first: str, last: str, size: int
) -> None:
    """The message's DDBStreamBatchInfo names exactly the records ``first``..``last``."""
    assert "KinesisBatchInfo" not in message
    info = message["DDBStreamBatchInfo"]
    assert set(info) == BATCH_INFO_KEYS
    assert info["shardId"] == shard
    assert info["streamArn"] == stream_arn
    assert info["startSequenceNumber"] == first
    assert info["endSequenceNumber"] == last
    assert info["batchSize"] == size
    assert ISO_SECONDS.match(info["approximateArrivalOfFirstRecord"])
    assert ISO_SECONDS.match(info["approximateArrivalOfLastRecord"])


# --- 1, 2: retries exhausted and what the on-failure record covers ---------------------------------


async def test_retry_attempts_exhausted_invokes_n_plus_one_times(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """SPEC 1: MaximumRetryAttempts=2 and a failing function: 3 invocations, then one record."""
    arn, numbers = await table_with_records(aws, unique_name, 3)
    queue = await aws.create_queue(unique_name)
    mapping_id = new_id()
    handler = DynamoDBRecorder(always_fail)
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(arn, uuid=mapping_id, on_failure=queue, MaximumRetryAttempts=2),
    )

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    assert handler.batches == [numbers] * 3
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    message = messages[0]
    assert set(message) == {
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "DDBStreamBatchInfo",
    }
    last = handler.invocations[-1]
    assert message["requestContext"] == {
        "requestId": last.aws_request_id,
        "functionArn": last.invoked_function_arn,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 3,
    }
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert message["version"] == "1.0"
    assert ISO_MILLIS.match(message["timestamp"])
    assert_ddb_batch_info(
        message,
        stream_arn=arn,
        shard=await shard_of(aws, arn),
        first=numbers[0],
        last=numbers[-1],
        size=3,
    )


async def test_batch_size_one_discard_names_one_record(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """SPEC 2: with BatchSize=1 the discarded record is the whole batch info: start == end."""
    arn, numbers = await table_with_records(aws, unique_name, 3)
    queue = await aws.create_queue(unique_name)
    poisoned = numbers[1]

    def respond(seen: Seen) -> Any:
        if poisoned in seen.sequence_numbers:
            raise ValueError("cannot process this record")
        return None

    mapping_id = new_id()
    handler = DynamoDBRecorder(respond)
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(
            arn, uuid=mapping_id, on_failure=queue, BatchSize=1, MaximumRetryAttempts=0
        ),
    )

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    assert handler.batches == [[n] for n in numbers]
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    info = messages[0]["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == poisoned
    assert info["approximateArrivalOfFirstRecord"] == info["approximateArrivalOfLastRecord"]
    assert_ddb_batch_info(
        messages[0],
        stream_arn=arn,
        shard=await shard_of(aws, arn),
        first=poisoned,
        last=poisoned,
        size=1,
    )
    assert messages[0]["requestContext"]["approximateInvokeCount"] == 1


async def test_discard_after_partial_failure_covers_only_unsettled_records(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """SPEC 2: records before the lowest failed one succeed; batch info covers the rest only."""
    arn, numbers = await table_with_records(aws, unique_name, 4)
    queue = await aws.create_queue(unique_name)
    mapping_id = new_id()
    handler = DynamoDBRecorder(fail_items(numbers[2]))
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(
            arn,
            uuid=mapping_id,
            on_failure=queue,
            BatchSize=4,
            MaximumRetryAttempts=0,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        ),
    )

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    assert handler.batches == [numbers]
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    assert_ddb_batch_info(
        messages[0],
        stream_arn=arn,
        shard=await shard_of(aws, arn),
        first=numbers[2],
        last=numbers[3],
        size=2,
    )


# --- 3, 4, 5: ReportBatchItemFailures ------------------------------------------------------------


async def test_partial_failure_retries_the_failed_record_alone(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """SPEC 3: BatchSize=3, 6 records, the 6th fails, MaximumRetryAttempts=3.

    Records 0-4 are delivered once; the 6th is retried alone until its retries are exhausted,
    and its on-failure record names it alone with approximateInvokeCount 4 and no function error.
    """
    arn, numbers = await table_with_records(aws, unique_name, 6)
    queue = await aws.create_queue(unique_name)
    failing = numbers[5]
    mapping_id = new_id()
    handler = DynamoDBRecorder(fail_items(failing))
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(
            arn,
            uuid=mapping_id,
            on_failure=queue,
            BatchSize=3,
            MaximumRetryAttempts=3,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        ),
    )

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    assert handler.batches == [numbers[:3], numbers[3:], [failing], [failing], [failing]]
    delivered = handler.delivered()
    assert all(delivered.count(n) == 1 for n in numbers[:5])
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    message = messages[0]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 4
    assert message["responseContext"]["functionError"] is None
    assert message["responseContext"]["statusCode"] == 200
    assert_ddb_batch_info(
        message,
        stream_arn=arn,
        shard=await shard_of(aws, arn),
        first=failing,
        last=failing,
        size=1,
    )


#: First answers that fail the whole batch; each gets the batch's sequence numbers.
WHOLE_BATCH_FAILURES: dict[str, Callable[[list[str]], Any]] = {
    "integer itemIdentifier": lambda n: {"batchItemFailures": [{"itemIdentifier": 123}]},
    "empty itemIdentifier": lambda n: {"batchItemFailures": [{"itemIdentifier": ""}]},
    "null itemIdentifier": lambda n: {"batchItemFailures": [{"itemIdentifier": None}]},
    "entry without itemIdentifier": lambda n: {"batchItemFailures": [{"foo": n[1]}]},
    "unknown sequence number": lambda n: {"batchItemFailures": [{"itemIdentifier": "999999"}]},
    "valid entry next to an invalid one": lambda n: {
        "batchItemFailures": [{"itemIdentifier": n[2]}, {"itemIdentifier": None}]
    },
}


@pytest.mark.parametrize("answer", [*WHOLE_BATCH_FAILURES, "unhandled exception"])
async def test_invalid_partial_response_retries_the_whole_batch(
    aws: DynamoDBSetup, unique_name: str, answer: str
) -> None:
    """SPEC 4: a malformed batchItemFailures answer, or an exception, fails the whole batch."""
    arn, numbers = await table_with_records(aws, unique_name, 3)

    def respond(seen: Seen) -> Any:
        if len(handler.invocations) > 1:
            return None  # the retry succeeds
        if answer == "unhandled exception":
            raise RuntimeError("boom")
        return WHOLE_BATCH_FAILURES[answer](seen.sequence_numbers)

    mapping_id = new_id()
    handler = DynamoDBRecorder(respond)
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(
            arn,
            uuid=mapping_id,
            BatchSize=3,
            MaximumRetryAttempts=1,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        ),
    )
    worker = Worker(config, handlers={mapping_id: handler})

    await run_until_idle(worker)

    assert handler.batches == [numbers, numbers]
    metrics = worker.status()[mapping_id]["metrics"]
    assert metrics["Errors"] == 1
    assert metrics["DroppedEventCount"] == 0


@pytest.mark.parametrize(
    "response",
    ["", [], None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}],
    ids=["empty string", "empty list", "null", "empty object", "no failures", "null failures"],
)
async def test_success_responses_are_not_retried(
    aws: DynamoDBSetup, unique_name: str, response: Any
) -> None:
    """SPEC 5: "", [], null, {}, and empty or null batchItemFailures all mean success."""
    arn, numbers = await table_with_records(aws, unique_name, 3)
    queue = await aws.create_queue(unique_name)
    mapping_id = new_id()
    handler = DynamoDBRecorder(lambda _seen: response)
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(
            arn,
            uuid=mapping_id,
            on_failure=queue,
            BatchSize=3,
            MaximumRetryAttempts=0,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        ),
    )
    worker = Worker(config, handlers={mapping_id: handler})

    await run_until_idle(worker)

    assert handler.batches == [numbers]
    assert await drain_queue(aws.sqs, queue) == []
    assert worker.status()[mapping_id]["metrics"]["Errors"] == 0


# --- 9: MaximumRecordAgeInSeconds ------------------------------------------------------------------


async def test_records_expired_before_ingestion_are_never_invoked(
    aws: DynamoDBSetup, unique_name: str
) -> None:
    """SPEC 9: records already too old go to the destination uninvoked, without responseContext.

    Their age is ApproximateCreationDateTime's, not the time they were read.
    """
    arn, numbers = await table_with_records(aws, unique_name, 3)
    queue = await aws.create_queue(unique_name)
    two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)

    def script(faults: FaultyClient) -> None:
        faults.rewrite("get_records", created_at(two_minutes_ago), times=None)

    mapping_id = new_id()
    handler = DynamoDBRecorder()
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(arn, uuid=mapping_id, on_failure=queue, MaximumRecordAgeInSeconds=60),
    )

    await run_until_idle(
        Worker(config, handlers={mapping_id: handler}, wrap_client=faulty_streams(script))
    )

    assert handler.invocations == []
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    message = messages[0]
    assert "responseContext" not in message
    context = message["requestContext"]
    assert context["condition"] == "RecordAgeExceeded"
    assert context["approximateInvokeCount"] == 1
    assert context["functionArn"].startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:")
    assert uuid.UUID(context["requestId"])
    assert_ddb_batch_info(
        message,
        stream_arn=arn,
        shard=await shard_of(aws, arn),
        first=numbers[0],
        last=numbers[-1],
        size=3,
    )
    created = f"{two_minutes_ago:%Y-%m-%dT%H:%M:%S}Z"
    assert message["DDBStreamBatchInfo"]["approximateArrivalOfFirstRecord"] == created
    assert message["DDBStreamBatchInfo"]["approximateArrivalOfLastRecord"] == created


async def test_only_the_expired_record_is_discarded(aws: DynamoDBSetup, unique_name: str) -> None:
    """SPEC 9 (with 11): of 6 records the one created too long ago is discarded, 5 delivered."""
    arn, numbers = await table_with_records(aws, unique_name, 6)
    queue = await aws.create_queue(unique_name)
    expired = numbers[0]
    two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)

    def script(faults: FaultyClient) -> None:
        faults.rewrite("get_records", created_at(two_minutes_ago, {expired}), times=None)

    mapping_id = new_id()
    handler = DynamoDBRecorder()
    config = poller_config(
        aws.endpoint,
        dynamodb_mapping(arn, uuid=mapping_id, on_failure=queue, MaximumRecordAgeInSeconds=60),
    )

    await run_until_idle(
        Worker(config, handlers={mapping_id: handler}, wrap_client=faulty_streams(script))
    )

    assert handler.delivered() == numbers[1:]
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    assert messages[0]["requestContext"]["condition"] == "RecordAgeExceeded"
    assert_ddb_batch_info(
        messages[0],
        stream_arn=arn,
        shard=await shard_of(aws, arn),
        first=expired,
        last=expired,
        size=1,
    )


# --- configuration ---------------------------------------------------------------------------------


def test_at_timestamp_is_refused_for_dynamodb_streams() -> None:
    """AWS refuses AT_TIMESTAMP for DynamoDB Streams; so does poller, naming what is allowed."""
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders/stream/2026-01-01T00:00:00.000"
    with pytest.raises(ConfigError) as refused:
        poller_config(
            "http://127.0.0.1:1",
            dynamodb_mapping(
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
    handler = DynamoDBRecorder()
    config = poller_config(aws.endpoint, dynamodb_mapping(arn, uuid=mapping_id, FunctionTimeout=30))

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
