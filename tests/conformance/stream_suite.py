"""The AWS-recorded behaviours every stream source shows (SPEC 1-5, 9, 11): one suite, a subclass each.

:class:`StreamConformance` holds the tests; a source's test module subclasses it and provides a
``kit`` fixture (a :class:`StreamKit`): how to make a stream holding records and what its
on-failure batch info looks like. Mappings, the Lambda-style recorder (it reads every stream
source's events) and the runs come from the shared kit (``tests/kit``). The tests then run a
whole worker against the real moto server, identically for every source, so a behaviour cannot
drift between Kinesis and DynamoDB Streams.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from poller.runtime.worker import Worker
from tests.kit import (
    ACCOUNT,
    REGION,
    LambdaRecorder,
    MotoSetup,
    Seen,
    always_fail,
    drain_queue,
    each_success_response,
    fail_items,
    new_id,
    poller_config,
    run_until_idle,
    stream_mapping,
)

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


@dataclass(frozen=True)
class StreamKit:
    """What the suite needs of one stream source."""

    #: The source's clients on moto, with SQS for on-failure queues.
    aws: MotoSetup
    #: ``KinesisBatchInfo`` or ``DDBStreamBatchInfo``.
    batch_info_key: str
    #: How the source's on-failure records spell arrival times.
    arrival_pattern: re.Pattern[str]
    #: (name, count) -> the stream's ARN and the sequence numbers of ``count`` new records.
    stream_with_records: Callable[[str, int], Awaitable[tuple[str, list[str]]]]
    #: The id of the stream's (only) shard.
    shard_of: Callable[[str], Awaitable[str]]
    #: (moment, sequence numbers or None for all) -> a ``wrap_client`` under which the records
    #: read look as if they reached the stream at ``moment`` (moto cannot make old records).
    aged: Callable[[datetime, Collection[str] | None], Callable[[str, Any], Any]]

    async def run(
        self,
        *mappings: dict[str, Any],
        handler: Any,
        wrap_client: Callable[[str, Any], Any] | None = None,
    ) -> Worker:
        """Run a worker for ``mappings`` (all handled by ``handler``) until it is idle."""
        config = poller_config(self.aws.endpoint, *mappings)
        worker = Worker(
            config,
            handlers={m["UUID"]: handler for m in mappings},
            wrap_client=wrap_client,
        )
        await run_until_idle(worker)
        return worker

    async def assert_batch_info(
        self, message: dict[str, Any], *, stream_arn: str, first: str, last: str, size: int
    ) -> None:
        """The message's batch info names exactly the records ``first``..``last``."""
        assert_batch_info(
            message[self.batch_info_key],
            shard=await self.shard_of(stream_arn),
            stream_arn=stream_arn,
            first=first,
            last=last,
            size=size,
            arrivals=self.arrival_pattern,
        )


def assert_batch_info(
    info: dict[str, Any],
    *,
    shard: str,
    stream_arn: str,
    first: str,
    last: str,
    size: int,
    arrivals: re.Pattern[str],
) -> None:
    """An on-failure record's batch info names exactly the records ``first``..``last`` of
    ``shard``, with arrival times spelled as the source spells them."""
    assert set(info) == BATCH_INFO_KEYS
    assert info["shardId"] == shard
    assert info["streamArn"] == stream_arn
    assert info["startSequenceNumber"] == first
    assert info["endSequenceNumber"] == last
    assert info["batchSize"] == size
    assert arrivals.match(info["approximateArrivalOfFirstRecord"])
    assert arrivals.match(info["approximateArrivalOfLastRecord"])


