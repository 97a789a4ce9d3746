"""What every AWS-backed source shares: the client seam, error codes and throttling backoff.

Sources call AWS only through a client object they are handed (:data:`ClientCalls`): an aiobotocore
client, or anything with the same async methods. A source never creates or closes that client; the
caller owns it. Tests exploit the seam by wrapping the real client to inject faults that emulators
never produce (expired iterators, throttling, shard ends), so the recovery paths run over the same
code as production.

Throttling is not a failure: AWS asks the caller to slow down, and nothing was read or written.
:func:`call_with_backoff` retries such calls forever with jittered exponential waits (so many
readers throttled together do not retry in lockstep) and logs every retry; any other error passes
through unchanged for the caller to classify.

The engine's source-facing Protocols are re-exported here so a source module imports its whole
contract from one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import anyio
import structlog
from botocore.exceptions import ClientError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never
from tenacity.wait import wait_base, wait_random_exponential

from poller.engine.protocols import (
    EventRenderer,
    PartitionInfo,
    PartitionReader,
    PartitionSource,
    ReadResult,
    StartAt,
)

__all__ = [
    "THROTTLING_CODES",
    "Backoff",
    "ClientCalls",
    "EventRenderer",
    "PartitionInfo",
    "PartitionReader",
    "PartitionSource",
    "ReadResult",
    "StartAt",
    "call_with_backoff",
    "error_code",
    "is_throttling",
]

T = TypeVar("T")

#: The object a source calls AWS through: an aiobotocore client or a wrapper with the same async
#: methods (``await calls.get_records(ShardIterator=..., Limit=...)``). Typed loosely on purpose:
#: the botocore method set is generated at runtime, and wrappers must be able to stand in for it.
ClientCalls: TypeAlias = Any

#: Error codes by which AWS services say "slow down"; retrying later is always safe.
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        # Kinesis on encrypted streams: KMS refused the decrypt rate, not the request.
        "KMSThrottlingException",
        # SQS: request rate, KMS rate, and too many messages in flight (SQS may prefix them with
        # "AWS.SimpleQueueService." or give them as QueryErrorCode).
        "Throttling",
        "RequestThrottled",
        "KmsThrottled",
        "OverLimit",
    }
)

_log = structlog.get_logger(__name__)


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``"ThrottlingException"``), else None."""
    if not isinstance(error, ClientError):
        return None
    code = error.response.get("Error", {}).get("Code")
    return str(code) if code else None


def is_throttling(error: BaseException) -> bool:
    """Whether ``error`` is AWS asking the caller to slow down.

    Looks at ``Code`` and ``QueryErrorCode``, whole and by their last dotted part, because SQS
    spells its codes ``AWS.SimpleQueueService.RequestThrottled`` in some protocols.
    """
    if not isinstance(error, ClientError):
        return False
    details = error.response.get("Error", {})
    for key in ("Code", "QueryErrorCode"):
        code = details.get(key)
        if code and (code in THROTTLING_CODES or str(code).rsplit(".", 1)[-1] in THROTTLING_CODES):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential waits between throttled attempts: up to ``initial * 2**n``, capped.

    "Full jitter": each wait is drawn uniformly from zero to the exponential bound, which spreads
    retries of many throttled readers over time instead of letting them collide again.
    """

    #: Upper bound of the first wait, in seconds.
    initial: float = 0.1
    #: Largest wait, in seconds.
    maximum: float = 5.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError(
                f"invalid backoff initial={self.initial!r} maximum={self.maximum!r} "
                "(allowed: 0 < initial <= maximum)"
            )

    def strategy(self) -> wait_base:
        """The tenacity wait strategy for these bounds."""
        return wait_random_exponential(multiplier=self.initial, max=self.maximum)


async def call_with_backoff(
    call: Callable[[], Awaitable[T]],
    *,
    operation: str,
    backoff: Backoff = Backoff(),  # frozen: safe to share
    **log_fields: Any,
) -> T:
    """Await ``call()``; while AWS throttles it, wait with jitter and try again, never giving up.

    ``call`` must be safe to repeat (a read, or a write AWS refused). Each retry is logged as a
    warning with ``operation``, the error code, the attempt number and ``log_fields`` (say, the
    shard id). Errors other than throttling propagate at once.
    """

    def log_retry(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        _log.warning(
            "aws call throttled, backing off",
            operation=operation,
            code=error_code(error) if error is not None else None,
            attempt=state.attempt_number,
            wait_s=round(wait, 3),
            **log_fields,
        )

    async def attempt() -> T:
        # tenacity awaits only what it recognises as coroutine functions; botocore's generated
        # methods and partials of them are not always recognised, so await explicitly.
        return await call()

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_throttling),
        wait=backoff.strategy(),
        stop=stop_never,
        sleep=anyio.sleep,
        before_sleep=log_retry,
        reraise=True,
    )
    return await retrying(attempt)
