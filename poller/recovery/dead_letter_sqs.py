"""Moving an SQS mapping's dead letters back to its source queue, as SQS's message move task does.

The dead-letter queue is the one the source queue's RedrivePolicy names (``deadLetterTargetArn``)
unless one is given (a name, URL or ARN). Messages are received from it (all attributes), sent to
the source queue with their body and message attributes, and deleted from it only once the send
succeeded. A FIFO source queue gets each message's MessageGroupId and a deduplication id of its
own (``redrive-`` and the dead letter's message id: a move repeated within SQS's five-minute
window, after a send that landed but a delete that did not, is not delivered twice); messages of a
group are moved one at a time in the order the FIFO dead-letter queue hands them out, and after a
failed send the rest of that group stays put, so order per group is kept.

A message whose send fails stays in the dead-letter queue (invisible for the visibility timeout of
the receive, then there again) and is reported. The queue counts as empty when a long poll of
``EMPTY_POLL_SECONDS`` returns nothing.

Dry run: messages are received with a visibility timeout of ``LISTING_VISIBILITY_SECONDS`` (so each
is listed once) and made visible again at once at the end (ChangeMessageVisibility 0). Receiving
counts: each listed message's ApproximateReceiveCount goes up by one.

IAM actions: ``sqs:GetQueueUrl``, ``GetQueueAttributes`` (both queues), ``ReceiveMessage``,
``DeleteMessage`` and ``ChangeMessageVisibility`` (dead-letter queue), ``SendMessage`` (source).
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from botocore.exceptions import ClientError

from poller.aws_calls import error_code
from poller.config.fields import ARN
from poller.errors import SourceError, SourceNotFoundError
from poller.recovery.dead_letter_moves import (
    DeadLetter,
    Pace,
    Tally,
    preview,
    print_listing,
    print_tally,
)

__all__ = ["redrive_sqs"]

EMPTY_POLL_SECONDS = 2
#: How long a received dead letter stays invisible while it is moved (a failed one: until then).
MOVE_VISIBILITY_SECONDS = 30
LISTING_VISIBILITY_SECONDS = 60

_GONE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


async def redrive_sqs(
    sqs: Any,
    source_arn: str,
    *,
    dead_letter_queue: str | None,
    rate_per_second: float,
    max_messages: int | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Move (or list) the dead letters; 0 when all moved, 1 when some failed."""
    source_url = await _queue_url(sqs, source_arn, what="source queue")
    attributes = await _attributes(sqs, source_url, "RedrivePolicy", "FifoQueue")
    fifo = attributes.get("FifoQueue") == "true"
    if dead_letter_queue is None:
        policy = attributes.get("RedrivePolicy")
        if not policy:
            raise SourceNotFoundError(
                f"source queue {source_arn} has no RedrivePolicy (no dead-letter queue): give "
                "the dead-letter queue with --from"
            )
        dead_letter_queue = str(json.loads(policy)["deadLetterTargetArn"])
    dlq_url = await _queue_url(sqs, dead_letter_queue, what="dead-letter queue")
    tally = Tally(source_url, dlq_url)
    if dry_run:
        letters = await _listing(sqs, dlq_url, max_messages)
        note = (
            "they were received (each receive count went up by one) and made visible again at once"
        )
        print_listing(letters, tally, note, out)
        return 0
    pace = Pace(rate_per_second)
    blocked_groups: set[str] = set()
    while max_messages is None or tally.moved + len(tally.failures) < max_messages:
        room = 10 if max_messages is None else max_messages - tally.moved - len(tally.failures)
        messages = await _receive(sqs, dlq_url, min(10, room), MOVE_VISIBILITY_SECONDS)
        if not messages:
            break
        moved: list[dict[str, Any]] = []
        for message in messages:
            group = message.get("Attributes", {}).get("MessageGroupId")
            if group is not None and group in blocked_groups:
                tally.failures.append(
                    f"{message['MessageId']}: not moved, an earlier message of group {group!r} "
                    "failed (order per group is kept)"
                )
                continue
            await pace.wait()
            failure = await _send(sqs, source_url, message, fifo)
            if failure is None:
                moved.append(message)
                continue
            tally.failures.append(f"{message['MessageId']}: {failure}")
            if group is not None:
                blocked_groups.add(group)
        undeleted = await _delete(sqs, dlq_url, moved)
        tally.failures.extend(undeleted)
        tally.moved += len(moved) - len(undeleted)
    tally.left = await _left(sqs, dlq_url)
    print_tally(tally, out)
    return 1 if tally.failures else 0


