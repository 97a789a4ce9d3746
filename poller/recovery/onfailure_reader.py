"""Reading on-failure records back from where a stream mapping sent them: SQS, SNS, S3.

Each destination is read through one :class:`FailureInbox`: every record there is read first
(SQS messages are held invisible meanwhile), so records the redrive itself writes to the same
destination are never read back in the same run. Afterwards :meth:`FailureInbox.settle` removes
the records whose fate is settled (redriven, or failed again and recorded anew) and leaves every
other one as it was: an SQS message becomes visible again at once, an S3 object stays.

S3 objects are deleted, not tagged: a record that fails again is written as a new object, and a
tagged old one would still be listed (and redriven twice) by the next run; deleting is what
makes "nothing is duplicated forever" hold. An SNS topic cannot be read: its records are read
from an SQS queue subscribed to it, with or without raw message delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import structlog

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.errors import ConfigError
from poller.recovery.failure_records import FailureRecord

__all__ = ["FailureInbox", "S3Inbox", "SqsInbox", "queue_behind_topic"]

_log = structlog.get_logger("poller.recovery")

#: How long read SQS messages stay hidden while a redrive runs (SQS's maximum is 12 h). Kept
#: messages are made visible again at the end; after a crash they come back on their own.
HOLD_SECONDS = 900
#: SQS takes at most ten messages per receive and per batch call.
_SQS_BATCH = 10


class FailureInbox(Protocol):
    """A destination's on-failure records, read once, then settled."""

    #: What the destination is, for the output (``sqs:queue-name``, ``s3://bucket/prefix``).
    description: str

    async def read(self) -> list[FailureRecord]:
        """Every record the destination holds now."""
        ...

    def held_back(self, kept: Sequence[FailureRecord]) -> list[FailureRecord]:
        """Records that cannot be removed while ``kept`` stay (Kafka's offsets are a prefix)."""
        ...

    async def settle(
        self,
        removed: Sequence[FailureRecord],
        kept: Sequence[FailureRecord],
        foreign: Sequence[FailureRecord],
    ) -> dict[str, str]:
        """Remove ``removed``; leave ``kept`` (this mapping's) and ``foreign`` (other mappings')
        as they were. A problem per record not removed, by its ``where`` (or by
        :attr:`description` when nothing could be removed)."""
        ...

    async def aclose(self) -> None:
        """Release what the inbox holds."""
        ...


class SqsInbox:
    """On-failure records in an SQS queue (the destination itself, or one subscribed to the
    SNS topic that is)."""

    def __init__(self, clients: AwsClients, queue: str) -> None:
        self._clients = clients
        self._queue = queue
        self._url: str | None = None
        self.description = f"sqs:{queue}"

    async def _client_and_url(self) -> tuple[Any, str]:
        client = await self._clients.client("sqs")
        if self._url is None:
            if self._queue.startswith(("http://", "https://")):
                self._url = self._queue
            else:
                arn = ARN.parse(self._queue)
                found = await client.get_queue_url(
                    QueueName=arn.resource, QueueOwnerAWSAccountId=arn.account
                )
                self._url = str(found["QueueUrl"])
        return client, self._url

    async def read(self) -> list[FailureRecord]:
        """Receive until the queue has nothing visible left, holding every message."""
        client, url = await self._client_and_url()
        records: list[FailureRecord] = []
        seen: set[str] = set()
        while True:
            response = await client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=_SQS_BATCH,
                WaitTimeSeconds=1,
                VisibilityTimeout=HOLD_SECONDS,
            )
            messages = response.get("Messages") or []
            if not messages:
                return records
            for message in messages:
                if message["MessageId"] in seen:
                    continue
                seen.add(message["MessageId"])
                records.append(
                    FailureRecord(
                        f"sqs:{message['MessageId']}",
                        str(message.get("Body") or ""),
                        message["ReceiptHandle"],
                    )
                )

    def held_back(self, kept: Sequence[FailureRecord]) -> list[FailureRecord]:
        """Messages are removed one by one: nothing is held back."""
        return []

    async def settle(
        self,
        removed: Sequence[FailureRecord],
        kept: Sequence[FailureRecord],
        foreign: Sequence[FailureRecord],
    ) -> dict[str, str]:
        """Delete ``removed``; make ``kept`` and ``foreign`` visible again now."""
        client, url = await self._client_and_url()
        problems: dict[str, str] = {}
        for chunk in _chunks(removed):
            response = await client.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": r.handle} for i, r in enumerate(chunk)],
            )
            for failure in response.get("Failed") or ():
                where = chunk[int(failure["Id"])].where
                cause = failure.get("Message") or failure.get("Code")
                problems[where] = f"{where}: not deleted ({cause})"
        for chunk in _chunks([*kept, *foreign]):
            response = await client.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r.handle, "VisibilityTimeout": 0}
                    for i, r in enumerate(chunk)
                ],
            )
            for failure in response.get("Failed") or ():
                # Not a loss: the message comes back when its hold ends.
                _log.warning(
                    "kept on-failure message not made visible again",
                    message=chunk[int(failure["Id"])].where,
                    error=failure.get("Message") or failure.get("Code"),
                )
        return problems

    async def aclose(self) -> None:
        """Nothing of its own to release (the clients are the caller's)."""


