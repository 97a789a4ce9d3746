"""SNS on-failure destination: the record is the message.

SNS takes at most 256 KB per message. AWS's rule for on-failure records is to leave the payload
out when it would not fit; the stream records sent to SNS carry no payload, so in practice this
only matters for records that had one added. A record still too large without its payload cannot
be delivered at all: that is raised before calling SNS, with the size in the message, rather than
left to an opaque service error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from poller.destinations.base import AwsDestination, delivery_errors
from poller.destinations.record import encode_record
from poller.engine.discard import Discard
from poller.errors import DestinationError

__all__ = ["SNS_MAX_MESSAGE_BYTES", "SnsDestination"]

log = structlog.get_logger(__name__)

#: The largest message SNS publishes, in bytes (256 KB).
SNS_MAX_MESSAGE_BYTES = 262_144


class SnsDestination(AwsDestination):
    """Publishes on-failure records to an SNS standard topic (no payload: AWS sends the same
    object as to SQS)."""

    __slots__ = ()

    async def send(self, record: Mapping[str, Any], *, discard: Discard) -> None:
        """Publish the JSON record; DestinationError when too large or when SNS refuses."""
        message = self._fit(record, discard)
        with delivery_errors(self._arn):
            client = await self._clients.client("sns")
            response = await client.publish(TopicArn=self._arn, Message=message)
        self._sent(
            "on-failure record published to SNS", discard, message_id=response.get("MessageId")
        )

    def _fit(self, record: Mapping[str, Any], discard: Discard) -> str:
        message = encode_record(record)
        size = len(message.encode("utf-8"))
        if size <= SNS_MAX_MESSAGE_BYTES:
            return message
        if "payload" in record:
            log.warning(
                "on-failure record too large for SNS; sending it without its payload",
                destination=self._arn,
                mapping=discard.mapping_id,
                partition=discard.partition,
                size=size,
            )
            message = encode_record({k: v for k, v in record.items() if k != "payload"})
            size = len(message.encode("utf-8"))
            if size <= SNS_MAX_MESSAGE_BYTES:
                return message
        raise DestinationError(
            f"on-failure destination {self._arn}: the record is {size} bytes, over the SNS "
            f"message limit of {SNS_MAX_MESSAGE_BYTES} bytes"
        )
