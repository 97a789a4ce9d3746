"""S3 on-failure destination: one JSON object per discard, with the invocation event inside.

Objects land under AWS's key layout (see :func:`~poller.destinations.record.s3_object_key`), so
tools that list ``aws/lambda/<mapping>/<shard>/YYYY/MM/DD/`` prefixes find them where they would
on AWS. Unlike SQS and SNS, S3 has room for the whole event, so its records carry ``payload``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.destinations.base import AwsDestination, delivery_errors
from poller.destinations.record import encode_record, s3_object_key
from poller.engine.discard import Discard

__all__ = ["S3Destination"]

log = structlog.get_logger(__name__)


class S3Destination(AwsDestination):
    """Stores on-failure records as objects in an S3 bucket (``arn:aws:s3:::bucket``)."""

    __slots__ = ("_bucket",)

    #: S3 records carry the invocation event as ``payload``.
    includes_payload = True

    def __init__(self, arn: str, clients: AwsClients) -> None:
        super().__init__(arn, clients)
        self._bucket = ARN.parse(arn).resource

    @property
    def bucket(self) -> str:
        """The bucket name taken from the ARN."""
        return self._bucket

    async def send(self, record: Mapping[str, Any], *, discard: Discard) -> None:
        """PutObject the JSON record at the AWS key layout; DestinationError when it fails."""
        key = s3_object_key(discard)
        body = encode_record(record).encode("utf-8")
        with delivery_errors(self._arn):
            client = await self._clients.client("s3")
            await client.put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType="application/json"
            )
        self._sent("on-failure record stored in S3", discard, key=key)