class StreamConformance:
    """SPEC 1-5, 9 and 11 for a stream source; subclasses provide the ``kit`` fixture."""

    # --- 1, 2: retries exhausted and what the on-failure record covers -------------------------

    async def test_retry_attempts_exhausted_invokes_n_plus_one_times(
        self, kit: StreamKit, unique_name: str
    ) -> None:
        """SPEC 1: MaximumRetryAttempts=2 and a failing function: 3 invocations, then one record."""
        arn, numbers = await kit.stream_with_records(unique_name, 3)
        queue = await kit.aws.create_queue(unique_name)
        handler = LambdaRecorder(always_fail)
        mapping = stream_mapping(arn, uuid=new_id(), on_failure=queue, MaximumRetryAttempts=2)

        await kit.run(mapping, handler=handler)

        assert handler.batches == [numbers] * 3
        messages = await drain_queue(kit.aws.sqs, queue)
        assert len(messages) == 1
        message = messages[0]
        assert set(message) == {
            "requestContext",
            "responseContext",
            "version",
            "timestamp",
            kit.batch_info_key,
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
        await kit.assert_batch_info(
            message, stream_arn=arn, first=numbers[0], last=numbers[-1], size=3
        )

    async def test_batch_size_one_discard_names_one_record(
        self, kit: StreamKit, unique_name: str
    ) -> None:
        """SPEC 2: with BatchSize=1 the discarded record is the whole batch info: start == end."""
        arn, numbers = await kit.stream_with_records(unique_name, 3)
        queue = await kit.aws.create_queue(unique_name)
        poisoned = numbers[1]

        def respond(seen: Seen) -> Any:
            if poisoned in seen.sequence_numbers:
                raise ValueError("cannot process this record")
            return None

        handler = LambdaRecorder(respond)
        mapping = stream_mapping(
            arn, uuid=new_id(), on_failure=queue, BatchSize=1, MaximumRetryAttempts=0
        )

        await kit.run(mapping, handler=handler)

        assert handler.batches == [[n] for n in numbers]
        messages = await drain_queue(kit.aws.sqs, queue)
        assert len(messages) == 1
        info = messages[0][kit.batch_info_key]
        assert info["startSequenceNumber"] == info["endSequenceNumber"] == poisoned
        assert info["approximateArrivalOfFirstRecord"] == info["approximateArrivalOfLastRecord"]
        await kit.assert_batch_info(
            messages[0], stream_arn=arn, first=poisoned, last=poisoned, size=1
        )
        assert messages[0]["requestContext"]["approximateInvokeCount"] == 1

    async def test_discard_after_partial_failure_covers_only_unsettled_records(
        self, kit: StreamKit, unique_name: str
    ) -> None:
        """SPEC 2: records before the lowest failed one succeed; batch info covers the rest only."""
        arn, numbers = await kit.stream_with_records(unique_name, 4)
        queue = await kit.aws.create_queue(unique_name)
        handler = LambdaRecorder(fail_items(numbers[2]))
        mapping = stream_mapping(
            arn,
            uuid=new_id(),
            on_failure=queue,
            BatchSize=4,
            MaximumRetryAttempts=0,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )

        await kit.run(mapping, handler=handler)

        assert handler.batches == [numbers]
        messages = await drain_queue(kit.aws.sqs, queue)
        assert len(messages) == 1
        await kit.assert_batch_info(
            messages[0], stream_arn=arn, first=numbers[2], last=numbers[3], size=2
        )

    # --- 3, 4, 5: ReportBatchItemFailures ------------------------------------------------------

    async def test_partial_failure_retries_the_failed_record_alone(
        self, kit: StreamKit, unique_name: str
    ) -> None:
        """SPEC 3: BatchSize=3, 6 records, the 6th fails, MaximumRetryAttempts=3.

        Records 0-4 are delivered once; the 6th is retried alone until its retries are exhausted,
        and its on-failure record names it alone with approximateInvokeCount 4 and no function
        error.
        """
        arn, numbers = await kit.stream_with_records(unique_name, 6)
        queue = await kit.aws.create_queue(unique_name)
        failing = numbers[5]
        handler = LambdaRecorder(fail_items(failing))
        mapping = stream_mapping(
            arn,
            uuid=new_id(),
            on_failure=queue,
            BatchSize=3,
            MaximumRetryAttempts=3,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )

        await kit.run(mapping, handler=handler)

        assert handler.batches == [numbers[:3], numbers[3:], [failing], [failing], [failing]]
        delivered = handler.delivered()
        assert all(delivered.count(n) == 1 for n in numbers[:5])
        messages = await drain_queue(kit.aws.sqs, queue)
        assert len(messages) == 1
        message = messages[0]
        assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert message["requestContext"]["approximateInvokeCount"] == 4
        assert message["responseContext"]["functionError"] is None
        assert message["responseContext"]["statusCode"] == 200
        await kit.assert_batch_info(message, stream_arn=arn, first=failing, last=failing, size=1)

    @pytest.mark.parametrize("answer", [*WHOLE_BATCH_FAILURES, "unhandled exception"])
    async def test_invalid_partial_response_retries_the_whole_batch(
        self, kit: StreamKit, unique_name: str, answer: str
    ) -> None:
        """SPEC 4: a malformed batchItemFailures answer, or an exception, fails the whole batch."""
        arn, numbers = await kit.stream_with_records(unique_name, 3)

        def respond(seen: Seen) -> Any:
            if len(handler.invocations) > 1:
                return None  # the retry succeeds
            if answer == "unhandled exception":
                raise RuntimeError("boom")
            return WHOLE_BATCH_FAILURES[answer](seen.sequence_numbers)

        mapping_id = new_id()
        handler = LambdaRecorder(respond)
        mapping = stream_mapping(
            arn,
            uuid=mapping_id,
            BatchSize=3,
            MaximumRetryAttempts=1,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )

        worker = await kit.run(mapping, handler=handler)

        assert handler.batches == [numbers, numbers]
        metrics = worker.status()[mapping_id]["metrics"]
        assert metrics["Errors"] == 1
        assert metrics["DroppedEventCount"] == 0

    @each_success_response
    async def test_success_responses_are_not_retried(
        self, kit: StreamKit, unique_name: str, response: Any
    ) -> None:
        """SPEC 5: "", [], null, {}, and empty or null batchItemFailures all mean success."""
        arn, numbers = await kit.stream_with_records(unique_name, 3)
        queue = await kit.aws.create_queue(unique_name)
        mapping_id = new_id()
        handler = LambdaRecorder(lambda _seen: response)
        mapping = stream_mapping(
            arn,
            uuid=mapping_id,
            on_failure=queue,
            BatchSize=3,
            MaximumRetryAttempts=0,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )

        worker = await kit.run(mapping, handler=handler)

        assert handler.batches == [numbers]
        assert await drain_queue(kit.aws.sqs, queue) == []
        assert worker.status()[mapping_id]["metrics"]["Errors"] == 0

    # --- 9, 11: MaximumRecordAgeInSeconds ------------------------------------------------------

    async def test_records_expired_before_ingestion_are_never_invoked(
        self, kit: StreamKit, unique_name: str
    ) -> None:
        """SPEC 9: records already too old go to the destination uninvoked, without
        responseContext; their age is the source's arrival (or creation) time."""
        arn, numbers = await kit.stream_with_records(unique_name, 3)
        queue = await kit.aws.create_queue(unique_name)
        two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
        handler = LambdaRecorder()
        mapping = stream_mapping(arn, uuid=new_id(), on_failure=queue, MaximumRecordAgeInSeconds=60)

        await kit.run(mapping, handler=handler, wrap_client=kit.aged(two_minutes_ago, None))

        assert handler.invocations == []
        messages = await drain_queue(kit.aws.sqs, queue)
        assert len(messages) == 1
        message = messages[0]
        assert "responseContext" not in message
        context = message["requestContext"]
        assert context["condition"] == "RecordAgeExceeded"
        assert context["approximateInvokeCount"] == 1
        assert context["functionArn"].startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:")
        assert uuid.UUID(context["requestId"])
        await kit.assert_batch_info(
            message, stream_arn=arn, first=numbers[0], last=numbers[-1], size=3
        )
        arrival = f"{two_minutes_ago:%Y-%m-%dT%H:%M:%S}"
        info = message[kit.batch_info_key]
        assert info["approximateArrivalOfFirstRecord"].startswith(arrival)
        assert info["approximateArrivalOfLastRecord"].startswith(arrival)

    async def test_only_the_expired_record_is_discarded(
        self, kit: StreamKit, unique_name: str
    ) -> None:
        """SPEC 11: of 6 records the one that is too old goes to the destination; 5 are
        delivered."""
        arn, numbers = await kit.stream_with_records(unique_name, 6)
        queue = await kit.aws.create_queue(unique_name)
        expired = numbers[0]
        two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
        handler = LambdaRecorder()
        mapping = stream_mapping(arn, uuid=new_id(), on_failure=queue, MaximumRecordAgeInSeconds=60)

        await kit.run(mapping, handler=handler, wrap_client=kit.aged(two_minutes_ago, {expired}))

        assert handler.delivered() == numbers[1:]
        messages = await drain_queue(kit.aws.sqs, queue)
        assert len(messages) == 1
        assert messages[0]["requestContext"]["condition"] == "RecordAgeExceeded"
        await kit.assert_batch_info(
            messages[0], stream_arn=arn, first=expired, last=expired, size=1
        )
