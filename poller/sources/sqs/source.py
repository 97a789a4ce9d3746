"""Amazon SQS (standard and FIFO queues) as a queue source (a visibility-timeout queue).

One :class:`SqsSource` serves one queue, named by its ARN. The queue URL is looked up once
(GetQueueUrl with the ARN's name and owner account, so a queue in another account works) and kept;
a failed lookup is not kept, so the next call looks again. Every AWS call goes through the client
the source is handed (see ``poller.aws_calls``); the caller owns and closes that client.

What the source does for the engine:

- ``receive``: one ReceiveMessage (long polling), every system and user attribute requested, the
  messages as :class:`~poller.sources.sqs.records.SqsRecord`. On a FIFO queue each receive carries a fresh
  ``ReceiveRequestAttemptId``, so a receive that the client retries after a network error gets
  the same messages back instead of hiding a second set until their visibility timeout ends.
- ``delete`` / ``change_visibility``: the batch APIs, ten entries per request, several requests at
  once, with retries (:mod:`poller.sources.sqs.settling`); settling never raises, the engine
  decides.
- throttling (``RequestThrottled``, ``OverLimit``, ``ThrottlingException`` ...) is waited out
  with jittered backoff, forever, as every source does (``call_with_backoff``).
- a missing queue raises :class:`~poller.errors.SourceNotFoundError` ("Queue not found: <arn>"),
  other refusals (access denied, KMS) a :class:`~poller.errors.SourceError` naming the queue and
  the cause; the engine backs off, logs and tries again.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Final

import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from poller.aws_calls import (
    ClientCalls,
    call_with_backoff,
    error_codes,
)
from poller.config.fields import ARN
from poller.config.resolved import ResolvedMapping
from poller.engine.protocols import QueueInfo
from poller.errors import SourceError, SourceNotFoundError
from poller.records import Record
from poller.sources.spec import OpenedSource, SourceEnvironment
from poller.sources.sqs.codec import EVENT_ATTRIBUTE_SET, SqsCodec, message_attributes_size
from poller.sources.sqs.records import SqsRecord
from poller.sources.sqs.settling import SqsOptions, settle_in_batches
from poller.sources.sqs.spec import QUEUE_ARN

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["SqsOptions", "SqsSource"]

_log = structlog.get_logger(__name__)

#: SQS limits: messages per receive and entries per batch request, long-poll wait, visibility.
_MAX_RECEIVE: Final = 10
_MAX_WAIT_SECONDS: Final = 20
_MAX_VISIBILITY_SECONDS: Final = 43_200

#: Error codes (or their last dotted part: ``AWS.SimpleQueueService.NonExistentQueue``) by which
#: SQS says the queue does not exist. With the JSON protocol botocore puts the query-compatible
#: code in ``Code`` and the modeled one in ``QueryErrorCode``; both are checked.
_NOT_FOUND_CODES: Final = frozenset({"NonExistentQueue", "QueueDoesNotExist"})
_EMPTY: Final[Mapping[str, Any]] = {}


class SqsSource:
    """An SQS queue, standard or FIFO (implements the engine's ``VisibilityQueue``).

    Records are :class:`~poller.sources.sqs.records.SqsRecord`: ``partition`` is the FIFO message group id
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
        parsed = QUEUE_ARN.check(queue_arn)
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
        #: Renders this queue's messages in AWS's shapes; its envelope size is the messages'.
        self.codec = SqsCodec(queue_arn, region)
        self._log = _log.bind(queue=queue_arn)

    @classmethod
    async def opened(cls, mapping: ResolvedMapping, environment: SourceEnvironment) -> OpenedSource:
        """A mapping's source, ready to run (the spec's opener)."""
        client = await environment.clients.client("sqs")
        source = cls(mapping.event_source_arn, client, environment.region_of(mapping))
        return OpenedSource(source, source.codec)

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
        envelope = self.codec.envelope_size()
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
                if name in EVENT_ATTRIBUTE_SET:
                    shown += len(name) + len(value) + 8  # "name": "value", (quotes, separator)
            if shown:
                size += shown - 2  # no separator after the last one
            if message.get("MessageAttributes"):
                size += message_attributes_size(message)
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

    async def _settle(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        records: Sequence[Record],
        extra: Mapping[str, Any] | None = None,
    ) -> list[Record]:
        """One batch API over ``records`` (ten entries a request); returns what failed."""
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

        async def call(entries: list[dict[str, Any]]) -> Mapping[str, Any]:
            return await self._request(
                operation, method, translate=False, QueueUrl=url, Entries=entries
            )

        return await settle_in_batches(
            call, records, extra or {}, options=self.options, log=self._log, operation=operation
        )

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
        codes = error_codes(error)
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

    async def aclose(self) -> None:
        """Nothing to release: the client belongs to the caller."""


async def create_queue(mapping: ResolvedMapping, clients: AwsClients, shards: int) -> None:
    """Create the queue the mapping reads (FIFO when its name says so)."""
    name = ARN.parse(mapping.event_source_arn).resource
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    await (await clients.client("sqs")).create_queue(QueueName=name, Attributes=attributes)
    _log.info("embedded queue created", queue=name)