async def _queue_url(sqs: Any, given: str, *, what: str) -> str:
    """The URL of a queue named by ARN, URL or name; SourceNotFoundError when it does not exist."""
    if given.startswith(("https://", "http://")):
        await _attributes(sqs, given, "QueueArn", what=what, name=given)
        return given
    arguments: dict[str, Any] = {"QueueName": given}
    if given.startswith("arn:"):
        arn = ARN.parse(given)
        arguments = {"QueueName": arn.resource, "QueueOwnerAWSAccountId": arn.account}
    try:
        response = await sqs.get_queue_url(**arguments)
    except ClientError as error:
        if error_code(error) in _GONE:
            raise SourceNotFoundError(f"{what} {given} does not exist") from None
        raise _failure(error, what, given) from None
    return str(response["QueueUrl"])


async def _attributes(
    sqs: Any, url: str, *names: str, what: str = "source queue", name: str | None = None
) -> dict[str, str]:
    try:
        response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    except ClientError as error:
        if error_code(error) in _GONE:
            raise SourceNotFoundError(f"{what} {name or url} does not exist") from None
        raise _failure(error, what, name or url) from None
    return dict(response.get("Attributes", {}))


def _failure(error: ClientError, what: str, name: str) -> SourceError:
    code = error_code(error) or "error"
    if "AccessDenied" in code or "Authoriz" in code:
        return SourceError(f"access denied: sqs:{error.operation_name} on {what} {name}")
    return SourceError(f"sqs:{error.operation_name} on {what} {name} failed: {code}: {error}")


async def _receive(sqs: Any, url: str, count: int, visibility: int) -> list[dict[str, Any]]:
    try:
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=EMPTY_POLL_SECONDS,
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
    except ClientError as error:
        raise _failure(error, "dead-letter queue", url) from None
    return list(response.get("Messages", []))


async def _send(sqs: Any, url: str, message: dict[str, Any], fifo: bool) -> str | None:
    """Send one dead letter to the source queue; None when it landed, else why not."""
    arguments: dict[str, Any] = {"QueueUrl": url, "MessageBody": message["Body"]}
    if message.get("MessageAttributes"):
        arguments["MessageAttributes"] = message["MessageAttributes"]
    if fifo:
        group = message.get("Attributes", {}).get("MessageGroupId")
        if group is None:
            return "no MessageGroupId: it cannot go to a FIFO source queue"
        arguments["MessageGroupId"] = group
        arguments["MessageDeduplicationId"] = f"redrive-{message['MessageId']}"
    try:
        await sqs.send_message(**arguments)
    except ClientError as error:
        if error_code(error) in _GONE:
            raise SourceNotFoundError(f"source queue {url} does not exist any more") from None
        return f"SendMessage failed: {error_code(error)}: {error}"
    return None


async def _delete(sqs: Any, url: str, messages: list[dict[str, Any]]) -> list[str]:
    """Delete the moved messages from the dead-letter queue; a line per one that stayed."""
    if not messages:
        return []
    entries = [
        {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
        for n, message in enumerate(messages)
    ]
    try:
        response = await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    except ClientError as error:
        return [
            f"{m['MessageId']}: sent, but not deleted from the dead-letter queue "
            f"({error_code(error)}): it is in both queues"
            for m in messages
        ]
    return [
        f"{messages[int(entry['Id'])]['MessageId']}: sent, but not deleted from the dead-letter "
        f"queue ({entry.get('Code')}): it is in both queues"
        for entry in response.get("Failed", [])
    ]


async def _listing(sqs: Any, url: str, max_messages: int | None) -> list[DeadLetter]:
    received: list[dict[str, Any]] = []
    try:
        while max_messages is None or len(received) < max_messages:
            room = 10 if max_messages is None else min(10, max_messages - len(received))
            batch = await _receive(sqs, url, room, LISTING_VISIBILITY_SECONDS)
            if not batch:
                break
            received.extend(batch)
    finally:
        for start in range(0, len(received), 10):
            await sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(received[start : start + 10])
                ],
            )
    return [
        DeadLetter(
            m["MessageId"],
            m.get("Attributes", {}).get("MessageGroupId"),
            m.get("Attributes", {}).get("ApproximateReceiveCount", "-"),
            preview(m["Body"]),
        )
        for m in received
    ]


async def _left(sqs: Any, url: str) -> int | None:
    names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    attributes = await _attributes(sqs, url, *names, what="dead-letter queue")
    return sum(int(attributes.get(name, 0)) for name in names)
