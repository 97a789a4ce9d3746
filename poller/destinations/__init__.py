"""On-failure destinations: where records the engine gave up on are recorded.

A mapping's ``DestinationConfig.OnFailure`` ARN becomes a :class:`Destination` (SQS queue, SNS
topic or S3 bucket) through :func:`destination_for`; an :class:`OnFailureSink` wraps it with the
source's codec and the function ARN and is what the engine delivers discards to. Records follow
AWS's on-failure record format (:func:`on_failure_record`).
"""

from poller.destinations.base import Destination, delivery_errors
from poller.destinations.factory import OnFailureSink, destination_for
from poller.destinations.record import (
    RECORD_VERSION,
    encode_record,
    format_timestamp,
    on_failure_record,
    s3_object_key,
    with_payload,
)
from poller.destinations.s3 import S3Destination
from poller.destinations.sns import SNS_MAX_MESSAGE_BYTES, SnsDestination
from poller.destinations.sqs import SqsDestination

__all__ = [
    "RECORD_VERSION",
    "SNS_MAX_MESSAGE_BYTES",
    "Destination",
    "OnFailureSink",
    "S3Destination",
    "SnsDestination",
    "SqsDestination",
    "delivery_errors",
    "destination_for",
    "encode_record",
    "format_timestamp",
    "on_failure_record",
    "s3_object_key",
    "with_payload",
]
