"""SQS on-failure destination: the record is the message body.

The queue URL is looked up from the ARN (name and owner account) on the first delivery and kept,
so a destination queue in another account works and steady-state delivery is one call. A failed
lookup is not cached: the next attempt looks again, which lets a queue created late be picked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import structlog

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.destinations.base import AwsDestination, delivery_errors
from poller.destinations.record import encode_record
from poller.engine.discard import Discard

__all__ = ["SqsDestination"]

log = structlog.get_logger(__name__)


class SqsDestination(AwsDestination):
    """Sends on-failure records to an SQS standard queue (no payload: AWS sends the batch info
    only)."""

    __slots__ = ("_lock", "_parsed", "_queue_url")

    def __init__(self, arn: str, clients: AwsClients) -> None:
        super().__init__(arn, clients)
        self._parsed = ARN.parse(arn)
        self._queue_url: str | None = None
        self._lock = anyio.Lock()

    async def send(self, record: Mapping[str, Any], *, discard: Discard) -> None:
        """SendMessage with the JSON record as body; DestinationError when it fails."""
        with delivery_errors(self._arn):
            client = await self._clients.client("sqs")
            queue_url = await self._resolve(client)
            response = await client.send_message(
                QueueUrl=queue_url, MessageBody=encode_record(record)
            )
        self._sent("on-failure record sent to SQS", discard, message_id=response.get("MessageId"))

    async def _resolve(self, client: Any) -> str:
        async with self._lock:
            if self._queue_url is None:
                response = await client.get_queue_url(
                    QueueName=self._parsed.resource,
                    QueueOwnerAWSAccountId=self._parsed.account,
                )
                self._queue_url = str(response["QueueUrl"])
            return self._queue_url
