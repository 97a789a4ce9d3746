"""Settling one received batch of queue messages, by AWS's rules for SQS.

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

A message broker's queue (RabbitMQ, ActiveMQ) has no partial responses and no visibility timeout:

* Success acknowledges the whole batch; any failure gives the whole batch back at once, and the
  source returns what it buffered with it, so the queue's order holds.
* A message delivered ``MaximumRedeliveries`` + 1 times that fails again is not given back: it
  goes to the on-failure destination (then acknowledged) when the mapping has one, else to the
  broker's dead-letter handling (RabbitMQ: the queue's dead-letter exchange; ActiveMQ: its DLQ).
  One that arrives already past that (the broker counted deliveries before a restart) is settled
  the same way before it is handed over.
* A message larger than the payload cap can never be handed over: it is dead-lettered at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import cast

import anyio
import structlog

from poller.config import ResolvedMapping
from poller.engine.backoff import Backoff
from poller.engine.invocation import deliver_discard, invoke
from poller.engine.metrics import MappingCounters
from poller.engine.outcome import Outcome, PartiallyFailed, Succeeded
from poller.engine.processor import RETRY_ATTEMPTS_EXHAUSTED
from poller.engine.protocols import (
    BrokerQueueSource,
    Discard,
    DiscardSink,
    IdempotencyStore,
    QueueInfo,
    QueueSource,
    ResponseContext,
    Target,
)
from poller.records import Record

__all__ = ["IDEMPOTENCY_PARTITION", "QueueBatchProcessor", "split_by_outcome"]

#: Idempotency records of a queue mapping are kept under one partition name (message ids are
#: unique per queue).
IDEMPOTENCY_PARTITION = "queue"
#: SQS's longest visibility timeout.
_MAX_VISIBILITY = 43200


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


class QueueBatchProcessor:
    """Processes the batches of one poller; also keeps its messages invisible while held."""

    def __init__(
        self,
        *,
        mapping: ResolvedMapping,
        source: QueueSource,
        info: QueueInfo,
        target: Target,
        sink: DiscardSink | None,
        idempotency: IdempotencyStore | None,
        counters: MappingCounters,
        stopping: anyio.Event,
        function_name: str,
        function_arn: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mapping = mapping
        self._source = source
        self._info = info
        self._target = target
        self._sink = sink
        self._idempotency = idempotency if mapping.idempotency else None
        self._counters = counters
        self._stopping = stopping
        self._function_name = function_name
        self._function_arn = function_arn
        self._clock = clock
        self._backoff = Backoff(mapping.retry_backoff, mapping.retry_backoff_max)
        self._held: list[Record] = []
        # Heartbeat requests and settlement never overlap: a message is dropped from ``_held``
        # before it is deleted or given back, so no extension ever lands after its settlement.
        self._settling = anyio.Lock()
        self._log = structlog.get_logger("poller.engine").bind(
            mapping=mapping.mapping_id, queue=mapping.source_label
        )

    # --- heartbeat ---------------------------------------------------------------------------------

    def hold(self, records: Sequence[Record]) -> None:
        """Messages just received: the heartbeat keeps them invisible until they are settled."""
        self._held.extend(records)

    def release_all(self) -> None:
        """Forget held messages (they were given back): the heartbeat stops extending them."""
        self._held.clear()

    async def heartbeat(self) -> None:
        """Extend held messages' visibility every third of the visibility timeout (runs forever).

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

    def _unhold(self, records: Sequence[Record]) -> None:
        settled = {id(r) for r in records}
        self._held = [r for r in self._held if id(r) not in settled]

    # --- processing --------------------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> None:
        """Settle a received batch; split by the payload cap first.

        On a FIFO queue a group that failed in one part goes back whole: its messages in the
        later parts are returned without being handed over.
        """
        if self._info.broker:
            try:
                for chunk in self._chunks(records):
                    await self._process_from_broker(chunk)
            finally:
                self._held.clear()
            return
        failed_groups: set[str] = set()
        try:
            for chunk in self._chunks(records):
                if failed_groups:
                    held_back = [r for r in chunk if r.partition in failed_groups]
                    if held_back:
                        await self._give_back(held_back)
                        chunk = [r for r in chunk if r.partition not in failed_groups]
                failed = await self._process(chunk)
                if self._info.fifo:
                    failed_groups.update(r.partition for r in failed)
        finally:
            self._held.clear()

    def _chunks(self, records: Sequence[Record]) -> list[list[Record]]:
        cap = self._mapping.max_payload_bytes
        chunks: list[list[Record]] = [[]]
        total = 0
        for record in records:
            if chunks[-1] and total + record.size > cap:
                chunks.append([])
                total = 0
            chunks[-1].append(record)
            total += record.size
        return [c for c in chunks if c]

    async def _process(self, records: list[Record]) -> list[Record]:
        """Settle one part of a batch; return the messages that went back."""
        if self._idempotency is not None and records:
            records = await self._skip_succeeded(records)
        if self._sink is not None and self._mapping.maximum_retry_attempts >= 0 and records:
            records = await self._discard_exhausted(records)
        if not records:
            return []
        attempt = max(self._source.receive_count(r) for r in records)
        outcome, request_id = await invoke(
            self._target,
            self._mapping,
            "",
            records,
            attempt=attempt,
            function_name=self._function_name,
            function_arn=self._function_arn,
            counters=self._counters,
        )
        succeeded, failed = split_by_outcome(records, outcome, fifo=self._info.fifo)
        if failed:
            self._log.warning(
                "messages failed",
                batch=request_id,
                failed=len(failed),
                messages=len(records),
                reason=getattr(outcome, "reason", "partial response"),
            )
        if succeeded:
            if self._idempotency is not None:
                await self._idempotency.remember_succeeded(
                    self._mapping.mapping_id,
                    IDEMPOTENCY_PARTITION,
                    [r.position for r in succeeded],
                    self._clock() + self._mapping.idempotency_ttl,
                )
            await self._delete(succeeded)
        if failed:
            await self._give_back(failed)
        return failed

    async def _process_from_broker(self, records: list[Record]) -> None:
        """Settle one part of a broker batch: ack on success, else give it all back or give up."""
        broker = cast(BrokerQueueSource, self._source)
        cap = self._mapping.max_payload_bytes
        too_large = [r for r in records if r.size > cap]
        if too_large:
            for record in too_large:
                self._log.error(
                    "message larger than the invocation payload cap dead-lettered",
                    message=record.position,
                    size=record.size,
                    cap=cap,
                )
            await self._dead_letter(too_large)
            records = [r for r in records if r.size <= cap]
        if self._idempotency is not None and records:
            records = await self._skip_succeeded(records)
        limit = self._mapping.maximum_redeliveries + 1
        count = broker.receive_count
        exhausted = [r for r in records if count(r) > limit]
        if exhausted:
            await self._give_up(exhausted, None, str(uuid.uuid4()))
            records = [r for r in records if count(r) <= limit]
        if not records:
            return
        outcome, request_id = await invoke(
            self._target,
            self._mapping,
            "",
            records,
            attempt=max(count(r) for r in records),
            function_name=self._function_name,
            function_arn=self._function_arn,
            counters=self._counters,
        )
        if isinstance(outcome, Succeeded):
            if self._idempotency is not None:
                await self._idempotency.remember_succeeded(
                    self._mapping.mapping_id,
                    IDEMPOTENCY_PARTITION,
                    [r.position for r in records],
                    self._clock() + self._mapping.idempotency_ttl,
                )
            await self._delete(records)
            return
        reason = getattr(outcome, "reason", "partial response (not supported for MQ)")
        self._log.warning("batch failed", batch=request_id, messages=len(records), reason=reason)
        # Give up on the exhausted ones before the rest goes back: giving back may return every
        # unsettled message of the consumer (ActiveMQ resubscribes).
        exhausted = [r for r in records if count(r) >= limit]
        if exhausted:
            error = getattr(outcome, "function_error", "Unhandled")
            await self._give_up(exhausted, ResponseContext(function_error=error), request_id)
        retry = [r for r in records if count(r) < limit]
        if retry:
            await self._change_visibility(retry, 0)

    async def _give_up(
        self, records: list[Record], response: ResponseContext | None, request_id: str
    ) -> None:
        """Messages past MaximumRedeliveries: on-failure destination (then ack) or dead letter."""
        if self._sink is None:
            self._log.warning(
                "messages dead-lettered after too many deliveries",
                messages=[r.position for r in records],
                maximum_redeliveries=self._mapping.maximum_redeliveries,
            )
            await self._dead_letter(records)
            return
        count = self._source.receive_count
        discard = Discard(
            mapping_id=self._mapping.mapping_id,
            partition="",
            records=tuple(records),
            condition=RETRY_ATTEMPTS_EXHAUSTED,
            invoke_count=max(count(r) for r in records) - (1 if response is None else 0),
            request_id=request_id,
            response=response,
            timestamp=self._clock(),
        )
        delivered = await deliver_discard(
            self._sink, discard, stopping=self._stopping, counters=self._counters, log=self._log
        )
        if delivered:
            await self._delete(records)
        else:  # stopping: they go back and are recorded on their next delivery
            await self._change_visibility(records, 0)

    async def _dead_letter(self, records: Sequence[Record]) -> None:
        async with self._settling:
            self._unhold(records)
            failed = await cast(BrokerQueueSource, self._source).dead_letter(records)
        self._counters.dropped_events += len(records) - len(failed)
        if failed:
            self._log.error(
                "messages could not be dead-lettered; they will be delivered again",
                messages=[r.position for r in failed],
            )

    async def _skip_succeeded(self, records: list[Record]) -> list[Record]:
        assert self._idempotency is not None
        known = await self._idempotency.succeeded_among(
            self._mapping.mapping_id, IDEMPOTENCY_PARTITION, [r.position for r in records]
        )
        if not known:
            return records
        again = [r for r in records if r.position in known]
        self._counters.idempotent_skipped_events += len(again)
        self._log.info("deleted messages that already succeeded", messages=len(again))
        await self._delete(again)
        return [r for r in records if r.position not in known]

    async def _discard_exhausted(self, records: list[Record]) -> list[Record]:
        """Send messages received more than MaximumRetryAttempts + 1 times to the destination."""
        assert self._sink is not None
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
            timestamp=self._clock(),
        )
        delivered = await deliver_discard(
            self._sink, discard, stopping=self._stopping, counters=self._counters, log=self._log
        )
        if not delivered:
            return []  # stopping: the messages come back after their visibility timeout
        await self._delete(exhausted)
        ids = {id(r) for r in exhausted}
        return [r for r in records if id(r) not in ids]

    async def _delete(self, records: Sequence[Record]) -> None:
        async with self._settling:
            self._unhold(records)
            failed = await self._source.delete(records)
        self._counters.deleted_events += len(records) - len(failed)
        if failed:
            self._counters.delete_errors += len(failed)
            self._log.error(
                "messages could not be deleted; they will be delivered again",
                messages=[r.position for r in failed],
            )

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
