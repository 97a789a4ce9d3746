"""Handlers that keep what they were handed: Lambda-style (events) and typed (batches)."""

from __future__ import annotations

import base64
import copy
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from poller.records import Record
from poller.testing import RecordingHandler

__all__ = [
    "AsyncLambdaRecorder",
    "LambdaRecorder",
    "Respond",
    "Seen",
    "TypedRecorder",
    "always_fail",
    "each_success_response",
    "fail_items",
    "records_of",
]

# --- Lambda-style recorders ----------------------------------------------------------------------


def records_of(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of a Lambda event, in order, whatever its source's shape."""
    if "Records" in event:  # Kinesis, DynamoDB Streams, SQS
        return list(event["Records"])
    if "records" in event:  # Kafka: lists by topic-partition
        return [record for records in event["records"].values() for record in records]
    if "rmqMessagesByQueue" in event:  # RabbitMQ: lists by queue
        return [m for messages in event["rmqMessagesByQueue"].values() for m in messages]
    return list(event["messages"])  # ActiveMQ


def _sequence_number(record: Mapping[str, Any]) -> str:
    """Where a stream record carries its sequence number (Kinesis, or else DynamoDB Streams)."""
    if "kinesis" in record:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


def _body(record: Mapping[str, Any]) -> str:
    """A queue message's body as text: an SQS ``body``, or an MQ message's base64 ``data``."""
    if "body" in record:
        return str(record["body"])
    return base64.b64decode(record["data"]).decode()


@dataclass(slots=True)
class Seen:
    """One invocation as a Lambda-style handler saw it (its event is a copy, taken on entry)."""

    event: dict[str, Any]
    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    remaining_ms: int
    #: ``time.monotonic()`` when the handler started and returned (or raised).
    started: float
    ended: float | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        """The event's records, in order."""
        return records_of(self.event)

    @property
    def sequence_numbers(self) -> list[str]:
        """The stream records' sequence numbers (the ``itemIdentifier`` of each)."""
        return [_sequence_number(record) for record in self.records]

    @property
    def message_ids(self) -> list[str]:
        """The SQS messages' ids (the ``itemIdentifier`` of each)."""
        return [record["messageId"] for record in self.records]

    @property
    def bodies(self) -> list[str]:
        """The queue messages' bodies."""
        return [_body(record) for record in self.records]

    @property
    def receive_counts(self) -> list[int]:
        """The SQS messages' ApproximateReceiveCount."""
        return [int(record["attributes"]["ApproximateReceiveCount"]) for record in self.records]


#: Decides what an invocation returns (or raises), given what the handler saw.
Respond = Callable[[Seen], Any]


class LambdaRecorder:
    """A ``handler(event, context)`` that records every invocation, then answers via ``respond``.

    It is a plain (synchronous) function as far as poller is concerned, so it runs in a worker
    thread as a Python Lambda handler would; ``work_seconds`` simulates a slow function. It reads
    every source's events; the views below are what a test of one source looks at.
    """

    def __init__(self, respond: Respond | None = None, *, work_seconds: float = 0.0) -> None:
        self._respond = respond
        self._work_seconds = work_seconds
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        seen = self._begin(event, context)
        try:
            if self._work_seconds:
                time.sleep(self._work_seconds)  # the function's own work, not a synchronisation
            return self._respond(seen) if self._respond is not None else None
        finally:
            seen.ended = time.monotonic()

    def _begin(self, event: dict[str, Any], context: Any) -> Seen:
        """Record the invocation as it starts."""
        seen = Seen(
            event=copy.deepcopy(event),
            function_name=context.function_name,
            aws_request_id=context.aws_request_id,
            invoked_function_arn=context.invoked_function_arn,
            remaining_ms=context.get_remaining_time_in_millis(),
            started=time.monotonic(),
        )
        with self._lock:
            self._seen.append(seen)
        return seen

    @property
    def invocations(self) -> list[Seen]:
        """Every invocation so far, in the order they started."""
        with self._lock:
            return list(self._seen)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event of every invocation so far, in order."""
        return [seen.event for seen in self.invocations]

    def finished(self) -> list[Seen]:
        """The invocations that returned (or raised)."""
        return [seen for seen in self.invocations if seen.ended is not None]

    def records(self) -> list[dict[str, Any]]:
        """Every record handed over, in invocation order, repeats included."""
        return [record for seen in self.invocations for record in seen.records]

    @property
    def batches(self) -> list[list[str]]:
        """The sequence numbers of each invocation's stream records."""
        return [seen.sequence_numbers for seen in self.invocations]

    def delivered(self) -> list[str]:
        """Every sequence number handed to the handler, in order, repeats included."""
        return [number for batch in self.batches for number in batch]

    def bodies(self) -> list[str]:
        """Every queue message body handed over, in invocation order, repeats included."""
        return [body for seen in self.invocations for body in seen.bodies]

    def deliveries(self, key: str, *, by_body: bool = False) -> list[tuple[Seen, int]]:
        """(invocation, ApproximateReceiveCount) of every time an SQS message was handed over:
        the one with message id ``key``, or with body ``key`` when ``by_body``."""
        return [
            (seen, count)
            for seen in self.invocations
            for handed, count in zip(
                seen.bodies if by_body else seen.message_ids, seen.receive_counts, strict=True
            )
            if handed == key
        ]

    def receive_counts(self, message_id: str) -> list[int]:
        """The ApproximateReceiveCount of each time the message was handed over."""
        return [count for _, count in self.deliveries(message_id)]

    def most_at_once(self) -> int:
        """The most invocations that ran at the same time."""
        edges: list[tuple[float, int]] = []
        for seen in self.finished():
            assert seen.ended is not None
            edges += [(seen.started, 1), (seen.ended, -1)]
        running = most = 0
        for _, step in sorted(edges):  # an end sorts before a start at the same instant
            running += step
            most = max(most, running)
        return most


class AsyncLambdaRecorder(LambdaRecorder):
    """The recorder as an ``async def handler(event, context)``: it runs on the worker's event
    loop, and ``respond`` may return an awaitable (a function that waits for the test)."""

    async def __call__(self, event: dict[str, Any], context: Any) -> Any:  # type: ignore[override]
        seen = self._begin(event, context)
        try:
            answer = self._respond(seen) if self._respond is not None else None
            if inspect.isawaitable(answer):
                answer = await answer
            return answer
        finally:
            seen.ended = time.monotonic()


#: Runs a test once for each answer that means success (SPEC 5, 18), whatever the source: a test
#: taking ``response`` has its function answer that.
each_success_response = pytest.mark.parametrize(
    "response",
    ["", [], None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}],
    ids=["empty string", "empty list", "null", "empty object", "no failures", "null failures"],
)


