"""TumblingWindowInSeconds on the in-memory source: alignment, state between invocations, the final
invocation, early termination, failures, and a restart that resumes the window's state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from poller.config import parse_config
from poller.errors import ConfigError
from poller.records import Batch
from poller.stores.sqlite import SqliteStore
from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN as ARN
from tests.kit import mapping, stream_runner
from tests.kit.waits import run_until

SHARD = "shardId-000000000000"


def _base(length: int) -> int:
    """A window start well in the past, so every window can close on the clock."""
    return (int(time.time()) // length) * length - 10 * length


class Summing:
    """A Lambda-style handler that counts records per window and keeps every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        count = event["state"].get("n", 0) + len(event["Records"])
        return {"state": {"n": count}, "batchItemFailures": []}

    def summary(self) -> list[tuple[str, Any, int, bool, bool]]:
        return [
            (
                e["window"]["start"],
                e["state"],
                len(e["Records"]),
                e["isFinalInvokeForWindow"],
                e["isWindowTerminatedEarly"],
            )
            for e in self.events
        ]


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def test_windows_are_aligned_state_flows_and_each_window_ends_with_a_final_invoke() -> None:
    base = _base(10)
    partition = MemoryPartition(SHARD)
    partition.put(b"a", arrival=base + 1.5)
    partition.put(b"b", arrival=base + 9.9)
    partition.put(b"c", arrival=base + 10.0)  # the next window starts exactly here
    source = MemorySource([partition], arn=ARN)
    handler = Summing()
    runner = stream_runner(mapping(BatchSize=1, TumblingWindowInSeconds=10), source, handler)
    await run_until(runner, lambda: len(handler.events) >= 5)
    first, second = _iso(base), _iso(base + 10)
    assert handler.summary() == [
        (first, {}, 1, False, False),
        (first, {"n": 1}, 1, False, False),
        (first, {"n": 2}, 0, True, False),
        (second, {}, 1, False, False),
        (second, {"n": 1}, 0, True, False),
    ]


async def test_the_event_carries_exactly_the_window_fields() -> None:
    base = _base(60)
    partition = MemoryPartition(SHARD)
    record = partition.put(b"x", key="pk", arrival=base + 5)
    source = MemorySource([partition], arn=ARN)
    handler = Summing()
    runner = stream_runner(mapping(TumblingWindowInSeconds=60), source, handler)
    await run_until(runner, lambda: len(handler.events) >= 2)
    event, final = handler.events
    assert set(event) == {
        "Records",
        "window",
        "state",
        "shardId",
        "eventSourceARN",
        "isFinalInvokeForWindow",
        "isWindowTerminatedEarly",
    }
    assert event["window"] == {"start": _iso(base), "end": _iso(base + 60)}
    assert event["state"] == {}
    assert event["shardId"] == SHARD
    assert event["eventSourceARN"] == ARN
    assert event["isFinalInvokeForWindow"] is False
    assert event["isWindowTerminatedEarly"] is False
    assert event["Records"][0]["kinesis"]["sequenceNumber"] == record.position
    assert final["Records"] == [] and final["isFinalInvokeForWindow"] is True
    assert final["state"] == {"n": 1} and final["window"] == event["window"]


async def test_a_state_over_1_mb_ends_the_window_early_and_it_goes_on_fresh() -> None:
    base = _base(60)
    partition = MemoryPartition(SHARD)
    for arrival in (base + 1, base + 2):
        partition.put(b"x", arrival=arrival)
    source = MemorySource([partition], arn=ARN)
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        big = not event["state"] and event["Records"] and len(events) == 1
        return {"state": {"blob": "x" * (1024 * 1024 + 1)} if big else {"n": 1}}

    runner = stream_runner(mapping(BatchSize=1, TumblingWindowInSeconds=60), source, handler)
    await run_until(runner, lambda: len(events) >= 4)
    flags = [
        (len(e["Records"]), e["isFinalInvokeForWindow"], e["isWindowTerminatedEarly"])
        for e in events[:4]
    ]
    assert flags == [(1, False, False), (0, True, True), (1, False, False), (0, True, False)]
    assert len(events[1]["state"]["blob"]) == 1024 * 1024 + 1
    assert events[2]["state"] == {}  # the same window, with a fresh state
    assert {e["window"]["start"] for e in events[:4]} == {_iso(base)}


async def test_a_response_without_state_fails_and_the_batch_is_retried_with_the_same_state() -> (
    None
):
    base = _base(60)
    partition = MemoryPartition(SHARD)
    partition.put(b"x", arrival=base + 1)
    source = MemorySource([partition], arn=ARN)
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        if len(events) == 1:
            return {"batchItemFailures": []}  # no state: a failed invocation
        return {"state": {"n": len(event["Records"])}}

    resolved = mapping(TumblingWindowInSeconds=60)
    runner = stream_runner(resolved, source, handler)
    await run_until(runner, lambda: len(events) >= 3)
    assert [len(e["Records"]) for e in events[:3]] == [1, 1, 0]
    assert events[0]["state"] == events[1]["state"] == {}
    assert events[2]["state"] == {"n": 1}
    assert runner.counters.errors == 1


