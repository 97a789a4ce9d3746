"""A real ``poller run`` whose SQLite state file is deleted while it runs: the failures it logs
name their cause (the store's own error, the operation, the mapping and the shard), each cause
once however often the worker retries, and never as a bare "unhandled errors in a TaskGroup".

Deleting the state file is a failure the store notices for real (it checks that its file is
still the one it opened); making the file read-only would not be one, since the tests run as
root, which writes read-only files.
"""

from __future__ import annotations

import json
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.kit import REGION, create_stream, handler_module, json_lines, moto_clients, start_poller

pytestmark = pytest.mark.integration

WAIT = 60.0
HANDLER = handler_module(
    "Logs every record it is handed.",
    """
    def handle(event, context):
        for record in event["Records"]:
            _log({"seq": record["kinesis"]["sequenceNumber"]})
    """,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def status(port: int) -> dict[str, Any]:
    """The running worker's ``/status`` (empty while it does not answer yet)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/status") as response,
        ):
            answer: dict[str, Any] = await response.json()
            return answer
    except (aiohttp.ClientError, json.JSONDecodeError):
        return {}


@pytest.fixture
async def kinesis(moto_endpoint: str) -> AsyncIterator[Any]:
    async with moto_clients(moto_endpoint, "kinesis") as (client,):
        yield client


async def test_a_deleted_state_file_is_logged_by_cause_once_per_cause(
    kinesis: Any,
    moto_endpoint: str,
    tmp_path: Path,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arn = await create_stream(kinesis, unique_name)
    mapping_id = str(uuid.uuid4())
    port = free_port()
    state = tmp_path / "state" / "state.db"
    (tmp_path / "seen_handler.py").write_text(HANDLER)
    (tmp_path / "config.toml").write_text(
        f'[aws]\nregion = "{REGION}"\nendpoint_url = "{moto_endpoint}"\n'
        f'[store]\nurl = "sqlite:///{state}"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        "[worker]\nshard_discovery_seconds = 0.2\nidle_poll_seconds = 0.05\n"
        f'[[mappings]]\nUUID = "{mapping_id}"\nEventSourceArn = "{arn}"\n'
        'Handler = "seen_handler:handle"\nStartingPosition = "TRIM_HORIZON"\n'
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    seen, output = tmp_path / "seen.jsonl", tmp_path / "output.jsonl"

    async def put(count: int) -> None:
        for n in range(count):
            await kinesis.put_record(
                StreamName=unique_name, Data=f"r{n}".encode(), PartitionKey="k"
            )

    process = await start_poller(tmp_path, seen_log=seen, delay=0, output=output)
    try:
        await put(2)
        with anyio.fail_after(WAIT):
            while len(json_lines(seen)) < 2 or not _checkpointed(await status(port), mapping_id):
                await anyio.sleep(0.1)
        for suffix in ("", "-wal", "-shm"):
            await anyio.Path(f"{state}{suffix}").unlink(missing_ok=True)
        # The store looks at its file at most once a second: records keep coming until a
        # checkpoint write meets the deleted file, and then until the worker retried a while.
        with anyio.fail_after(WAIT):
            while True:
                mapping = (await status(port)).get(mapping_id, {})
                polling_errors = mapping.get("metrics", {}).get("PollingErrorCount", 0)
                if mapping.get("failing_partitions") and polling_errors >= 3:
                    break
                await put(1)
                await anyio.sleep(0.3)
        failing = next(iter(mapping["failing_partitions"].values()))
    finally:
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            await process.wait()

    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    text = output.read_text()
    assert "TaskGroup" not in text, "a failure was logged as its task group, not its cause"

    crashes = [e for e in lines if e["event"] == "partition failed; restarting from its checkpoint"]
    assert crashes, text[-3000:]
    first = crashes[0]
    assert first["level"] == "error"
    assert first["mapping"] == mapping_id and first["shard"].startswith("shardId-")
    assert first["error_type"] == "StoreError"
    assert str(state) in first["error"] and "deleted or replaced" in first["error"]
    assert first["operation"] == "writing a checkpoint"
    assert failing["operation"] == "writing a checkpoint" and failing["error"] == first["error"]

    # Each retrying loop logged each distinct cause once (at most once a minute, should the
    # test run that long), however often it failed.
    for event in (
        "partition failed; restarting from its checkpoint",
        "cannot list partitions",
        "lease store unreachable; retrying",
    ):
        last: dict[tuple[str, str | None], datetime] = {}
        for entry in (e for e in lines if e["event"] == event):
            cause, at = (entry["error"], entry.get("operation")), _moment(entry)
            if cause in last:
                assert at - last[cause] >= timedelta(seconds=59), f"{event} twice: {cause}"
            last[cause] = at
    listing = [e for e in lines if e["event"] == "cannot list partitions"]
    assert len(listing) < polling_errors, "the listing's failures were logged once per attempt"
    assert all(str(state) in e["error"] and e["error_type"] == "StoreError" for e in listing)


def _moment(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["timestamp"])


def _checkpointed(status: dict[str, Any], mapping_id: str) -> bool:
    partitions = status.get(mapping_id, {}).get("partitions", {})
    return any(p.get("checkpoint") for p in partitions.values())