def always_fail(_seen: Seen) -> Any:
    """A function that raises on every invocation (an unhandled error)."""
    raise RuntimeError("the function always fails")


def fail_items(*sequence_numbers: str) -> Respond:
    """A function that reports the named records of its batch in ``batchItemFailures``."""
    failing = set(sequence_numbers)

    def respond(seen: Seen) -> Any:
        return {
            "batchItemFailures": [
                {"itemIdentifier": number} for number in seen.sequence_numbers if number in failing
            ]
        }

    return respond


class TypedRecorder(RecordingHandler):
    """poller.testing's typed recorder, failing record by record: ``fail(record, attempt)`` names
    the records of a batch that fail (the handler returns them), the others succeed."""

    def __init__(self, fail: Callable[[Record, int], bool] | None = None) -> None:
        super().__init__(
            None
            if fail is None
            else lambda batch: [r for r in batch if fail(r, batch.attempt)] or None
        )

    def seen(self, partition: str) -> list[str]:
        """The positions handed over from ``partition``, in order, repeats included."""
        return [r.position for b in self.batches if b.partition == partition for r in b]

    def count(self) -> int:
        """How many records were handed over, repeats included."""
        return len(self.records)

    def delivered(self) -> list[str]:
        """Every position handed over, in order, repeats included."""
        return [record.position for record in self.records]

    def partitions(self) -> list[str]:
        """Partitions in the order their batches came, each once."""
        return list(dict.fromkeys(batch.partition for batch in self.batches))
