"""From a configured ARN to a working on-failure sink.

:func:`destination_for` picks the transport by the ARN's service; :class:`OnFailureSink` is what
the engine holds (its ``DiscardSink``): it turns a discard into the AWS record with the source's
batch info and hands it to the destination. Keeping the record building here, not in each
destination, means SQS, SNS and S3 can never drift apart on the format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.destinations.base import Destination
from poller.destinations.record import on_failure_record, with_payload
from poller.destinations.s3 import S3Destination
from poller.destinations.sns import SnsDestination
from poller.destinations.sqs import SqsDestination
from poller.engine.discard import Discard
from poller.engine.protocols import EventCodec
from poller.errors import ConfigError

__all__ = ["OnFailureSink", "destination_for"]

log = structlog.get_logger(__name__)


def destination_for(arn: str, clients: AwsClients) -> Destination:
    """The destination for an SQS queue, SNS topic or S3 bucket ARN.

    Config validation already refuses other services and FIFO queues or topics; this checks again
    so a destination built by hand fails the same way, before anything runs.
    """
    try:
        parsed = ARN.parse(arn)
    except ValueError as error:
        raise ConfigError(f"on-failure destination: {error}") from None
    if parsed.service in {"sqs", "sns"} and parsed.resource.endswith(".fifo"):
        raise ConfigError(
            f"on-failure destination {arn!r} is a FIFO {parsed.service.upper()} destination, "
            "which AWS refuses"
        )
    if parsed.service == "sqs":
        return SqsDestination(arn, clients)
    if parsed.service == "sns":
        return SnsDestination(arn, clients)
    if parsed.service == "s3":
        if "/" in parsed.resource:
            raise ConfigError(
                f"on-failure destination {arn!r} names a path; expected a bucket ARN "
                "(arn:aws:s3:::BUCKET)"
            )
        return S3Destination(arn, clients)
    raise ConfigError(
        f"{arn!r} is not an allowed on-failure destination "
        "(allowed: an SQS queue, SNS topic or S3 bucket ARN)"
    )


class OnFailureSink:
    """The engine's DiscardSink for one mapping: builds the on-failure record and sends it."""

    __slots__ = ("_codec", "_destination", "_function_arn")

    def __init__(self, codec: EventCodec, function_arn: str, destination: Destination) -> None:
        self._codec = codec
        self._function_arn = function_arn
        self._destination = destination

    @property
    def destination(self) -> Destination:
        """Where records go."""
        return self._destination

    def record_for(self, discard: Discard) -> dict[str, Any]:
        """The record this sink sends for ``discard``, with ``payload`` if the destination wants it.

        The payload is the last event handed to the function; when the records were never handed
        over (record age exceeded first) the event is rendered from the discarded records.
        """
        record = on_failure_record(
            discard,
            function_arn=self._function_arn,
            batch_info=self._codec.batch_info(discard.records),
        )
        if self._destination.includes_payload:
            payload: Mapping[str, Any] = (
                discard.payload
                if discard.payload is not None
                else self._codec.render_event(discard.records)
            )
            record = with_payload(record, payload)
        return record

    async def deliver(self, discard: Discard) -> None:
        """Send the on-failure record for ``discard``; raises DestinationError on failure."""
        await self._destination.send(self.record_for(discard), discard=discard)
        log.info(
            "discarded records sent to on-failure destination",
            destination=self._destination.arn,
            mapping=discard.mapping_id,
            partition=discard.partition,
            condition=discard.condition,
            records=len(discard.records),
            invoke_count=discard.invoke_count,
        )
