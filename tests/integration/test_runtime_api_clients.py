"""poller's Lambda Runtime API against runtime clients it did not write.

AWS's own Python runtime interface client (``awslambdaric`` from PyPI) runs as the environment of a
``Command`` function and, started by the test, as an external environment of a ``RuntimeApi``
listener; a Node.js handler with a runtime client of a few lines speaks the same API. Events,
responses, ``batchItemFailures``, errors and init errors all make the round trip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from structlog.testing import capture_logs

from poller.testing import MemoryPartition, MemorySource
from tests.kit import KINESIS_ARN, FunctionBench, pid_alive

pytestmark = pytest.mark.integration

NODE_RUNTIME = Path(__file__).parents[1] / "kit" / "runtimes" / "node_runtime.js"

RIC_HANDLERS = """
import base64, os, time

def handle(event, context):
    texts = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    # The marker is made before the entry, so a test that sees the entry may kill this process.
    hang = "hang" in texts and not os.path.exists("hung")
    if hang:
        open("hung", "w").close()
    _log({"pid": os.getpid(), "texts": texts, "request": context.aws_request_id,
          "remaining": context.get_remaining_time_in_millis()})
    if "throw" in texts and not os.path.exists("thrown"):
        open("thrown", "w").close()
        raise ValueError("cannot handle throw")
    if hang:
        time.sleep(60)
    records = zip(event["Records"], texts)
    failed = [r["kinesis"]["sequenceNumber"] for r, t in records if t == "fail"]
    if failed and os.path.exists("failed"):
        failed = []
    open("failed", "w").close() if failed else None
    return {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}
