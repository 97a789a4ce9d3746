"""Settling SQS-style queues, whose received messages stay hidden for a visibility timeout.

The rules are AWS's for SQS:

* Success: every message is deleted.
* Partial response (``itemIdentifier`` = message id): the others are deleted, only the listed ones
  go back. On a FIFO queue the first failed message of a group *and every later message of that
  group in the batch* go back, so the group is never settled past a failure; other groups go on.
* Failure (exception, timeout, bad response): every message goes back (on FIFO, per group, which is
  all of them).
* Messages go back the AWS way by default: they stay invisible until the visibility timeout ends.
  With ``RetryBackoffSeconds`` set they are made visible after a backoff growing with their receive
  count; on a FIFO queue they are always made visible explicitly (at once without a backoff), so the
  group is retried in order.
* While the handler runs, a heartbeat extends the visibility of the batch's messages, so they never
  reappear mid-processing (``VisibilityHeartbeat = false`` turns it off, as AWS).
* With idempotency on, messages that already succeeded (by message id) are deleted unseen; with an
  on-failure destination and ``MaximumRetryAttempts`` N, a message received more than N+1 times is
  recorded there and deleted. Without one, the queue's redrive policy moves it to its DLQ.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence

import anyio

from poller.engine.backoff import Backoff
from poller.engine.batching import split_by_payload
from poller.engine.discard import RETRY_ATTEMPTS_EXHAUSTED, Discard
from poller.engine.invocation import invoke
from poller.engine.protocols import VisibilityQueue
from poller.engine.queues.processor import QueueProcessor, failure_reason, split_by_outcome
from poller.records import Record

__all__ = ["VisibilityProcessor"]

#: SQS's longest visibility timeout.
_MAX_VISIBILITY = 43200


class VisibilityProcessor(QueueProcessor[VisibilityQueue]):
    """Processes one poller's batches from a visibility-timeout queue; keeps them hidden."""

    @functools.cached_property
    def _backoff(self) -> Backoff:
        """How long a failed message stays hidden before it comes again (RetryBackoffSeconds)."""
        return Backoff(self._mapping.retry_backoff, self._mapping.retry_backoff_max)

    # --- keeping messages hidden ---------------------------------------------------------------

    async def run_alongside(self) -> None:
        """The heartbeat: extend held messages' visibility every third of the timeout (forever).

        A third leaves two ticks of margin: a message received just after a tick is extended well
        before its visibility runs out, even with a 1 s timeout.
        """
        timeout = self._info.visibility_timeout
        interval = max(0.2, timeout / 3)
        extend_to = min(max(timeout, 1.0), _MAX_VISIBILITY)
        while True:
            await anyio.sleep(interval)
            if not self._held or not self._mapping.visibility_heartbeat:
                continue
            async with self._settling:
                held = list(self._held)
                if not held:
                    continue
                failed = await self._source.change_visibility(held, extend_to)
            if failed:
                self._log.warning(
                    "visibility heartbeat failed for some messages; they may be handed over again",
                    messages=[r.position for r in failed],
                )

    async def release(self, records: Sequence[Record]) -> None:
        """Messages received but never handed over: visible again at once."""
        self.release_all()
        if records:
            await self._source.change_visibility(records, 0)

    # --- processing ----------------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> None:
        """Settle a received batch; split by the payload cap first.

        On a FIFO queue a group that failed in one part goes back whole: its messages in the
        later parts are returned without being handed over.
        """
        failed_groups: set[str] = set()
        try:
            for part in split_by_payload(records, self._mapping.max_payload_bytes):
                if failed_groups:
                    held_back = [r for r in part if r.partition in failed_groups]
                    if held_back:
                        await self._give_back(held_back)
                        part = [r for r in part if r.partition not in failed_groups]
                failed = await self._process(part)
                if self._info.fifo:
                    failed_groups.update(r.partition for r in failed)
        finally:
            self._held.clear()

    async def _process(self, records: list[Record]) -> list[Record]:
        """Settle one part of a batch; return the messages that went back."""
        records, known = await self._known_succeeded(records)
        if known:
            await self._delete(known)
        if self._context.sink is not None and self._mapping.maximum_retry_attempts >= 0:
            records = await self._discard_exhausted(records)
        if not records:
            return []
        attempt = max(self._source.receive_count(r) for r in records)
        outcome, request_id = await invoke(self._context, "", records, attempt=attempt)
        succeeded, failed = split_by_outcome(records, outcome, fifo=self._info.fifo)
        if failed:
            self._log.warning(
                "messages failed",
                batch=request_id,
                failed=len(failed),
                messages=len(records),
                reason=failure_reason(outcome, "partial response"),
            )
        if succeeded:
            await self._remember_succeeded(succeeded)
            await self._delete(succeeded)
        if failed:
            await self._give_back(failed)
        return failed

    async def _discard_exhausted(self, records: list[Record]) -> list[Record]:
        """Send messages received more than MaximumRetryAttempts + 1 times to the destination."""
        if not records:
            return records
        limit = self._mapping.maximum_retry_attempts + 1
        count = self._source.receive_count
        exhausted = [r for r in records if count(r) > limit]
        if not exhausted:
            return records
        if self._info.fifo:
            # A group is settled in order: its later messages wait for the next delivery.
            first_bad: dict[str, int] = {}
            for index, record in enumerate(records):
                if count(record) > limit:
                    first_bad.setdefault(record.partition, index)
            exhausted = [
                r
                for i, r in enumerate(records)
                if count(r) > limit and i == first_bad.get(r.partition)
            ]
        discard = Discard(
            mapping_id=self._mapping.mapping_id,
            partition="",
            records=tuple(exhausted),
            condition=RETRY_ATTEMPTS_EXHAUSTED,
            invoke_count=max(count(r) - 1 for r in exhausted),
            request_id=str(uuid.uuid4()),
            response=None,
            timestamp=self._context.clock(),
        )
        if not await self._deliver(discard):
            return []  # stopping: the messages come back after their visibility timeout
        await self._delete(exhausted)
        ids = {id(r) for r in exhausted}
        return [r for r in records if id(r) not in ids]

    # --- settling ------------------------------------------------------------------------------

    async def settle_filtered(self, records: Sequence[Record]) -> None:
        await self._delete(records)

    async def _delete(self, records: Sequence[Record]) -> None:
        self._count_deleted(records, await self._settle(records, self._source.delete))

    async def _give_back(self, records: Sequence[Record]) -> None:
        """Return failed messages to the queue: after a backoff, at once (FIFO), or by timeout."""
        if self._backoff.initial > 0:
            by_delay: dict[int, list[Record]] = {}
            for record in records:
                delay = self._backoff.delay(self._source.receive_count(record))
                by_delay.setdefault(min(_MAX_VISIBILITY, round(delay)), []).append(record)
            for delay, group in by_delay.items():
                await self._change_visibility(group, delay)
        elif self._info.fifo:
            await self._change_visibility(records, 0)
        else:
            # Standard queue without a backoff: the messages reappear after the visibility
            # timeout, as in AWS; the heartbeat lets go of them.
            async with self._settling:
                self._unhold(records)

    async def _change_visibility(self, records: Sequence[Record], seconds: int) -> None:
        async with self._settling:
            self._unhold(records)
            failed = await self._source.change_visibility(records, seconds)
        if failed:
            self._log.warning(
                "could not change visibility; messages reappear after the visibility timeout",
                messages=[r.position for r in failed],
            )
