"""The Worker in a host asyncio service, with an in-memory source (no server needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from poller import Batch, ConfigError, StoreError, Worker, parse_config
from poller.errors import SourceError
from poller.testing import MemorySource
from tests.kit import KINESIS_ARN as ARN
from tests.kit import RecordingStore
from tests.unit.engine_harness import fill


def config(**mapping_fields: Any) -> Any:
    fields = {"UUID": "orders", "EventSourceArn": ARN, "StartingPosition": "TRIM_HORIZON"}
    fields.update(mapping_fields)
    return parse_config(
        {
            "store": {"url": "memory://"},
            "worker": {"idle_poll_seconds": 0.01, "idempotency_purge_seconds": 1},
            "mappings": [fields],
        }
    )


async def test_host_service_starts_and_stops_the_worker_in_its_own_loop() -> None:
    source = fill([4, 4])
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        seen.extend(f"{r.partition}:{r.position}" for r in batch)

    worker = Worker(config(), handlers={"orders": handle}, sources={"orders": source})
    await worker.start()
    try:
        async with asyncio.timeout(10):
            while not worker.idle:
                await asyncio.sleep(0.01)
        status = worker.status()["orders"]
        assert {p["checkpoint"] for p in status["partitions"].values()} == {"4"}
        assert status["metrics"]["PolledEventCount"] == 8
        assert status["metrics"]["InvokedEventCount"] == 8
    finally:
        await worker.stop_and_wait()
    assert len(seen) == 8


async def test_run_exits_when_idle_and_purges_expired_idempotency_records() -> None:
    class CountingStore(RecordingStore):
        purges = 0

        async def purge_expired(self, now: float) -> int:
            CountingStore.purges += 1
            return await super().purge_expired(now)

    store = CountingStore()
    await store.remember_succeeded("orders", "shardId-x", ["1"], expires_at=0.0)

    async def handle(batch: Batch) -> None:
        return None

    worker = Worker(
        config(Idempotency=True),
        handlers={"orders": handle},
        sources={"orders": fill([3])},
        store=store,
    )
    async with asyncio.timeout(10):
        await worker.run(exit_when_idle=0.1)
    assert worker.stopped_by_idle
    assert CountingStore.purges >= 1
    assert store.succeeded_snapshot("orders") == {
        ("shardId-000000000000", "1"),
        ("shardId-000000000000", "2"),
        ("shardId-000000000000", "3"),
    }


async def test_async_context_manager_form() -> None:
    source = MemorySource([], arn=ARN)

    async def handle(batch: Batch) -> None:
        return None

    async with Worker(config(), handlers={"orders": handle}, sources={"orders": source}) as worker:
        assert worker.runners and worker.runners[0].mapping.mapping_id == "orders"


def test_a_mapping_without_handler_is_refused_before_anything_starts() -> None:
    with pytest.raises(
        ConfigError, match="no FunctionName or Handler given and no handler registered"
    ):
        Worker(config())


def test_handlers_for_unknown_mappings_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown mappings: typo"):
        Worker(config(), handlers={"orders": lambda b: None, "typo": lambda b: None})


def test_an_unimportable_handler_is_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match=r"mappings\[0\].Handler: .*not found"):
        Worker(config(Handler="no_such_module_abc:handle"))


async def test_a_mapping_whose_store_fails_is_never_idle() -> None:
    """A checkpoint that cannot be written leaves records unsettled: --exit-when-idle must not
    take the mapping for caught up (it used to exit 0 after the partition crashed)."""

    class BrokenStore(RecordingStore):
        async def put_checkpoint(self, *args: Any) -> None:
            raise StoreError("disk is read-only")

        async def put_checkpoint_fenced(self, *args: Any) -> bool:
            raise StoreError("disk is read-only")

    source = fill([3])

    async def handle(batch: Batch) -> None:
        return None

    worker = Worker(
        config(), handlers={"orders": handle}, sources={"orders": source}, store=BrokenStore()
    )
    await worker.start()
    try:
        async with asyncio.timeout(10):
            while (
                not worker.runners or worker.runners[0].status()["metrics"]["InvokedEventCount"] < 3
            ):
                await asyncio.sleep(0.01)
        for _ in range(20):  # the partition crashed; the mapping must not look caught up
            assert not worker.idle
            await asyncio.sleep(0.01)
    finally:
        await worker.stop_and_wait()


async def test_exit_when_idle_fails_naming_a_mapping_whose_source_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A script running ``--exit-when-idle`` against an unreachable endpoint gets an error with
    the reason after a bounded time, not a wait forever."""
    import poller.runtime.worker as worker_module

    monkeypatch.setattr(worker_module, "_SOURCE_ANSWER_SECONDS", 0.3)

    class Unreachable(MemorySource):
        async def list_partitions(self) -> Any:
            raise OSError("connection refused")

    async def handle(batch: Batch) -> None:
        raise AssertionError("nothing to hand over")

    source = Unreachable([], arn=ARN)
    worker = Worker(config(), handlers={"orders": handle}, sources={"orders": source})
    with pytest.raises(SourceError) as error:
        await asyncio.wait_for(worker.run(exit_when_idle=0.1), timeout=10)
    assert str(error.value).startswith("mapping orders: its source did not answer in 0.3 s (")
    assert worker.health.liveness().ok is False


async def test_exit_when_idle_with_every_mapping_disabled_is_an_error() -> None:
    async def handle(batch: Batch) -> None:
        raise AssertionError("disabled")

    worker = Worker(
        config(Enabled=False), handlers={"orders": handle}, sources={"orders": fill([1])}
    )
    with pytest.raises(ConfigError, match="every mapping is disabled"):
        await asyncio.wait_for(worker.run(exit_when_idle=0.1), timeout=10)
