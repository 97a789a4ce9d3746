"""What every on-failure destination is: a transport for one finished record.

A destination does not build records; :class:`~poller.destinations.factory.OnFailureSink` does,
so the AWS format lives in one place (:mod:`poller.destinations.record`) and each destination only
knows its service's call and limits. A destination says whether it stores the invocation event
(``includes_payload``: S3 does, SQS and SNS do not) and the sink adds it before sending.

Delivery failures of any kind become :class:`~poller.errors.DestinationError`. Nothing here
retries beyond the client's own retries and nothing swallows an error: the engine retries a
delivery until it succeeds, because a discarded record must never vanish unrecorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from poller.engine.discard import Discard
from poller.errors import DestinationError

__all__ = ["Destination", "delivery_errors"]


class Destination(Protocol):
    """Sends an on-failure record to one SQS queue, SNS topic or S3 bucket."""

    @property
    def arn(self) -> str:
        """The destination ARN, as configured."""
        ...

    @property
    def includes_payload(self) -> bool:
        """Whether records sent here carry the invocation event as ``payload``."""
        ...

    async def send(self, record: Mapping[str, Any], *, discard: Discard) -> None:
        """Deliver ``record`` (built for ``discard``) or raise DestinationError."""
        ...


@contextmanager
def delivery_errors(arn: str) -> Iterator[None]:
    """Turn client failures (service errors, unreachable endpoint, timeouts) into DestinationError.

    The message names the destination and the cause, so a stuck shard's log says which
    destination to fix.
    """
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise DestinationError(f"on-failure destination {arn}: {error}") from error
