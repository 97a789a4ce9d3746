"""Process environments, as Lambda runs a function: real processes started by the worker.

Proves the execution model: one invocation at a time per environment (module-level state is safe),
timeouts that stop the code before the retry starts, crashes and memory overruns that fail one
invocation and replace the environment without stopping the worker, init errors with Lambda's
types, Lambda's variables and a context whose remaining time counts down, a 6 MB response limit,
and ReservedConcurrentExecutions as back-pressure.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from poller.testing import MemoryPartition, MemoryQueue, MemorySource
from tests.kit import KINESIS_ARN, FunctionBench
from tests.unit.engine_harness import fill


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FunctionBench:
    monkeypatch.chdir(tmp_path)
    bench = FunctionBench(tmp_path)
    monkeypatch.setenv("SEEN_LOG", str(bench.seen))  # handlers in the worker's threads
    return bench


def failures(logs: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("reason")) for e in logs if e.get("event") == "batch failed"]


def one_shard(*data: str) -> MemorySource:
    partition = MemoryPartition("shardId-000000000000")
    for text in data:
        partition.put(text.encode())
    return MemorySource([partition], arn=KINESIS_ARN)


async def test_each_environment_serves_one_invocation_at_a_time(bench: FunctionBench) -> None:
    bench.module(
        "stateful",
        """
        import base64, os, time
        BUFFER = []  # module-level state, as handlers keep it on Lambda

        def handle(event, context):
            BUFFER.clear()
            for record in event["Records"]:
                BUFFER.append(record["kinesis"]["sequenceNumber"])
                time.sleep(0.002)  # another invocation in this interpreter would interleave here
            sent = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
            _log({"pid": os.getpid(), "sent": sent, "buffer": list(BUFFER)})
            return {"batchItemFailures": []}
        """,
    )
    config = bench.config([{"FunctionName": "f", "Handler": "stateful.handle"}])
    source = fill([30, 30, 30, 30])
    async with bench.running(config, source) as worker:
        await bench.until(
            lambda: sum(len(e["sent"]) for e in bench.entries()) >= 120, "120 records handled"
        )
        assert worker.functions is not None
    entries = bench.entries()
    assert all(e["buffer"] == e["sent"] for e in entries), "an invocation saw another's state"
    assert len({e["pid"] for e in entries}) > 1, "the shards were not served concurrently"


async def test_concurrent_sqs_pollers_each_get_an_environment_of_their_own(
    bench: FunctionBench,
) -> None:
    bench.module(
        "stateful_sqs",
        """
        import os, time
        BUFFER = []

        def handle(event, context):
            BUFFER.clear()
            for record in event["Records"]:
                BUFFER.append(record["messageId"])
                time.sleep(0.002)
            sent = [r["messageId"] for r in event["Records"]]
            _log({"pid": os.getpid(), "sent": sent, "buffer": list(BUFFER)})
        """,
    )
    queue = MemoryQueue(arn="arn:aws:sqs:us-east-1:000000000000:work")
    for n in range(60):
        queue.send(f"message-{n}")
    config = bench.config(
        [{"FunctionName": "f", "Handler": "stateful_sqs.handle"}],
        {
            "EventSourceArn": queue.arn,
            "StartingPosition": None,
            "BatchSize": 5,
            "ScalingConfig": {"MaximumConcurrency": 4},
        },
        queue_wait_seconds=1,
    )
    async with bench.running(config, queue):
        await bench.until(lambda: not queue.remaining, "every message deleted")
    entries = bench.entries()
    assert all(e["buffer"] == e["sent"] for e in entries), "an invocation saw another's state"
    assert sum(len(e["sent"]) for e in entries) >= 60
    assert len({e["pid"] for e in entries}) > 1, "the pollers were not served concurrently"


async def test_powertools_batch_processor_at_module_level_reports_only_its_own_records(
    bench: FunctionBench,
) -> None:
    pytest.importorskip("aws_lambda_powertools")
    bench.module(
        "powertools_handler",
        """
        import base64, os
        from aws_lambda_powertools.utilities.batch import (
            BatchProcessor, EventType, process_partial_response,
        )

        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

        def record_handler(record):
            text = base64.b64decode(record.kinesis.data).decode()
            marker = f"failed-once-{text}"
            if text.endswith("-r3") and not os.path.exists(marker):
                open(marker, "w").close()
                raise ValueError(text)

        def handle(event, context):
            response = process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
            sent = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
            failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
            _log({"sent": sent, "failed": failed})
            return response
        """,
    )
    config = bench.config(
        [{"FunctionName": "f", "Handler": "powertools_handler.handle"}],
        {"FunctionResponseTypes": ["ReportBatchItemFailures"], "BatchSize": 5},
    )
    source = fill([12, 12, 12, 12])
    with capture_logs() as logs:
        async with bench.running(config, source) as worker:
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 12, "idle")
            status = worker.status()["m"]
    entries = bench.entries()
    assert all(set(e["failed"]) <= set(e["sent"]) for e in entries), entries
    assert sum(len(e["failed"]) for e in entries) == 4, "one failure per shard, reported once"
    assert {p["checkpoint"] for p in status["partitions"].values()} == {"12"}
    assert not failures(logs), "no whole batch failed (no 'All records failed processing')"


async def test_a_timeout_stops_the_environment_before_the_retry_starts(
    bench: FunctionBench,
) -> None:
    bench.module(
        "slow",
        """
        import os, time

        def handle(event, context):
            seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
            others = [e["pid"] for e in _entries() if e["pid"] != os.getpid()]
            alive = [p for p in others if os.path.exists(f"/proc/{p}")]
            _log({"pid": os.getpid(), "sent": seqs, "others_alive": alive})
            if not os.path.exists("slept"):
                open("slept", "w").close()
                time.sleep(2.0)
                _log({"pid": os.getpid(), "marker": "ran on past the timeout"})

        def _entries():
            import json
            try:
                return [json.loads(l) for l in open(_PATH)]
            except FileNotFoundError:
                return []
        """,
    )
    config = bench.config(
        [{"FunctionName": "f", "Handler": "slow.handle", "Timeout": 0.5}], {"BatchSize": 2}
    )
    with capture_logs() as logs:
        started = time.monotonic()
        async with bench.running(config, one_shard("a", "b", "c", "d")) as worker:
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 3, "retry done")
            # The killed environment would have written its marker 2 s after it started.
            await anyio.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
    entries = bench.entries()
    assert not any("marker" in e for e in entries), "code ran on after its timeout"
    first, retry = entries[0], entries[1]
    assert retry["sent"] == first["sent"] and retry["pid"] != first["pid"]
    assert retry["others_alive"] == [], "the retry overlapped the timed-out environment"
    order = [s for e in entries[1:] for s in e["sent"]]
    assert order == sorted(order, key=int), "per-shard order of side effects"
    assert any("Task timed out after 0.50 seconds" in r for r in failures(logs))


@pytest.mark.parametrize(
    ("crash", "reason"),
    [
        ("sys.exit(3)", "Runtime.ExitError: Runtime exited with error: exit status 3"),
        ("sys.exit(0)", "Runtime.ExitError: Runtime exited with error: exit status 0"),
        ("os._exit(7)", "Runtime.ExitError: Runtime exited with error: exit status 7"),
        ("raise KeyboardInterrupt", "Runtime.ExitError"),
        (
            "os.kill(os.getpid(), signal.SIGSEGV)",
            "Runtime.ExitError: Runtime exited with error: signal: segmentation fault",
        ),
    ],
)
async def test_a_crash_fails_the_invocation_and_the_environment_is_replaced(
    bench: FunctionBench, crash: str, reason: str
) -> None:
    bench.module(
        "crashing",
        f"""
        import os, signal, sys

        def handle(event, context):
            _log({{"pid": os.getpid(), "n": len(event["Records"])}})
            if not os.path.exists("crashed"):
                open("crashed", "w").close()
                {crash}
        """,
    )
    config = bench.config([{"FunctionName": "f", "Handler": "crashing.handle"}])
    with capture_logs() as logs:
        async with bench.running(config, fill([5, 5])) as worker:
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 3, "idle")
            status = worker.status()["m"]
    assert any(reason in r for r in failures(logs)), failures(logs)
    assert {p["checkpoint"] for p in status["partitions"].values()} == {"5"}
    pids = [e["pid"] for e in bench.entries()]
    assert len(set(pids)) >= 2, "the crashed environment was replaced"


async def test_an_environment_over_its_memory_size_is_stopped(bench: FunctionBench) -> None:
    bench.module(
        "hungry",
        """
        import os, time

        def handle(event, context):
            _log({"pid": os.getpid()})
            if not os.path.exists("ate"):
                open("ate", "w").close()
                block = bytearray(400 * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(5)
        """,
    )
    config = bench.config(
        [{"FunctionName": "f", "Handler": "hungry.handle", "MemorySize": 128, "Timeout": 30}]
    )
    with capture_logs() as logs:
        async with bench.running(config, one_shard("a")) as worker:
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 2, "retried")
    assert any("Runtime.OutOfMemory" in r for r in failures(logs)), failures(logs)


@pytest.mark.parametrize(
    ("module", "handler", "reason"),
    [
        ("raise RuntimeError('no config')\n", "broken.handle", "RuntimeError: no config"),
        ("x = 1\n", "broken.handle", "Runtime.HandlerNotFound: Handler 'handle' missing"),
        ("def handle(:\n", "broken.handle", "Runtime.UserCodeSyntaxError"),
        (
            "import no_such_dependency_xyz\n",
            "broken.handle",
            "Runtime.ImportModuleError: Unable to import module 'broken'",
        ),
        ("def handle(batch):\n    pass\n", "broken.handle", "typed handler"),
    ],
)
async def test_init_errors_fail_invocations_with_lambdas_error_types(
    bench: FunctionBench, module: str, handler: str, reason: str
) -> None:
    (bench.root / "broken.py").write_text(module)
    config = bench.config(
        [{"FunctionName": "f", "Handler": handler}],
        {"MaximumRetryAttempts": 1, "RetryBackoffSeconds": 0.01},
    )
    with capture_logs() as logs:
        async with bench.running(config, one_shard("a")) as worker:
            await bench.until(lambda: worker.idle, "the batch given up")
    reasons = failures(logs)
    assert len(reasons) == 2 and all(reason in r for r in reasons), reasons
    started = [e for e in logs if e.get("event") == "function environment failed to start"]
    assert len(started) == 2, "one init error logged per environment"


async def test_environment_sees_lambdas_variables_and_a_real_deadline(
    bench: FunctionBench,
) -> None:
    bench.module(
        "inspect_env",
        """
        import os, time

        NAMES = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_TIMEOUT",
                 "AWS_REGION", "_HANDLER", "AWS_LAMBDA_FUNCTION_VERSION", "TABLE", "LAMBDA_TASK_ROOT"]

        def handle(event, context):
            before = context.get_remaining_time_in_millis()
            time.sleep(0.3)
            _log({"env": {n: os.environ.get(n) for n in NAMES}, "before": before,
                  "after": context.get_remaining_time_in_millis(), "name": context.function_name,
                  "arn": context.invoked_function_arn, "request": context.aws_request_id,
                  "memory": context.memory_limit_in_mb, "trace": os.environ.get("_X_AMZN_TRACE_ID")})
        """,
    )
    config = bench.config(
        [
            {
                "FunctionName": "orders-fn",
                "Handler": "inspect_env.handle",
                "Timeout": 4,
                "MemorySize": 256,
                "Environment": {"Variables": {"TABLE": "orders"}},
            }
        ]
    )
    async with bench.running(config, one_shard("a")) as worker:
        await bench.until(lambda: worker.idle and bench.entries(), "handled")
    entry = bench.entries()[0]
    assert entry["env"] == {
        "AWS_LAMBDA_FUNCTION_NAME": "orders-fn",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "4",
        "AWS_REGION": "us-east-1",
        "_HANDLER": "inspect_env.handle",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "TABLE": "orders",
        "LAMBDA_TASK_ROOT": str(bench.root),
    }
    assert 3000 < entry["before"] <= 4000
    assert 200 <= entry["before"] - entry["after"] < 1000, "remaining time counts down"
    assert entry["name"] == "orders-fn" and entry["arn"].endswith(":function:orders-fn")
    assert entry["memory"] == "256" and entry["trace"].startswith("Root=1-")


@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_a_response_over_6_mb_is_a_function_error(
    bench: FunctionBench, isolation: str
) -> None:
    bench.module(
        "big",
        """
        def handle(event, context):
            _log({"n": len(event["Records"])})
            return {"batchItemFailures": [], "padding": "x" * 7_000_000}
        """,
    )
    config = bench.config(
        [{"FunctionName": "f", "Handler": "big.handle", "Isolation": isolation}],
        {"MaximumRetryAttempts": 0},
    )
    with capture_logs() as logs:
        async with bench.running(config, one_shard("a")) as worker:
            await bench.until(lambda: worker.idle and bench.entries(), "handled")
    assert any("Function.ResponseSizeTooLarge" in r for r in failures(logs)), failures(logs)


async def test_reserved_concurrency_is_back_pressure_not_failure(bench: FunctionBench) -> None:
    bench.module(
        "serial",
        """
        import os, time

        def handle(event, context):
            start = time.monotonic()
            time.sleep(0.02)
            _log({"pid": os.getpid(), "start": start, "end": time.monotonic(), "n": len(event["Records"])})
        """,
    )
    config = bench.config(
        [{"FunctionName": "f", "Handler": "serial.handle", "ReservedConcurrentExecutions": 1}],
        {"BatchSize": 2},
    )
    with capture_logs() as logs:
        async with bench.running(config, fill([6, 6, 6])) as worker:
            await bench.until(
                lambda: worker.idle and sum(e["n"] for e in bench.entries()) >= 18, "all handled"
            )
            status = worker.status()["m"]
    entries = sorted(bench.entries(), key=lambda e: e["start"])
    assert len({e["pid"] for e in entries}) == 1, "one environment, reused"
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(entries))
    assert status["metrics"]["Throttles"] > 0 and not failures(logs)


async def test_thread_isolation_turns_system_exit_into_a_function_error(
    bench: FunctionBench,
) -> None:
    bench.module(
        "exiting",
        """
        import os, sys

        def handle(event, context):
            _log({"n": len(event["Records"])})
            if not os.path.exists("exited"):
                open("exited", "w").close()
                sys.exit(0)
        """,
    )
    config = bench.config(
        [{"FunctionName": "f", "Handler": "exiting.handle", "Isolation": "thread"}]
    )
    with capture_logs() as logs:
        async with bench.running(config, one_shard("a")) as worker:
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 2, "retried")
    assert any("exit status 0" in r for r in failures(logs)), failures(logs)
    assert sys.exc_info() == (None, None, None)
