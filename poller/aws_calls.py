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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import anyio
import structlog
from botocore.exceptions import ClientError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from poller.engine.backoff import Backoff

__all__ = [
    "THROTTLING_BACKOFF",
    "THROTTLING_CODES",
    "ClientCalls",
    "call_with_backoff",
    "error_code",
    "error_codes",
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

#: Waits between throttled attempts: full jitter from 0.1 s, at most 5 s (frozen: safe to share).
THROTTLING_BACKOFF = Backoff(0.1, 5.0, full_jitter=True)

_log = structlog.get_logger(__name__)


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``"ThrottlingException"``), else None."""
    if not isinstance(error, ClientError):
        return None
    code = error.response.get("Error", {}).get("Code")
    return str(code) if code else None


def error_codes(error: BaseException) -> frozenset[str]:
    """Every code a ``ClientError`` carries, whole and by its last dotted part.

    Looks at ``Code`` and ``QueryErrorCode``: with the JSON protocol botocore puts SQS's
    query-compatible code in one and the modeled one in the other, and SQS spells some codes
    ``AWS.SimpleQueueService.NonExistentQueue``.
    """
    if not isinstance(error, ClientError):
        return frozenset()
    details = error.response.get("Error", {})
    codes: set[str] = set()
    for key in ("Code", "QueryErrorCode"):
        code = details.get(key)
        if code:
            codes.add(str(code))
            codes.add(str(code).rsplit(".", 1)[-1])
    return frozenset(codes)


def is_throttling(error: BaseException) -> bool:
    """Whether ``error`` is AWS asking the caller to slow down."""
    return not error_codes(error).isdisjoint(THROTTLING_CODES)


async def call_with_backoff(
    call: Callable[[], Awaitable[T]],
    *,
    operation: str,
    backoff: Backoff = THROTTLING_BACKOFF,
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
