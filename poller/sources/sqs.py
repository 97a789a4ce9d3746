"""Amazon SQS (standard and FIFO queues) as a queue source, and Lambda's SQS event shape.

One :class:`SqsSource` serves one queue, named by its ARN. The queue URL is looked up once
(GetQueueUrl with the ARN's name and owner account, so a queue in another account works) and kept;
a failed lookup is not kept, so the next call looks again. Every AWS call goes through the client
the source is handed (see ``poller.sources.base``); the caller owns and closes that client.

What the source does for the engine:

- ``receive``: one ReceiveMessage (long polling), every system and user attribute requested, the
  messages as :class:`~poller.records.SqsRecord`. On a FIFO queue each receive carries a fresh
  ``ReceiveRequestAttemptId``, so a receive that the client retries after a network error gets
  the same messages back instead of hiding a second set until their visibility timeout ends.
- ``delete`` / ``change_visibility``: the batch APIs, ten entries per request, several requests at
  once. Entries the queue reports as failed are retried a few times with small jittered waits,
  unless SQS says the caller is at fault (an expired receipt handle will not get better); a whole
  request that fails (network, server error) is retried the same way. What still fails is logged
  with its message ids and error codes and returned: settling never raises, the engine decides.
- throttling (``RequestThrottled``, ``OverLimit``, ``ThrottlingException`` ...) is waited out
  with jittered backoff, forever, as every source does (``call_with_backoff``).
- a missing queue raises :class:`~poller.errors.SourceNotFoundError` ("Queue not found: <arn>"),
  other refusals (access denied, KMS) a :class:`~poller.errors.SourceError` naming the queue and
  the cause; the engine backs off, logs and tries again.
"""

from __future__ import annotations

import binascii
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Final

import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from poller.config import ARN
from poller.engine.protocols import QueueInfo
from poller.errors import SourceError, SourceNotFoundError
from poller.records import Record, SqsRecord
from poller.sources.base import Backoff, ClientCalls, call_with_backoff, error_code

if TYPE_CHECKING:
    from poller.engine.protocols import QueueSource

__all__ = ["SqsOptions", "SqsSource"]

_log = structlog.get_logger(__name__)

#: SQS limits: messages per receive and entries per batch request, long-poll wait, visibility.
_MAX_RECEIVE: Final = 10
_MAX_ENTRIES: Final = 10
_MAX_WAIT_SECONDS: Final = 20
_MAX_VISIBILITY_SECONDS: Final = 43_200

#: The system attributes Lambda passes on in ``attributes``, in the order it writes them; the
#: FIFO ones and the optional ones appear only when SQS returned them.
_EVENT_ATTRIBUTES: Final = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
_EVENT_ATTRIBUTE_SET: Final = frozenset(_EVENT_ATTRIBUTES)

#: Error codes (or their last dotted part: ``AWS.SimpleQueueService.NonExistentQueue``) by which
#: SQS says the queue does not exist. With the JSON protocol botocore puts the query-compatible
#: code in ``Code`` and the modeled one in ``QueryErrorCode``; both are checked.
_NOT_FOUND_CODES: Final = frozenset({"NonExistentQueue", "QueueDoesNotExist"})
_EMPTY: Final[Mapping[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class SqsOptions:
    """How an :class:`SqsSource` talks to its queue; the defaults suit AWS and moto alike."""

    #: Waits between throttled attempts (retried forever).
    backoff: Backoff = field(default_factory=Backoff)
    #: Attempts per delete / change-visibility request before its failing entries are returned.
    settle_attempts: int = 3
    #: Jittered waits between those attempts.
    settle_backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.05, maximum=1.0))
    #: Batch requests (ten entries each) one delete or change-visibility sends at the same time.
    settle_concurrency: int = 8

    def __post_init__(self) -> None:
        problems = []
        if self.settle_attempts < 1:
            problems.append(f"settle_attempts {self.settle_attempts!r} (allowed >= 1)")
        if self.settle_concurrency < 1:
            problems.append(f"settle_concurrency {self.settle_concurrency!r} (allowed >= 1)")
        if problems:
            raise ValueError("invalid SQS options: " + "; ".join(problems))