"""


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FunctionBench:
    monkeypatch.chdir(tmp_path)
    bench = FunctionBench(tmp_path)
    monkeypatch.setenv("SEEN_LOG", str(bench.seen))
    return bench


def shard(*texts: str) -> MemorySource:
    partition = MemoryPartition("shardId-000000000000")
    for text in texts:
        partition.put(text.encode())
    return MemorySource([partition], arn=KINESIS_ARN)


def failures(logs: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("reason")) for e in logs if e.get("event") == "batch failed"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REPORT = {"FunctionResponseTypes": ["ReportBatchItemFailures"], "BatchSize": 3}


async def test_awslambdaric_as_command_round_trips_events_responses_and_errors(
    bench: FunctionBench,
) -> None:
    bench.module("ric_handlers", RIC_HANDLERS)
    command = [sys.executable, "-m", "awslambdaric", "ric_handlers.handle"]
    config = bench.config([{"FunctionName": "ric", "Command": command, "Timeout": 5}], REPORT)
    with capture_logs() as logs:
        async with bench.running(config, shard("a", "fail", "c", "throw", "e")) as worker:
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 4, "all settled")
            status = worker.status()["m"]
    texts = [entry["texts"] for entry in bench.entries()]
    # a,fail,c -> "fail" reported -> retried from it; throw raises once, then succeeds.
    assert texts[0] == ["a", "fail", "c"] and texts[1][0] == "fail"
    assert ["throw", "e"] in texts or any(t[:2] == ["throw", "e"] for t in texts)
    assert any("ValueError: cannot handle throw" in r for r in failures(logs)), failures(logs)
    assert all(0 < e["remaining"] <= 5000 for e in bench.entries())
    assert status["metrics"]["Errors"] >= 1


async def test_awslambdaric_init_error_is_reported_with_its_type(bench: FunctionBench) -> None:
    bench.module("ric_handlers", RIC_HANDLERS)
    command = [sys.executable, "-m", "awslambdaric", "ric_handlers.missing"]
    config = bench.config(
        [{"FunctionName": "ric", "Command": command}],
        {"MaximumRetryAttempts": 0},
    )
    with capture_logs() as logs:
        async with bench.running(config, shard("a")) as worker:
            await bench.until(lambda: worker.idle, "the batch given up")
    assert any("Runtime.HandlerNotFound" in r for r in failures(logs)), failures(logs)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
async def test_a_node_handler_runs_through_the_runtime_api(bench: FunctionBench) -> None:
    config = bench.config(
        [{"FunctionName": "node-fn", "Command": ["node", str(NODE_RUNTIME)]}],
        {**REPORT, "MaximumRetryAttempts": 1},
    )
    with capture_logs() as logs:
        async with bench.running(config, shard("a", "fail", "c", "throw")) as worker:
            await bench.until(lambda: worker.idle, "the shard settled", within=30)
            status = worker.status()["m"]
    reasons = failures(logs)
    assert any("TypeError: cannot handle throw" in r for r in reasons), reasons
    # "fail" was reported by the Node handler: the batch retried from it, then "throw" failed.
    assert status["metrics"]["Invocations"] >= 3
    outputs = [e for e in logs if e.get("event") == "function output"]
    assert not outputs, f"the Node runtime printed errors: {outputs}"


#: AWS's Node.js runtime interface client, when `make node-ric` installed it (it compiles curl
#: and the AWS C++ runtime: minutes on a 2-core machine, so `make test` does not build it).
NODE_RIC = Path(__file__).parents[2] / ".node-ric" / "node_modules" / ".bin" / "aws-lambda-ric"

NODE_HANDLER = """
exports.handler = async (event, context) => {
  const texts = event.Records.map((r) => Buffer.from(r.kinesis.data, "base64").toString());
  if (texts.includes("throw")) throw new TypeError(`cannot handle ${texts.join(",")}`);
  return { batchItemFailures: [], runtime: context.functionName };
};
"""


@pytest.mark.skipif(not NODE_RIC.exists(), reason="AWS's Node runtime client: run make node-ric")
async def test_awss_node_runtime_client_runs_a_node_handler(bench: FunctionBench) -> None:
    (bench.root / "index.js").write_text(NODE_HANDLER)
    config = bench.config(
        [
            {
                "FunctionName": "node-ric",
                "Handler": "index.handler",  # AWS's Node client reads it from _HANDLER
                "Command": [str(NODE_RIC), "index.handler"],
            }
        ],
        {"MaximumRetryAttempts": 1},
    )
    with capture_logs() as logs:
        async with bench.running(config, shard("a", "throw")) as worker:
            await bench.until(lambda: worker.idle, "the shard settled", within=30)
            status = worker.status()["m"]
    assert any("TypeError: cannot handle a,throw" in r for r in failures(logs)), failures(logs)
    assert status["metrics"]["Invocations"] == 2


class ExternalEnvironments:
    """awslambdaric processes started by the test, pointed at a ``RuntimeApi`` listener."""

    def __init__(self, root: Path, address: str) -> None:
        self._root = root
        self._address = address
        self.processes: list[Process] = []

    async def start(self) -> Process:
        env = {
            **os.environ,
            "AWS_LAMBDA_RUNTIME_API": self._address,
            "AWS_LAMBDA_FUNCTION_NAME": "sidecar",
        }
        process = await anyio.open_process(
            [sys.executable, "-m", "awslambdaric", "ric_handlers.handle"],
            cwd=self._root,
            env=env,
            stdout=None,
            stderr=None,
        )
        self.processes.append(process)
        return process


@pytest.fixture
async def external(bench: FunctionBench) -> AsyncIterator[Callable[[str], ExternalEnvironments]]:
    made: list[ExternalEnvironments] = []

    def make(address: str) -> ExternalEnvironments:
        made.append(ExternalEnvironments(bench.root, address))
        return made[-1]

    yield make
    for group in made:
        for process in group.processes:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(5):
                    await process.wait()


async def test_external_environment_killed_mid_batch_fails_it_at_its_deadline(
    bench: FunctionBench, external: Callable[[str], ExternalEnvironments]
) -> None:
    bench.module("ric_handlers", RIC_HANDLERS)
    address = f"127.0.0.1:{free_port()}"
    config = bench.config(
        [{"FunctionName": "sidecar", "RuntimeApi": address, "Timeout": 1.5}], REPORT
    )
    environments = external(address)
    with capture_logs() as logs:
        async with bench.running(config, shard("hang", "b")) as worker:
            first = await environments.start()
            await bench.until(lambda: len(bench.entries()) >= 1, "the batch in the environment")
            (hung,) = {e["pid"] for e in bench.entries()}
            first.send_signal(signal.SIGKILL)
            await bench.until(lambda: not pid_alive(hung), "the environment gone")
            await environments.start()  # another environment connects and takes the retry
            await bench.until(lambda: worker.idle and len(bench.entries()) >= 2, "retried")
            status = worker.status()["m"]
    assert any("Task timed out after 1.50 seconds" in r for r in failures(logs)), failures(logs)
    retry = bench.entries()[-1]
    assert retry["texts"] == ["hang", "b"] and retry["pid"] != hung
    assert {p["checkpoint"] for p in status["partitions"].values()} == {"2"}


async def test_external_listener_waits_for_an_environment_without_failing(
    bench: FunctionBench, external: Callable[[str], ExternalEnvironments]
) -> None:
    bench.module("ric_handlers", RIC_HANDLERS)
    address = f"127.0.0.1:{free_port()}"
    config = bench.config([{"FunctionName": "sidecar", "RuntimeApi": address, "Timeout": 1}])
    with capture_logs() as logs:
        async with bench.running(config, shard("a", "b")) as worker:
            await anyio.sleep(1.5)  # longer than Timeout with no environment connected
            assert bench.entries() == []
            await external(address).start()
            await bench.until(lambda: worker.idle and bench.entries(), "handled")
            status = worker.status()["m"]
    assert not failures(logs), "waiting for an environment is back-pressure, not a failure"
    assert status["metrics"]["Throttles"] >= 1
