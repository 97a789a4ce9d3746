"""Settling SQS messages in batches: ten entries a request, several requests at once, retries.

Entries the queue reports as failed are retried a few times with small jittered waits, unless SQS
says the caller is at fault (an expired receipt handle will not get better); a whole request that
fails (network, server error) is retried the same way. What still fails is logged with its message
ids and error codes and returned: settling never raises, the engine decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
from structlog.typing import FilteringBoundLogger

from poller.aws_calls import THROTTLING_BACKOFF, error_code
from poller.engine.backoff import Backoff
from poller.records import Record

__all__ = ["SqsOptions", "settle_in_batches"]

#: Entries per batch request (SQS's limit).
_MAX_ENTRIES: Final = 10
#: Waits between attempts of a settle request: full jitter from 50 ms, at most 1 s.
_SETTLE_BACKOFF: Final = Backoff(0.05, 1.0, full_jitter=True)

#: One batch request: its entries in, SQS's answer (``Successful``, ``Failed``) out.
BatchCall = Callable[[list[dict[str, Any]]], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class SqsOptions:
    """How an SQS source talks to its queue; the defaults suit AWS and moto alike."""

    #: Waits between throttled attempts (retried forever).
    backoff: Backoff = THROTTLING_BACKOFF
    #: Attempts per delete / change-visibility request before its failing entries are returned.
    settle_attempts: int = 3
    #: Jittered waits between those attempts.
    settle_backoff: Backoff = _SETTLE_BACKOFF
    #: Batch requests (ten entries each) one delete or change-visibility sends at the same time.
    settle_concurrency: int = 8

    def __post_init__(self) -> None:
        problems = []
        if self.settle_attempts < 1:
            problems.append(f"settle_attempts {self.settle_attempts!r} (allowed >= 1)")
        if self.settle_concurrency < 1:
            problems.append(f"settle_concurrency {self.settle_concurrency!r} (allowed >= 1)")
        if problems:
            raise ValueError("invalid SQS options: " + "; ".join(problems))


async def settle_in_batches(
    call: BatchCall,
    records: Sequence[Record],
    extra: Mapping[str, Any],
    *,
    options: SqsOptions,
    log: FilteringBoundLogger,
    operation: str,
) -> list[Record]:
    """Settle ``records`` with ``call`` (each entry gets ``extra``); return those that failed."""
    chunks = [records[i : i + _MAX_ENTRIES] for i in range(0, len(records), _MAX_ENTRIES)]
    settle = _ChunkSettler(call, extra, options, log, operation)
    if len(chunks) == 1:
        return await settle(chunks[0])
    results: list[list[Record]] = [[] for _ in chunks]
    limiter = anyio.CapacityLimiter(options.settle_concurrency)

    async def run(index: int) -> None:
        async with limiter:
            results[index] = await settle(chunks[index])

    async with anyio.create_task_group() as group:
        for index in range(len(chunks)):
            group.start_soon(run, index)
    return [record for failed in results for record in failed]


@dataclass(frozen=True, slots=True)
class _ChunkSettler:
    call: BatchCall
    extra: Mapping[str, Any]
    options: SqsOptions
    log: FilteringBoundLogger
    operation: str

    async def __call__(self, chunk: Sequence[Record]) -> list[Record]:
        """One batch request of at most ten entries, with retries; returns what still failed."""
        operation, extra = self.operation, self.extra
        pending = {str(index): record for index, record in enumerate(chunk)}
        given_up: set[str] = set()
        errors: dict[str, str] = {}
        attempts = self.options.settle_attempts
        for attempt in range(1, attempts + 1):
            entries = [
                {"Id": entry_id, "ReceiptHandle": record.native["ReceiptHandle"], **extra}
                for entry_id, record in pending.items()
            ]
            try:
                response = await self.call(entries)
            except Exception as error:
                code = error_code(error) or type(error).__name__
                errors.update(dict.fromkeys(pending, code))
            else:
                succeeded = {str(entry.get("Id")) for entry in response.get("Successful") or ()}
                reported: dict[str, Mapping[str, Any]] = {
                    str(entry.get("Id")): entry for entry in response.get("Failed") or ()
                }
                retry: dict[str, Record] = {}
                for entry_id, record in pending.items():
                    if entry_id in succeeded:
                        errors.pop(entry_id, None)
                        continue
                    failure = reported.get(entry_id)
                    errors[entry_id] = str(failure.get("Code")) if failure else "NotReported"
                    if failure is not None and failure.get("SenderFault"):
                        given_up.add(entry_id)  # the caller's fault: a retry cannot help
                    else:
                        retry[entry_id] = record
                pending = retry
            if not pending:
                break
            if attempt < attempts:
                self.log.debug(
                    "retrying failed entries",
                    operation=operation,
                    message_ids=[record.position for record in pending.values()],
                    attempt=attempt,
                )
                await anyio.sleep(self.options.settle_backoff.delay(attempt))
        failed_ids = sorted({*pending, *given_up}, key=int)
        if not failed_ids:
            return []
        failed = [chunk[int(entry_id)] for entry_id in failed_ids]
        self.log.warning(
            "messages could not be settled",
            operation=operation,
            failed={chunk[int(entry_id)].position: errors.get(entry_id) for entry_id in failed_ids},
        )
        return failed