class SqsSource:
    """An SQS queue, standard or FIFO (implements ``QueueSource``).

    Records are :class:`~poller.records.SqsRecord`: ``partition`` is the FIFO message group id
    ("" on a standard queue), ``position`` the message id, ``ordinal`` a counter of this source
    that grows in receive order (so it also grows within every message group, redeliveries
    included), ``key`` the group id or else the message id, ``data`` the body as UTF-8,
    ``arrival`` the SentTimestamp in epoch seconds, ``size`` the bytes the message adds to a
    Lambda event, and ``native`` the message exactly as ReceiveMessage returned it.
    """

    kind: str = "sqs"
    max_receive: int = _MAX_RECEIVE

    def __init__(
        self,
        queue_arn: str,
        client: ClientCalls,
        region: str,
        options: SqsOptions | None = None,
    ) -> None:
        parsed = ARN.parse(queue_arn)
        if parsed.service != "sqs" or "/" in parsed.resource or ":" in parsed.resource:
            raise ValueError(f"{queue_arn!r} is not an SQS queue ARN")
        self.queue_arn = queue_arn
        self.queue_name = parsed.resource
        self.region = region
        self.options = options or SqsOptions()
        self._account = parsed.account
        self._calls = client
        self._url: str | None = None
        self._url_lock = anyio.Lock()
        #: Until describe() says otherwise, the name tells (SQS requires ".fifo" on FIFO queues).
        self._fifo = parsed.resource.endswith(".fifo")
        self._received = 0
        self._envelope: int | None = None
        self._log = _log.bind(queue=queue_arn)

    @property
    def queue_url(self) -> str | None:
        """The queue URL once it was looked up, else None."""
        return self._url

    @property
    def fifo(self) -> bool:
        """Whether the queue is FIFO (from its attributes once described, else from its name)."""
        return self._fifo

    # --- queue facts -----------------------------------------------------------------------------

    async def describe(self) -> QueueInfo:
        """Look the queue up: FIFO or not, visibility timeout, redrive policy.

        Raises SourceNotFoundError when the queue does not exist, SourceError when it cannot be
        read (access denied, network); both name the queue.
        """
        url = await self._queue_url()
        response = await self._request(
            "GetQueueAttributes",
            self._calls.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=["VisibilityTimeout", "RedrivePolicy", "FifoQueue"],
        )
        attributes: Mapping[str, str] = response.get("Attributes") or _EMPTY
        fifo_flag = attributes.get("FifoQueue")
        fifo = fifo_flag.lower() == "true" if fifo_flag is not None else self._fifo
        self._fifo = fifo
        max_receive_count: int | None = None
        dead_letter_target: str | None = None
        redrive = attributes.get("RedrivePolicy")
        if redrive:
            try:
                policy = json.loads(redrive)
                count = policy.get("maxReceiveCount")
                max_receive_count = int(count) if count is not None else None
                target = policy.get("deadLetterTargetArn")
                dead_letter_target = str(target) if target else None
            except (ValueError, TypeError, AttributeError):
                self._log.warning("unreadable redrive policy ignored", redrive_policy=redrive)
        return QueueInfo(
            fifo=fifo,
            visibility_timeout=float(attributes.get("VisibilityTimeout", "30")),
            max_receive_count=max_receive_count,
            dead_letter_target=dead_letter_target,
        )

    async def _queue_url(self) -> str:
        if self._url is not None:
            return self._url
        async with self._url_lock:
            if self._url is None:
                request: dict[str, Any] = {"QueueName": self.queue_name}
                if self._account:
                    request["QueueOwnerAWSAccountId"] = self._account
                response = await self._request("GetQueueUrl", self._calls.get_queue_url, **request)
                self._url = str(response["QueueUrl"])
            return self._url

    # --- receiving -------------------------------------------------------------------------------

    async def receive(self, max_messages: int, wait_seconds: float) -> list[SqsRecord]:
        """One ReceiveMessage: up to ``max_messages`` (1..10), long polling ``wait_seconds`` (0..20).

        Returns the messages in the order SQS gave them (possibly none). Raises like
        :meth:`describe` when the queue is gone or refuses.
        """
        url = await self._queue_url()
        request: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": min(_MAX_RECEIVE, max(1, int(max_messages))),
            "WaitTimeSeconds": int(min(_MAX_WAIT_SECONDS, wait_seconds)) if wait_seconds > 0 else 0,
            "AttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self._fifo:
            request["ReceiveRequestAttemptId"] = uuid.uuid4().hex
        response = await self._request("ReceiveMessage", self._calls.receive_message, **request)
        messages = response.get("Messages")
        return self._records(messages) if messages else []

    def _records(self, messages: Sequence[dict[str, Any]]) -> list[SqsRecord]:
        """ReceiveMessage entries as SqsRecords, numbered in receive order, with their size."""
        fifo = self._fifo
        envelope = self.envelope_size()
        ordinal = self._received
        records: list[SqsRecord] = []
        append = records.append
        for message in messages:
            attributes: Mapping[str, str] = message.get("Attributes") or _EMPTY
            message_id: str = message["MessageId"]
            body: str = message.get("Body") or ""
            data = body.encode("utf-8", "surrogatepass")
            group = attributes.get("MessageGroupId") or ""
            sent = attributes.get("SentTimestamp")
            arrival = int(sent) / 1000 if sent else time.time()
            # The body goes in JSON-escaped: escapes only lengthen ASCII chars (quotes counted
            # by the envelope), so the UTF-8 length plus what escaping added is exact.
            size = envelope + len(data) + len(encode_basestring(body)) - len(body) - 2
            size += len(message_id) + len(message.get("ReceiptHandle") or "")
            size += len(message.get("MD5OfBody") or "")
            shown = 0
            for name, value in attributes.items():
                if name in _EVENT_ATTRIBUTE_SET:
                    shown += len(name) + len(value) + 8  # "name": "value", (quotes, separator)
            if shown:
                size += shown - 2  # no separator after the last one
            if message.get("MessageAttributes"):
                size += _message_attributes_size(message)
            ordinal += 1
            partition = group if fifo else ""
            append(
                SqsRecord(
                    partition,
                    message_id,
                    ordinal,
                    group or message_id,
                    data,
                    arrival,
                    size,
                    message,
                )
            )
        self._received = ordinal
        return records

    def envelope_size(self) -> int:
        """Bytes every message adds to an event besides its ids, body, digests and attributes.

        Measured once by rendering an empty message, so the estimate follows the real shape (and
        the ``", "`` between records) instead of a hand-counted constant.
        """
        size = self._envelope
        if size is None:
            native = {"MessageId": "", "ReceiptHandle": "", "Body": "", "MD5OfBody": ""}
            probe = SqsRecord("", "", 0, "", b"", 0.0, 0, native)
            size = len(json.dumps(self.render_event([probe])["Records"][0])) + 2
            self._envelope = size
        return size

    def receive_count(self, record: Record) -> int:
        """ApproximateReceiveCount of this delivery (1 on the first)."""
        attributes = record.native.get("Attributes") or _EMPTY
        return int(attributes.get("ApproximateReceiveCount", 1))

    # --- settling --------------------------------------------------------------------------------

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        """DeleteMessageBatch for ``records``; return the ones that could not be deleted.

        Never raises for a failed delete: the message stays in the queue and comes back after its
        visibility timeout, so the caller decides what to do (it is at-least-once either way).
        """
        return await self._settle("DeleteMessageBatch", self._calls.delete_message_batch, records)

    async def change_visibility(self, records: Sequence[Record], seconds: float) -> list[Record]:
        """ChangeMessageVisibilityBatch: ``records`` become visible after ``seconds`` (0 = now).

        ``seconds`` is rounded up to whole seconds and clamped to SQS's 0..43200. Returns the
        records whose visibility could not be changed (say, their receipt handle expired).
        """
        # ``not seconds > 0`` also turns NaN into 0; the min() keeps infinity out of ceil().
        timeout = math.ceil(min(seconds, _MAX_VISIBILITY_SECONDS)) if seconds > 0 else 0
        return await self._settle(
            "ChangeMessageVisibilityBatch",
            self._calls.change_message_visibility_batch,
            records,
            {"VisibilityTimeout": timeout},
        )

    async def _settle(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        records: Sequence[Record],
        extra: Mapping[str, Any] = _EMPTY,
    ) -> list[Record]:
        if not records:
            return []
        try:
            url = await self._queue_url()
        except Exception as error:
            self._log.warning(
                "cannot settle messages: queue URL unknown",
                operation=operation,
                message_ids=[record.position for record in records],
                error=str(error),
            )
            return list(records)
        chunks = [records[i : i + _MAX_ENTRIES] for i in range(0, len(records), _MAX_ENTRIES)]
        if len(chunks) == 1:
            return await self._settle_chunk(operation, method, url, chunks[0], extra)
        results: list[list[Record]] = [[] for _ in chunks]
        limiter = anyio.CapacityLimiter(self.options.settle_concurrency)

        async def run(index: int) -> None:
            async with limiter:
                results[index] = await self._settle_chunk(
                    operation, method, url, chunks[index], extra
                )

        async with anyio.create_task_group() as group:
            for index in range(len(chunks)):
                group.start_soon(run, index)
        return [record for failed in results for record in failed]

    async def _settle_chunk(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        url: str,
        chunk: Sequence[Record],
        extra: Mapping[str, Any],
    ) -> list[Record]:
        """One batch request of at most ten entries, with retries; returns what still failed."""
        pending = {str(index): record for index, record in enumerate(chunk)}
        given_up: set[str] = set()
        errors: dict[str, str] = {}
        attempts = self.options.settle_attempts
        for attempt in range(1, attempts + 1):
            entries = [
                {"Id": entry_id, "ReceiptHandle": record.native["ReceiptHandle"], **extra}
                for entry_id, record in pending.items()
            ]
            try:
                response = await self._request(
                    operation, method, translate=False, QueueUrl=url, Entries=entries
                )
            except Exception as error:
                code = error_code(error) or type(error).__name__
                errors.update(dict.fromkeys(pending, code))
            else:
                succeeded = {str(entry.get("Id")) for entry in response.get("Successful") or ()}
                reported: dict[str, Mapping[str, Any]] = {
                    str(entry.get("Id")): entry for entry in response.get("Failed") or ()
                }
                retry: dict[str, Record] = {}
                for entry_id, record in pending.items():
                    if entry_id in succeeded:
                        errors.pop(entry_id, None)
                        continue
                    failure = reported.get(entry_id)
                    errors[entry_id] = str(failure.get("Code")) if failure else "NotReported"
                    if failure is not None and failure.get("SenderFault"):
                        given_up.add(entry_id)  # the caller's fault: a retry cannot help
                    else:
                        retry[entry_id] = record
                pending = retry
            if not pending:
                break
            if attempt < attempts:
                self._log.debug(
                    "retrying failed entries",
                    operation=operation,
                    message_ids=[record.position for record in pending.values()],
                    attempt=attempt,
                )
                await anyio.sleep(_jittered(self.options.settle_backoff, attempt))
        failed_ids = sorted({*pending, *given_up}, key=int)
        if not failed_ids:
            return []
        failed = [chunk[int(entry_id)] for entry_id in failed_ids]
        self._log.warning(
            "messages could not be settled",
            operation=operation,
            failed={chunk[int(entry_id)].position: errors.get(entry_id) for entry_id in failed_ids},
        )
        return failed

    # --- calls -----------------------------------------------------------------------------------

    async def _request(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        *,
        translate: bool = True,
        **request: Any,
    ) -> dict[str, Any]:
        """Call ``method(**request)``, waiting out throttling; errors as poller errors if asked."""

        async def attempt() -> dict[str, Any]:
            response: dict[str, Any] = await method(**request)
            return response

        try:
            return await call_with_backoff(
                attempt, operation=operation, backoff=self.options.backoff, queue=self.queue_arn
            )
        except (ClientError, BotoCoreError) as error:
            if not translate:
                raise
            raise self._translate(error, operation) from error

    def _translate(self, error: ClientError | BotoCoreError, operation: str) -> SourceError:
        """A poller error naming the queue and the cause."""
        if isinstance(error, BotoCoreError):
            return SourceError(f"Cannot reach queue {self.queue_arn} ({operation}): {error}")
        codes = _codes(error)
        if codes & _NOT_FOUND_CODES:
            return SourceNotFoundError(f"Queue not found: {self.queue_arn}")
        details = error.response.get("Error", {})
        code = details.get("Code") or "Unknown"
        message = details.get("Message") or str(error)
        if any("AccessDenied" in c or c in ("InvalidSecurity", "AuthFailure") for c in codes):
            return SourceError(
                f"Access denied to queue {self.queue_arn} ({operation}): {code}: {message}"
            )
        return SourceError(f"Cannot read queue {self.queue_arn} ({operation}): {code}: {message}")

    # --- rendering (hot path) --------------------------------------------------------------------

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """``{"Records": [...]}`` exactly as Lambda passes SQS messages to a function."""
        arn = self.queue_arn
        region = self.region
        keys = _EVENT_ATTRIBUTES
        rendered: list[dict[str, Any]] = []
        append = rendered.append
        for record in records:
            message = record.native
            attributes = message.get("Attributes") or _EMPTY
            user_attributes = message.get("MessageAttributes")
            append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message.get("Body", ""),
                    "attributes": {key: attributes[key] for key in keys if key in attributes},
                    "messageAttributes": (
                        _render_message_attributes(user_attributes) if user_attributes else {}
                    ),
                    "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
                    "md5OfBody": message.get("MD5OfBody"),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": region,
                }
            )
        return {"Records": rendered}

    def item_identifier(self, record: Record) -> str:
        """Lambda names SQS messages in ``batchItemFailures`` by message id."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``SQSBatchInfo`` of an on-failure record for ``records`` (poller's format; AWS has none).

        AWS sends discarded SQS messages to the queue's own dead-letter queue and has no
        on-failure record for them. When a mapping has an on-failure destination, poller sends
        one shaped like the stream records, with this batch info::

            "SQSBatchInfo": {
                "queueArn": "arn:aws:sqs:...:orders",
                "batchSize": 2,
                "firstMessageId": "...",         # messageId of the first message
                "lastMessageId": "...",          # messageId of the last message
                "approximateFirstSent": "2024-05-01T12:00:00.123Z",   # SentTimestamp, first
                "approximateLastSent": "2024-05-01T12:00:01.456Z",    # SentTimestamp, last
                "messages": [...]                # the messages as the event renders them:
            }                                    # full body, attributes, messageAttributes

        Unlike the stream batch infos it carries the messages themselves, because a deleted
        message cannot be read again from anywhere else.
        """
        if not records:
            raise ValueError("batch_info needs at least one record")
        first, last = records[0], records[-1]
        return (
            "SQSBatchInfo",
            {
                "queueArn": self.queue_arn,
                "batchSize": len(records),
                "firstMessageId": first.position,
                "lastMessageId": last.position,
                "approximateFirstSent": _iso_millis(first.arrival),
                "approximateLastSent": _iso_millis(last.arrival),
                "messages": self.render_event(records)["Records"],
            },
        )

    async def aclose(self) -> None:
        """Nothing to release: the client belongs to the caller."""


