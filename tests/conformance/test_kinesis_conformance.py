"""Kinesis event source mappings behave as AWS was recorded to behave (SPEC.md).

Each test runs a whole worker against a real moto server over HTTP and asserts what SPEC's
"Behaviour recorded against real AWS" item says, by number. Record ages that moto cannot produce
(records that arrived a minute ago) come from rewriting GetRecords responses through the worker's
client seam (``tests/faults.py``); everything else is moto's real answers.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from poller.errors import ConfigError, SourceNotFoundError
from poller.runtime.worker import Worker
from poller.sources.kinesis.source import KinesisSource
from tests.conformance.kinesis_helpers import SHARD0, AwsSetup, arrived_at_for, aws_setup
from tests.conformance.stream_suite import (
    ISO_MILLIS,
    StreamConformance,
    StreamKit,
    assert_batch_info,
)
from tests.faults import FaultyClient, arrived_at
from tests.kit import (
    ACCOUNT,
    REGION,
    LambdaRecorder,
    always_fail,
    drain_queue,
    faulty,
    logged,
    new_id,
    poller_config,
    run_until_idle,
    stream_mapping,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[AwsSetup]:
    async with aws_setup(moto_endpoint) as setup:
        yield setup


def payloads(count: int) -> list[bytes]:
    return [f"record-{i}".encode() for i in range(count)]


# --- 1-5, 9, 11: the suite every stream source passes (tests/conformance/stream_suite.py) ----------------


class TestKinesisStreams(StreamConformance):
    """SPEC 1-5, 9 and 11 on a one-shard Kinesis stream."""

    @pytest.fixture
    def kit(self, aws: AwsSetup) -> StreamKit:
        async def stream_with_records(name: str, count: int) -> tuple[str, list[str]]:
            arn = await aws.create_stream(name)
            return arn, await aws.put_records(arn, payloads(count))

        async def shard_of(arn: str) -> str:
            return SHARD0

        def aged(moment: datetime, numbers: Collection[str] | None) -> Callable[[str, Any], Any]:
            stamp = arrived_at(moment) if numbers is None else arrived_at_for(list(numbers), moment)
            return faulty("kinesis", lambda f: f.rewrite("get_records", stamp, times=None))

        return StreamKit(
            aws=aws,
            batch_info_key="KinesisBatchInfo",
            arrival_pattern=ISO_MILLIS,
            stream_with_records=stream_with_records,
            shard_of=shard_of,
            aged=aged,
        )


# --- 6, 7, 8: ordering, starting position, several mappings --------------------------------------


async def test_batches_of_one_shard_never_overlap(aws: AwsSetup, unique_name: str) -> None:
    """SPEC 6: with a slow function, the second batch of a shard starts after the first ends."""
    arn = await aws.create_stream(unique_name)
    numbers = await aws.put_records(arn, payloads(4))
    mapping_id = new_id()
    handler = LambdaRecorder(work_seconds=0.5)
    config = poller_config(aws.endpoint, stream_mapping(arn, uuid=mapping_id, BatchSize=2))

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    first, second = handler.invocations
    assert [first.sequence_numbers, second.sequence_numbers] == [numbers[:2], numbers[2:]]
    assert first.ended is not None
    assert second.started >= first.ended


async def test_trim_horizon_delivers_records_written_before_the_mapping(
    aws: AwsSetup, unique_name: str, tmp_path: Path
) -> None:
    """SPEC 7: TRIM_HORIZON starts at the oldest record, written before the mapping existed."""
    arn = await aws.create_stream(unique_name)
    numbers = await aws.put_records(arn, payloads(5))
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = poller_config(
        aws.endpoint,
        stream_mapping(arn, uuid=mapping_id, StartingPosition="TRIM_HORIZON"),
        store_url=f"sqlite:///{tmp_path / 'state.db'}",
    )

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    assert handler.delivered() == numbers


async def test_latest_skips_records_written_before_the_mapping(
    aws: AwsSetup, unique_name: str
) -> None:
    """SPEC 7 (contrast): LATEST delivers only what is written after the mapping started."""
    arn = await aws.create_stream(unique_name)
    await aws.put_records(arn, payloads(3))
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = poller_config(
        aws.endpoint, stream_mapping(arn, uuid=mapping_id, StartingPosition="LATEST")
    )

    async with Worker(config, handlers={mapping_id: handler}) as worker:
        await wait_until(lambda: worker.idle, what="the LATEST reader to catch up")
        later = await aws.put_records(arn, [b"written later"])
        await wait_until(lambda: bool(handler.batches), what="the later record to be delivered")

    assert handler.delivered() == later


async def test_two_mappings_on_one_stream_each_get_every_record(
    aws: AwsSetup, unique_name: str
) -> None:
    """SPEC 8: two mappings with different functions on one stream both see every record."""
    arn = await aws.create_stream(unique_name)
    numbers = await aws.put_records(arn, payloads(5))
    first_id, second_id = new_id(), new_id()
    first, second = LambdaRecorder(), LambdaRecorder()
    config = poller_config(
        aws.endpoint,
        stream_mapping(arn, uuid=first_id, Handler="app.audit:record_order"),
        stream_mapping(arn, uuid=second_id, Handler="app.billing:charge_order"),
    )

    await run_until_idle(Worker(config, handlers={first_id: first, second_id: second}))

    assert first.delivered() == numbers
    assert second.delivered() == numbers
    assert first.invocations[0].function_name == "app-audit-record_order"
    assert second.invocations[0].function_name == "app-billing-charge_order"


def test_duplicate_function_and_stream_is_refused() -> None:
    """SPEC 8: a second mapping of the same function to the same stream is a conflict."""
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"
    with pytest.raises(ConfigError) as refused:
        poller_config(
            "http://127.0.0.1:1",
            stream_mapping(arn, uuid=new_id(), Handler="app.audit:record_order"),
            stream_mapping(arn, uuid=new_id(), Handler="app.audit:record_order"),
        )

    assert len(refused.value.problems) == 1
    problem = refused.value.problems[0]
    assert problem.startswith("mappings[1]:")
    assert "(EventSourceArn, Handler)" in problem
    assert "mappings[0]" in problem


# --- 10: MaximumRecordAgeInSeconds while retrying (9 and 11 run in the suite) ----------------------


async def test_records_expire_while_being_retried(aws: AwsSetup, unique_name: str) -> None:
    """SPEC 10: retries -1 and age 60 s: the records are retried until they expire.

    The records look 58 s old when first read, so they expire after about two seconds of
    retries at a fixed 0.3 s backoff; AWS counted 8 invocations with its own backoff. The discard
    counts every invocation the function saw and carries the last response.
    """
    arn = await aws.create_stream(unique_name)
    queue = await aws.create_queue(unique_name)
    numbers = await aws.put_records(arn, payloads(3))
    stamped: list[datetime] = []

    def nearly_expired(kwargs: Any, response: dict[str, Any]) -> dict[str, Any]:
        if response.get("Records") and not stamped:
            stamped.append(datetime.now(UTC) - timedelta(seconds=58))
        return arrived_at(stamped[0])(kwargs, response) if stamped else response

    def script(faults: FaultyClient) -> None:
        faults.rewrite("get_records", nearly_expired, times=None)

    mapping_id = new_id()
    handler = LambdaRecorder(always_fail)
    config = poller_config(
        aws.endpoint,
        stream_mapping(
            arn,
            uuid=mapping_id,
            on_failure=queue,
            MaximumRetryAttempts=-1,
            MaximumRecordAgeInSeconds=60,
            RetryBackoffSeconds=0.3,
            RetryBackoffMaxSeconds=0.3,
        ),
    )

    await run_until_idle(
        Worker(config, handlers={mapping_id: handler}, wrap_client=faulty("kinesis", script))
    )

    invocations = len(handler.invocations)
    assert invocations > 1
    assert handler.batches == [numbers] * invocations
    messages = await drain_queue(aws.sqs, queue)
    assert len(messages) == 1
    message = messages[0]
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == invocations
    assert message["requestContext"]["requestId"] == handler.invocations[-1].aws_request_id
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert_batch_info(
        message["KinesisBatchInfo"],
        shard=SHARD0,
        stream_arn=arn,
        first=numbers[0],
        last=numbers[-1],
        size=3,
        arrivals=ISO_MILLIS,
    )


# --- 22: missing stream ----------------------------------------------------------------------------


async def test_missing_stream_is_reported_as_stream_not_found(
    aws: AwsSetup, unique_name: str
) -> None:
    """SPEC 22: listing a stream that does not exist fails with "Stream not found: <arn>"."""
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{unique_name}-missing"
    source = KinesisSource(arn, aws.kinesis, REGION)

    with pytest.raises(SourceNotFoundError) as missing:
        await source.list_partitions()

    assert str(missing.value) == f"Stream not found: {arn}"


async def test_worker_logs_missing_stream_and_keeps_retrying(
    aws: AwsSetup, unique_name: str
) -> None:
    """SPEC 22: a running worker logs "Stream not found: <arn>", keeps running and retries."""
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{unique_name}-missing"
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = poller_config(aws.endpoint, stream_mapping(arn, uuid=mapping_id))

    with capture_logs() as logs:
        async with Worker(config, handlers={mapping_id: handler}) as worker:
            await wait_until(
                lambda: worker.status()[mapping_id]["metrics"]["PollingErrorCount"] >= 2,
                within=10,
                what="two failed listings of the missing stream",
            )
            status = worker.status()[mapping_id]

    found = logged(logs, error=f"Stream not found: {arn}")
    assert all(e["mapping"] == mapping_id for e in found)
    # One error line for the cause; the retries after it go to debug (one line per cause, with
    # a reminder at most once a minute), so the log is not flooded while the cause lasts.
    shown = [e for e in found if e["log_level"] != "debug"]
    assert [e["log_level"] for e in shown] == ["error"], shown
    assert status["metrics"]["PollingErrorCount"] >= 2
    assert handler.invocations == []


# --- event and context shapes ----------------------------------------------------------------------


async def test_event_and_context_have_lambdas_shape(aws: AwsSetup, unique_name: str) -> None:
    """SPEC "Event record shapes": the Kinesis event and context a Python Lambda handler gets."""
    arn = await aws.create_stream(unique_name)
    data = [b'{"order": 1}', b"\x00\xffbinary"]
    numbers = await aws.put_records(arn, data, key="customer-7")
    before = time.time()
    mapping_id = new_id()
    handler = LambdaRecorder()
    config = poller_config(aws.endpoint, stream_mapping(arn, uuid=mapping_id, FunctionTimeout=30))

    await run_until_idle(Worker(config, handlers={mapping_id: handler}))

    [seen] = handler.invocations
    assert set(seen.event) == {"Records"}
    records = seen.event["Records"]
    assert len(records) == 2
    for record, number, payload in zip(records, numbers, data, strict=True):
        assert set(record) == {
            "kinesis",
            "eventSource",
            "eventVersion",
            "eventID",
            "eventName",
            "invokeIdentityArn",
            "awsRegion",
            "eventSourceARN",
        }
        assert record["eventSource"] == "aws:kinesis"
        assert record["eventVersion"] == "1.0"
        assert record["eventName"] == "aws:kinesis:record"
        assert record["eventID"] == f"{SHARD0}:{number}"
        assert record["awsRegion"] == REGION
        assert record["eventSourceARN"] == arn
        assert record["invokeIdentityArn"].startswith(f"arn:aws:iam::{ACCOUNT}:")
        kinesis = record["kinesis"]
        assert set(kinesis) == {
            "kinesisSchemaVersion",
            "partitionKey",
            "sequenceNumber",
            "data",
            "approximateArrivalTimestamp",
        }
        assert kinesis["kinesisSchemaVersion"] == "1.0"
        assert kinesis["partitionKey"] == "customer-7"
        assert kinesis["sequenceNumber"] == number
        assert base64.b64decode(kinesis["data"], validate=True) == payload
        stamp = kinesis["approximateArrivalTimestamp"]
        assert isinstance(stamp, float)
        assert before - 60 <= stamp <= time.time()

    assert seen.function_name
    assert seen.invoked_function_arn == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{seen.function_name}"
    )
    assert uuid.UUID(seen.aws_request_id)
    assert 0 < seen.remaining_ms <= 30_000