class S3Inbox:
    """On-failure records stored as objects under a prefix of a bucket (with their payload)."""

    def __init__(self, clients: AwsClients, bucket: str, prefix: str) -> None:
        self._clients = clients
        self._bucket = bucket
        self._prefix = prefix
        self.description = f"s3://{bucket}/{prefix}"

    async def read(self) -> list[FailureRecord]:
        """Every object under the prefix, oldest key first (keys carry the discard's time)."""
        client = await self._clients.client("s3")
        keys: list[str] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {"Bucket": self._bucket, "Prefix": self._prefix}
            if token:
                request["ContinuationToken"] = token
            page = await client.list_objects_v2(**request)
            keys += [str(item["Key"]) for item in page.get("Contents") or ()]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        records: list[FailureRecord] = []
        for key in sorted(keys):
            response = await client.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
            text = data.decode("utf-8", errors="replace")
            records.append(FailureRecord(f"s3://{self._bucket}/{key}", text, key))
        return records

    def held_back(self, kept: Sequence[FailureRecord]) -> list[FailureRecord]:
        """Objects are removed one by one: nothing is held back."""
        return []

    async def settle(
        self,
        removed: Sequence[FailureRecord],
        kept: Sequence[FailureRecord],
        foreign: Sequence[FailureRecord],
    ) -> dict[str, str]:
        """Delete the objects of ``removed``; the others stay untouched."""
        client = await self._clients.client("s3")
        problems: dict[str, str] = {}
        for record in removed:
            try:
                await client.delete_object(Bucket=self._bucket, Key=record.handle)
            except Exception as error:
                problems[record.where] = f"{record.where}: not deleted ({error})"
        return problems

    async def aclose(self) -> None:
        """Nothing of its own to release (the clients are the caller's)."""


async def queue_behind_topic(clients: AwsClients, topic_arn: str) -> str:
    """The SQS queue subscribed to ``topic_arn``, when there is exactly one; else ConfigError
    asking for ``--from`` (a topic cannot be read, and which of several queues to drain is the
    operator's choice)."""
    client = await clients.client("sns")
    queues: list[str] = []
    token: str | None = None
    while True:
        request: dict[str, Any] = {"TopicArn": topic_arn}
        if token:
            request["NextToken"] = token
        page = await client.list_subscriptions_by_topic(**request)
        queues += [
            str(s["Endpoint"])
            for s in page.get("Subscriptions") or ()
            if s.get("Protocol") == "sqs"
        ]
        token = page.get("NextToken")
        if not token:
            break
    if len(queues) != 1:
        found = ", ".join(queues) if queues else "none"
        raise ConfigError(
            f"--from: the on-failure destination is the SNS topic {topic_arn}, whose records can "
            f"only be read from an SQS queue subscribed to it (subscribed queues: {found}); "
            "give that queue's ARN or URL with --from"
        )
    return queues[0]


def _chunks(records: Sequence[FailureRecord]) -> list[Sequence[FailureRecord]]:
    return [records[i : i + _SQS_BATCH] for i in range(0, len(records), _SQS_BATCH)]