def _render_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """User message attributes as Lambda spells them (binary values in base64)."""
    b64 = binascii.b2a_base64
    rendered: dict[str, Any] = {}
    for name, value in attributes.items():
        data_type = value.get("DataType", "String")
        entry: dict[str, Any]
        if "BinaryValue" in value:
            entry = {"binaryValue": b64(value["BinaryValue"], newline=False).decode("ascii")}
        else:
            entry = {"stringValue": value.get("StringValue")}
        entry["stringListValues"] = list(value.get("StringListValues") or ())
        entry["binaryListValues"] = [
            b64(item, newline=False).decode("ascii") for item in value.get("BinaryListValues") or ()
        ]
        entry["dataType"] = data_type
        rendered[name] = entry
    return rendered


def _message_attributes_size(message: Mapping[str, Any]) -> int:
    """Bytes the message attributes and their digest add over an event without any.

    Counted from the parts (names and data types need no JSON escaping: SQS allows letters,
    digits, ``-``, ``_`` and ``.`` only) rather than by serializing: this runs per message.
    """
    attributes: Mapping[str, Mapping[str, Any]] = message["MessageAttributes"]
    size = -2  # no separator after the last entry
    for name, value in attributes.items():
        size += _ATTRIBUTE_ENTRY + len(name) + len(value.get("DataType", "String"))
        binary = value.get("BinaryValue")
        if binary is not None:
            size += (len(binary) + 2) // 3 * 4
        else:
            text = value.get("StringValue")
            size += len(encode_basestring(text).encode()) - 2 if text is not None else 2
        if value.get("StringListValues") or value.get("BinaryListValues"):
            rendered = _render_message_attributes({name: value})[name]
            lists = [rendered["stringListValues"], rendered["binaryListValues"]]
            size += len(json.dumps(lists, ensure_ascii=False).encode()) - len("[[], []]")
    digest = message.get("MD5OfMessageAttributes") or ""
    return size + len(digest) + 2 - 4  # a quoted digest replaces null