async def test_a_restart_mid_window_resumes_with_the_stored_state(tmp_path: Path) -> None:
    base = _base(60)
    partition = MemoryPartition(SHARD)
    for arrival in (base + 1, base + 2, base + 3):
        partition.put(b"x", arrival=arrival)
    source = MemorySource([partition], arn=ARN)
    resolved = mapping(BatchSize=1, TumblingWindowInSeconds=60)
    seen: list[dict[str, Any]] = []

    def failing_third(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        if len(seen) >= 3:
            raise RuntimeError("crash before the third record")
        return {"state": {"n": event["state"].get("n", 0) + 1}}

    store = SqliteStore(tmp_path / "state.db")
    await run_until(
        stream_runner(resolved, source, failing_third, store=store), lambda: len(seen) >= 3
    )
    await store.aclose()
    checkpoint = await _checkpoint(tmp_path, resolved.mapping_id)
    assert checkpoint.window_start == base and checkpoint.window_state == '{"n":2}'

    handler = Summing()
    store = SqliteStore(tmp_path / "state.db")
    await run_until(
        stream_runner(resolved, source, handler, store=store), lambda: len(handler.events) >= 2
    )
    await store.aclose()
    assert handler.summary()[:2] == [
        (_iso(base), {"n": 2}, 1, False, False),
        (_iso(base), {"n": 3}, 0, True, False),
    ]
    closed = await _checkpoint(tmp_path, resolved.mapping_id)
    assert closed.window_start is None and closed.window_state is None


async def _checkpoint(tmp_path: Path, mapping_id: str) -> Any:
    store = SqliteStore(tmp_path / "state.db")
    try:
        return await store.get_checkpoint(mapping_id, SHARD)
    finally:
        await store.aclose()


async def test_a_typed_handler_gets_a_failed_invocation_naming_the_reason() -> None:
    from poller.functions.typed import TYPED_WINDOW_REFUSAL

    base = _base(60)
    partition = MemoryPartition(SHARD)
    partition.put(b"x", arrival=base + 1)
    source = MemorySource([partition], arn=ARN)
    calls: list[Batch] = []

    async def typed(batch: Batch) -> None:
        calls.append(batch)

    resolved = mapping(TumblingWindowInSeconds=60, MaximumRetryAttempts=0)
    runner = stream_runner(resolved, source, typed)
    await run_until(runner, lambda: runner.counters.errors >= 1)
    assert calls == []
    assert "Lambda-style" in TYPED_WINDOW_REFUSAL


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ParallelizationFactor": 2}, "ParallelizationFactor to 1"),
        ({"TumblingWindowInSeconds": 901}, "TumblingWindowInSeconds"),
    ],
)
def test_config_refuses_what_windows_cannot_do(fields: dict[str, Any], message: str) -> None:
    base = {
        "EventSourceArn": ARN,
        "StartingPosition": "TRIM_HORIZON",
        "TumblingWindowInSeconds": 60,
        **fields,
    }
    with pytest.raises(ConfigError, match=message):
        parse_config({"mappings": [base]})


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_stores_keep_the_window_and_change_it_at_the_same_position(
    kind: str, tmp_path: Path
) -> None:
    from poller.engine.state import Checkpoint
    from poller.stores.memory import MemoryStore

    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "s.db")
    try:
        opened = Checkpoint("5", 5, window_start=60, window_state='{"n":1}')
        await store.put_checkpoint("m", SHARD, opened)
        assert await store.get_checkpoint("m", SHARD) == opened
        closed = Checkpoint("5", 5)  # the window closed at the same position
        await store.put_checkpoint("m", SHARD, closed)
        assert await store.get_checkpoint("m", SHARD) == closed
        await store.put_checkpoint("m", SHARD, Checkpoint("5", 5))  # nothing changes
        await store.put_checkpoint("m", SHARD, Checkpoint("4", 4, window_start=0))  # backwards
        assert await store.get_checkpoint("m", SHARD) == closed
    finally:
        await store.aclose()


async def test_a_version_2_sqlite_file_gains_the_window_columns(tmp_path: Path) -> None:
    import sqlite3

    from poller.engine.state import Checkpoint

    path = tmp_path / "old.db"
    store = SqliteStore(path)
    await store.put_checkpoint("m", SHARD, Checkpoint("7", 7))
    await store.aclose()
    raw = sqlite3.connect(path)
    with raw:  # as version 2 wrote it: no window columns
        raw.execute("ALTER TABLE checkpoints DROP COLUMN window_start")
        raw.execute("ALTER TABLE checkpoints DROP COLUMN window_state")
        raw.execute("UPDATE schema_version SET version = 2")
    raw.close()
    store = SqliteStore(path)
    try:
        assert await store.get_checkpoint("m", SHARD) == Checkpoint("7", 7)
        windowed = Checkpoint("7", 7, window_start=0, window_state="{}")
        await store.put_checkpoint("m", SHARD, windowed)
        assert await store.get_checkpoint("m", SHARD) == windowed
    finally:
        await store.aclose()


def test_a_worker_refuses_a_typed_handler_on_a_windowed_mapping_before_it_starts() -> None:
    """``poller validate`` and ``Worker(...)`` refuse it at once, naming the mapping."""
    from poller import ConfigError, Worker, parse_config
    from poller.functions.typed import TYPED_WINDOW_REFUSAL

    async def typed(batch: Batch) -> None:
        return None

    config = parse_config(
        {
            "store": {"url": "memory://"},
            "mappings": [
                {
                    "UUID": "w",
                    "EventSourceArn": ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "TumblingWindowInSeconds": 60,
                }
            ],
        }
    )
    with pytest.raises(ConfigError) as refused:
        Worker(config, handlers={"w": typed})
    assert refused.value.problems == [f"mappings[0]: {TYPED_WINDOW_REFUSAL}"]
