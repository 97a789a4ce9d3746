"""Property tests of the queue engine over random handler behaviour (SQS semantics, in memory).

Invariants:
* every message ends deleted after it succeeded, or dead-lettered / in the destination: none lost;
* a message is only deleted after the handler succeeded with it (or it went to the destination);
* FIFO: within a group, a message is never handed over while an earlier message of the group is
  still unsettled, and successes happen in send order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import anyio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poller.functions import target_for
from poller.records import Batch, Record
from poller.testing import MemoryQueue
from tests.kit import RecordingSink, RecordingStore, queue_runner, run_until
from tests.unit.test_queue_engine import sqs_mapping

_ticks = itertools.count()


class LoggedQueue(MemoryQueue):
    """Logs deletions and dead-letter moves with a logical time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deleted_at: dict[str, int] = {}

    async def delete(self, records: Sequence[Record]) -> Sequence[Record]:
        failed = await super().delete(records)
        now = next(_ticks)
        bad = {id(r) for r in failed}
        for record in records:
            if id(record) not in bad:
                self.deleted_at.setdefault(record.position, now)
        return failed

    def dead_lettered_at(self) -> dict[str, int]:
        return {m.message_id: -1 for m in self.dead_letters}


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    fifo = draw(st.booleans())
    groups = draw(st.integers(1, 3)) if fifo else 1
    count = draw(st.integers(1, 12))
    messages = [(f"g{draw(st.integers(0, groups - 1))}", n) for n in range(count)]
    failures = {n: draw(st.sampled_from([0, 0, 0, 1, 2, 99])) for _, n in messages}
    return {
        "fifo": fifo,
        "messages": messages,
        "failures": failures,
        "batch_size": draw(st.integers(1, 10)),
        "partial": draw(st.booleans()),
        # A careless FIFO handler reports only the failed message, not the rest of its group:
        # the engine must still hold the group back.
        "stops_group": draw(st.booleans()),
        "destination": draw(st.booleans()),
        "idempotency": draw(st.booleans()),
        "concurrency": draw(st.sampled_from([2, 3, 10])),
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example(
    {  # a FIFO handler that reports only its failed message: the group must still be held back
        "fifo": True,
        "messages": [("g0", 0), ("g0", 1), ("g0", 2)],
        "failures": {0: 1, 1: 0, 2: 0},
        "batch_size": 10,
        "partial": True,
        "stops_group": False,
        "destination": False,
        "idempotency": False,
        "concurrency": 2,
    }
)
def test_queue_invariants(scenario: dict[str, Any]) -> None:
    fifo = scenario["fifo"]
    queue = LoggedQueue(fifo=fifo, visibility_timeout=0.05, max_receive_count=3)
    ids: dict[str, int] = {}
    group_of: dict[str, str] = {}
    for group, n in scenario["messages"]:
        message_id = queue.send(f"{n}", group=group if fifo else None)
        ids[message_id] = n
        group_of[message_id] = group
    deliveries: dict[str, int] = {}
    handed: list[tuple[int, str]] = []
    succeeded_at: dict[str, int] = {}

    async def handler(batch: Batch) -> list[Record]:
        start = next(_ticks)
        failed: list[Record] = []
        stopped: set[str] = set()
        for record in batch:
            handed.append((start, record.position))
            deliveries[record.position] = deliveries.get(record.position, 0) + 1
            n = ids[record.position]
            own_failure = deliveries[record.position] <= scenario["failures"][n]
            if own_failure or (scenario["stops_group"] and record.partition in stopped):
                stopped.add(record.partition)
                failed.append(record)
        if failed and not scenario["partial"]:
            raise RuntimeError("whole batch fails")
        end = next(_ticks)
        for record in batch:
            if record not in failed:
                succeeded_at.setdefault(record.position, end)
        return failed

    fields: dict[str, Any] = {
        "BatchSize": scenario["batch_size"],
        "ScalingConfig": {"MaximumConcurrency": scenario["concurrency"]},
        "RetryBackoffSeconds": 0.01,
        "RetryBackoffMaxSeconds": 0.02,
        "Idempotency": scenario["idempotency"],
    }
    sink = RecordingSink() if scenario["destination"] else None
    if sink is not None:
        fields["MaximumRetryAttempts"] = 1
        fields["DestinationConfig"] = {
            "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:failures"}
        }
    mapping = sqs_mapping(fifo=fifo, **fields)
    runner = queue_runner(
        mapping,
        queue,
        target_for(handler, queue, report_batch_item_failures=False),
        sink=sink,
        store=RecordingStore(),
    )

    async def main() -> None:
        await run_until(
            runner, lambda: not (queue.remaining or runner.in_flight), within=30, every=0.005
        )

    anyio.run(main)

    discarded = {r.position for _, d in (sink.discards if sink else []) for r in d.records}
    dead = {m.message_id for m in queue.dead_letters}
    for message_id in ids:
        assert message_id in queue.deleted_at or message_id in dead, f"{message_id} lost"
        if message_id in queue.deleted_at and message_id not in discarded:
            assert message_id in succeeded_at, f"{message_id} deleted without succeeding"
    if fifo:
        # Within a group, messages are settled (deleted) in send order.
        for group in set(group_of.values()):
            members = sorted((n, m) for m, n in ids.items() if group_of[m] == group)
            times = [queue.deleted_at[m] for _, m in members if m in queue.deleted_at]
            assert times == sorted(times), f"group {group} settled out of order: {members}"
        for message_id, n in ids.items():
            group = group_of[message_id]
            earlier = [m for m, k in ids.items() if group_of[m] == group and k < n]
            for start, handed_id in handed:
                if handed_id != message_id:
                    continue
                for other in earlier:
                    settled = queue.deleted_at.get(other)
                    if other in dead:
                        continue
                    assert (settled is not None and settled < start) or any(
                        s == start and h == other for s, h in handed
                    ), f"{message_id} handed over while earlier {other} of {group} was unsettled"