#: What one rendered message attribute with empty name, value and data type takes, with the
#: ``", "`` that separates it from the next.
_ATTRIBUTE_ENTRY: Final = (
    len(json.dumps(_render_message_attributes({"": {"StringValue": "", "DataType": ""}}))) - 2 + 2
)


def _codes(error: ClientError) -> frozenset[str]:
    """The error's codes, whole and by their last dotted part."""
    details = error.response.get("Error", {})
    codes: set[str] = set()
    for key in ("Code", "QueryErrorCode"):
        code = details.get(key)
        if code:
            codes.add(str(code))
            codes.add(str(code).rsplit(".", 1)[-1])
    return frozenset(codes)


def _jittered(backoff: Backoff, attempt: int) -> float:
    """A "full jitter" wait before retry ``attempt`` + 1: uniform up to the exponential bound."""
    bound = min(backoff.maximum, backoff.initial * 2 ** (attempt - 1))
    return random.uniform(0, bound)


def _iso_millis(epoch_seconds: float) -> str:
    """``2019-11-14T00:38:04.835Z``: how on-failure records spell times."""
    millis = round(epoch_seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


if TYPE_CHECKING:

    def _conforms(source: SqsSource) -> None:
        """mypy checks here that the class satisfies the engine's Protocol."""
        _source: QueueSource = source
