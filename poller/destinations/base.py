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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from poller.engine.discard import Discard
from poller.errors import DestinationError

if TYPE_CHECKING:
    from poller.aws import AwsClients

__all__ = ["AwsDestination", "Destination", "DestinationBase", "delivery_errors"]

_log = structlog.get_logger("poller.destinations")


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


class DestinationBase:
    """What every destination implementation shares: the destination as configured."""

    __slots__ = ("_arn",)

    #: Whether records sent here carry the invocation event (S3 does; SQS and SNS do not).
    includes_payload: ClassVar[bool] = False

    def __init__(self, arn: str) -> None:
        self._arn = arn

    @property
    def arn(self) -> str:
        """The destination as configured (an ARN, or ``kafka://TOPIC``)."""
        return self._arn

    def _sent(self, event: str, discard: Discard, **details: Any) -> None:
        """Log (at debug level) that ``discard``'s record reached this destination."""
        _log.debug(
            event,
            destination=self._arn,
            mapping=discard.mapping_id,
            partition=discard.partition,
            **details,
        )


class AwsDestination(DestinationBase):
    """An SQS, SNS or S3 destination: reached through the worker's AWS clients."""

    __slots__ = ("_clients",)

    def __init__(self, arn: str, clients: AwsClients) -> None:
        super().__init__(arn)
        self._clients = clients


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
