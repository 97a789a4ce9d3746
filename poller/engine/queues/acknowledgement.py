"""Settling message-broker queues (RabbitMQ, ActiveMQ), which keep a message until it is settled.

A broker's queue has no partial responses and no visibility timeout:

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

import uuid
from collections.abc import Sequence

from poller.engine.batching import split_by_payload
from poller.engine.discard import RETRY_ATTEMPTS_EXHAUSTED, Discard, ResponseContext
from poller.engine.invocation import invoke
from poller.engine.outcome import Failed, Succeeded
from poller.engine.protocols import AckQueue
from poller.engine.queues.processor import QueueProcessor, failure_reason
from poller.records import Record

__all__ = ["AckProcessor"]


class AckProcessor(QueueProcessor[AckQueue]):
    """Processes one poller's batches from a broker queue: ack, give back or dead-letter."""

    async def release(self, records: Sequence[Record]) -> None:
        """Messages received but never handed over go back, no failure counted."""
        self.release_all()
        if records:
            await self._source.release(records)

    async def process(self, records: Sequence[Record]) -> None:
        """Settle a received batch, part by part under the payload cap."""
        try:
            for part in split_by_payload(records, self._mapping.max_payload_bytes):
                await self._process(part)
        finally:
            self._held.clear()

    async def _process(self, records: list[Record]) -> None:
        """Settle one part of a batch: ack on success, else give it all back or give up."""
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
        records, known = await self._known_succeeded(records)
        if known:
            await self._ack(known)
        limit = self._mapping.maximum_redeliveries + 1
        count = self._source.receive_count
        exhausted = [r for r in records if count(r) > limit]
        if exhausted:
            await self._give_up(exhausted, None, str(uuid.uuid4()))
            records = [r for r in records if count(r) <= limit]
        if not records:
            return
        attempt = max(count(r) for r in records)
        outcome, request_id = await invoke(self._context, "", records, attempt=attempt)
        if isinstance(outcome, Succeeded):
            await self._remember_succeeded(records)
            await self._ack(records)
            return
        reason = failure_reason(outcome, "partial response (not supported for MQ)")
        self._log.warning("batch failed", batch=request_id, messages=len(records), reason=reason)
        # Give up on the exhausted ones before the rest goes back: giving back may return every
        # unsettled message of the consumer (ActiveMQ resubscribes).
        exhausted = [r for r in records if count(r) >= limit]
        if exhausted:
            error = outcome.function_error if isinstance(outcome, Failed) else "Unhandled"
            await self._give_up(exhausted, ResponseContext(function_error=error), request_id)
        retry = [r for r in records if count(r) < limit]
        if retry:
            await self._give_back(retry)

    async def _give_up(
        self, records: list[Record], response: ResponseContext | None, request_id: str
    ) -> None:
        """Messages past MaximumRedeliveries: on-failure destination (then ack) or dead letter."""
        if self._context.sink is None:
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
            timestamp=self._context.clock(),
        )
        if await self._deliver(discard):
            await self._ack(records)
        else:  # stopping: they go back and are recorded on their next delivery
            await self._give_back(records)

    # --- settling ------------------------------------------------------------------------------

    async def settle_filtered(self, records: Sequence[Record]) -> None:
        await self._ack(records)

    async def _ack(self, records: Sequence[Record]) -> None:
        self._count_deleted(records, await self._settle(records, self._source.ack))

    async def _give_back(self, records: Sequence[Record]) -> None:
        await self._settle(records, self._source.give_back)

    async def _dead_letter(self, records: Sequence[Record]) -> None:
        failed = await self._settle(records, self._source.dead_letter)
        self._counters.dropped_events += len(records) - len(failed)
        if failed:
            self._log.error(
                "messages could not be dead-lettered; they will be delivered again",
                messages=[r.position for r in failed],
            )
