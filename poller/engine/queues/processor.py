"""What settling a queue batch always involves, whichever way the queue settles.

One processor serves one poller. It keeps the messages the poller holds (received and not yet
settled), skips messages an idempotency store knows succeeded, remembers the ones that do, and
delivers discards; the two settlement strategies add their own rules on top:
:mod:`~poller.engine.queues.visibility` (SQS) and :mod:`~poller.engine.queues.acknowledgement`
(message brokers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
import structlog

from poller.engine.discard import Discard, deliver_discard
from poller.engine.invocation import InvocationContext
from poller.engine.outcome import Failed, Outcome, PartiallyFailed, Succeeded
from poller.engine.protocols import QueueInfo, QueueReader
from poller.errors import during
from poller.records import Record

__all__ = ["IDEMPOTENCY_PARTITION", "QueueProcessor", "failure_reason", "split_by_outcome"]

SourceT = TypeVar("SourceT", bound=QueueReader)

#: Idempotency records of a queue mapping are kept under one partition name (message ids are
#: unique per queue).
IDEMPOTENCY_PARTITION = "queue"


def split_by_outcome(
    records: Sequence[Record], outcome: Outcome, *, fifo: bool
) -> tuple[list[Record], list[Record]]:
    """(succeeded, failed) messages of a batch for an outcome, with FIFO's group rule."""
    if isinstance(outcome, Succeeded):
        return list(records), []
    if not isinstance(outcome, PartiallyFailed):
        return [], list(records)
    failed_indexes = set(outcome.failed)
    if not fifo:
        succeeded = [r for i, r in enumerate(records) if i not in failed_indexes]
        failed = [r for i, r in enumerate(records) if i in failed_indexes]
        return succeeded, failed
    blocked_groups: set[str] = set()
    succeeded, failed = [], []
    for index, record in enumerate(records):
        if index in failed_indexes or record.partition in blocked_groups:
            blocked_groups.add(record.partition)
            failed.append(record)
        else:
            succeeded.append(record)
    return succeeded, failed


def failure_reason(outcome: Outcome, partial: str) -> str:
    """What a log line says about an outcome that was not a full success."""
    return outcome.reason if isinstance(outcome, Failed) else partial


class QueueProcessor(Generic[SourceT]):
    """The shared half of a poller's settlement (see the module docstring)."""

    def __init__(
        self, context: InvocationContext, source: SourceT, info: QueueInfo, *, stopping: anyio.Event
    ) -> None:
        self._context = context
        self._source = source
        self._mapping = context.mapping
        self._info = info
        self._counters = context.counters
        self._stopping = stopping
        self._held: list[Record] = []
        # Settling and anything else that touches held messages (the visibility heartbeat)
        # never overlap: a message leaves ``_held`` before it is settled.
        self._settling = anyio.Lock()
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=self._mapping.mapping_id, queue=self._mapping.source_label
        )

    # --- held messages -----------------------------------------------------------------------

    def hold(self, records: Sequence[Record]) -> None:
        """Messages just received: held until they are settled."""
        self._held.extend(records)

    def release_all(self) -> None:
        """Forget held messages (they were given back)."""
        self._held.clear()

    def _unhold(self, records: Sequence[Record]) -> None:
        settled = {id(r) for r in records}
        self._held = [r for r in self._held if id(r) not in settled]

    async def _settle(
        self,
        records: Sequence[Record],
        verb: Callable[[Sequence[Record]], Awaitable[Sequence[Record] | None]],
    ) -> Sequence[Record]:
        """Let go of ``records`` and settle them with ``verb``; return the ones that failed."""
        async with self._settling:
            self._unhold(records)
            with during("settling messages"):
                return await verb(records) or ()

    def _count_deleted(self, records: Sequence[Record], failed: Sequence[Record]) -> None:
        """Count settled messages (DeletedEventCount); log those that will come again."""
        self._counters.deleted_events += len(records) - len(failed)
        if failed:
            self._counters.delete_errors += len(failed)
            self._log.error(
                "messages could not be deleted; they will be delivered again",
                messages=[r.position for r in failed],
            )

    async def run_alongside(self) -> None:
        """What runs next to the poller while it lives (nothing, unless a strategy needs it)."""

    async def process(self, records: Sequence[Record]) -> None:
        """Hand a received batch over and settle every message of it."""
        raise NotImplementedError

    async def release(self, records: Sequence[Record]) -> None:
        """Give back messages that were received but never handed over."""
        raise NotImplementedError

    async def settle_filtered(self, records: Sequence[Record]) -> None:
        """Settle held messages that matched no filter as done: SQS deletes them, a broker
        acknowledges them, as Lambda does; none reaches the function."""
        raise NotImplementedError

    # --- idempotency ---------------------------------------------------------------------------

    async def _known_succeeded(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        """(messages to process, messages an idempotency store knows succeeded)."""
        store = self._context.idempotency
        if store is None or not records:
            return records, []
        with during("reading idempotency records"):
            known = await store.succeeded_among(
                self._mapping.mapping_id, IDEMPOTENCY_PARTITION, [r.position for r in records]
            )
        if not known:
            return records, []
        again = [r for r in records if r.position in known]
        self._counters.idempotent_skipped_events += len(again)
        self._log.info("deleted messages that already succeeded", messages=len(again))
        return [r for r in records if r.position not in known], again

    async def _remember_succeeded(self, records: Sequence[Record]) -> None:
        store = self._context.idempotency
        if store is not None and records:
            with during("writing idempotency records"):
                await store.remember_succeeded(
                    self._mapping.mapping_id,
                    IDEMPOTENCY_PARTITION,
                    [r.position for r in records],
                    self._context.clock() + self._mapping.idempotency_ttl,
                )

    # --- discards ------------------------------------------------------------------------------

    async def _deliver(self, discard: Discard) -> bool:
        """Send a discard to the mapping's destination; False only when stopping first."""
        assert self._context.sink is not None
        return await deliver_discard(
            self._context.sink,
            discard,
            stopping=self._stopping,
            counters=self._counters,
            log=self._log,
        )
