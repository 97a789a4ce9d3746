"""Targets: typed and Lambda-style handlers, threads for sync code, context, handler loading."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from poller.engine.invocation import Invocation
from poller.engine.outcome import Failed, PartiallyFailed, Succeeded
from poller.errors import HandlerImportError
from poller.functions import LambdaTarget, TypedTarget, load_handler, target_for
from poller.records import Batch, Record
from poller.testing import MemoryPartition, MemorySource

PARTITION = MemoryPartition("shardId-000000000000")
RECORDS = tuple(PARTITION.put(f"r{i}".encode(), key="k") for i in range(3))
SOURCE = MemorySource([PARTITION])


def batch() -> Batch:
    return Batch("m", PARTITION.id, RECORDS, "b-1")


def invocation(seconds: float = 5.0) -> Invocation:
    return Invocation("req-1", anyio.current_time() + seconds, "fn", "arn:aws:lambda:::function:fn")


async def test_sync_lambda_handler_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    def handler(event: dict[str, Any], context: Any) -> None:
        seen["thread"] = threading.get_ident()
        seen["ids"] = [r["eventID"] for r in event["Records"]]
        seen["context"] = (
            context.function_name,
            context.aws_request_id,
            context.invoked_function_arn,
            context.get_remaining_time_in_millis(),
        )
        time.sleep(0.05)  # blocking work must not block the loop

    target = target_for(handler, SOURCE, report_batch_item_failures=True)
    assert isinstance(target, LambdaTarget)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        outcome = await target.invoke(batch(), invocation())
        group.cancel_scope.cancel()
    assert outcome == Succeeded()
    assert seen["thread"] != loop_thread
    assert ticks >= 3, "the event loop was blocked while the sync handler ran"
    assert seen["ids"] == [f"{PARTITION.id}:{r.position}" for r in RECORDS]
    name, request_id, arn, remaining = seen["context"]
    assert (name, request_id, arn) == ("fn", "req-1", "arn:aws:lambda:::function:fn")
    assert 0 < remaining <= 5000


async def test_async_lambda_handler_partial_failure() -> None:
    async def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        second = event["Records"][1]["kinesis"]["sequenceNumber"]
        return {"batchItemFailures": [{"itemIdentifier": second}]}

    target = target_for(handler, SOURCE, report_batch_item_failures=True)
    assert await target.invoke(batch(), invocation()) == PartiallyFailed((1,))


async def test_handler_exception_is_a_function_error() -> None:
    def handler(event: Any, context: Any) -> None:
        raise ValueError("boom")

    outcome = await target_for(handler, SOURCE, report_batch_item_failures=False).invoke(
        batch(), invocation()
    )
    assert isinstance(outcome, Failed)
    assert outcome.function_error == "Unhandled" and "ValueError: boom" in outcome.reason


async def test_non_json_response_is_a_marshal_error() -> None:
    def handler(event: Any, context: Any) -> Any:
        return {"batchItemFailures": {1, 2}}

    outcome = await target_for(handler, SOURCE, report_batch_item_failures=True).invoke(
        batch(), invocation()
    )
    assert isinstance(outcome, Failed) and "MarshalError" in outcome.reason


async def test_typed_handler_gets_the_batch_and_returns_failed_records() -> None:
    async def handler(received: Batch) -> list[Record]:
        assert [r.data for r in received] == [b"r0", b"r1", b"r2"]
        return [received[2]]

    target = target_for(handler, SOURCE, report_batch_item_failures=False)
    assert isinstance(target, TypedTarget)
    assert await target.invoke(batch(), invocation()) == PartiallyFailed((2,))


def test_handler_style_is_told_by_signature() -> None:
    with pytest.raises(HandlerImportError, match="cannot tell the handler's style"):
        target_for(lambda a, b, c: None, SOURCE, report_batch_item_failures=False)


def test_load_handler_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_handlers_mod.py").write_text("def handle(event, context):\n    return None\n")
    (tmp_path / "broken_handlers_mod.py").write_text("raise RuntimeError('bad import')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert callable(load_handler("my_handlers_mod:handle"))
    with pytest.raises(HandlerImportError, match="not found in the current directory"):
        load_handler("no_such_module_xyz:handle")
    with pytest.raises(HandlerImportError, match="has no attribute 'nope'"):
        load_handler("my_handlers_mod:nope")
    with pytest.raises(HandlerImportError, match="raised RuntimeError: bad import"):
        load_handler("broken_handlers_mod:handle")
    with pytest.raises(
        HandlerImportError, match=r"expected 'module\.function' or 'module:function'"
    ):
        load_handler("justamodule")
