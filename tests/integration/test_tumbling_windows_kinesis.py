"""Tumbling windows end to end: a ``poller run`` process on a Kinesis stream of the moto server, a
Lambda-style handler summing each window's records, and a ``kill -9`` in the middle of a window.

The window's state is stored with the checkpoint, so the restarted worker resumes the window with
the state of the last invocation that succeeded: each window's final state is the exact sum of
its records, the killed batch counted once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.kinesis_helpers import AwsSetup
from tests.integration.test_worker_lifecycle import WAIT, Project, aws, create_stream, project
from tests.kit import handler_module, json_lines, wait_until

pytestmark = pytest.mark.integration

__all__ = ["aws", "project"]  # fixtures, used by name

SUMMING = handler_module(
    "Sums each window's record values in the state; logs every invocation and each final state.",
    """
    import base64

    def handle(event, context):
        state = dict(event["state"] or {})
        window = event["window"]["start"]
        values = [int(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]
        if event["isFinalInvokeForWindow"]:
            _log({"event": "final", "window": window, "sum": state.get("sum", 0)})
            return {"state": state}
        _log({"event": "begin", "window": window, "values": values})
        time.sleep(_DELAY)
        state["sum"] = state.get("sum", 0) + sum(values)
        _log({"event": "end", "window": window, "values": values})
        return {"state": state, "batchItemFailures": []}
    """,
)


async def test_a_window_killed_mid_way_resumes_with_its_stored_state(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=1)
    here = project(stream, BatchSize=3, TumblingWindowInSeconds=5)
    (here.root / "seen_handler.py").write_text(SUMMING)
    values = list(range(1, 13))
    await aws.kinesis.put_records(
        StreamName=stream.name,
        Records=[{"PartitionKey": "k", "Data": str(v).encode()} for v in values],
    )
    first = await here.start(delay=0.5)

    def entries() -> list[dict[str, Any]]:
        """What both processes' handlers logged, the killed one's first."""
        return [entry for run in here.runs for entry in json_lines(run.seen.path)]

    def mid_window() -> bool:
        logged = json_lines(first.seen.path)
        return any(e["event"] == "end" for e in logged) and logged[-1]["event"] == "begin"

    await wait_until(mid_window, within=WAIT, what="a second batch of the window in the handler")
    first.process.send_signal(signal.SIGKILL)
    assert await first.wait(within=5) == -signal.SIGKILL
    second = await here.start(delay=0.0)

    def finals() -> dict[str, int]:
        return {e["window"]: e["sum"] for e in entries() if e["event"] == "final"}

    def windows_seen() -> set[str]:
        return {e["window"] for e in entries() if e["event"] == "begin"}

    await wait_until(
        lambda: bool(windows_seen()) and windows_seen() <= set(finals()),
        within=30,
        what="a final invocation for every window",
    )
    # Each window's values, from the invocations that ended (a batch begun at the kill and
    # handed over again counts once: its values are the same records).
    ended: dict[str, set[int]] = {}
    for entry in entries():
        if entry["event"] == "end":
            ended.setdefault(entry["window"], set()).update(entry["values"])
    assert set().union(*ended.values()) == set(values), "every record summed in its window"
    assert finals() == {window: sum(found) for window, found in ended.items()}, (
        "a window's final state is the exact sum of its records"
    )
    second.process.send_signal(signal.SIGTERM)
    assert await second.wait(within=15) == 0, second.output()[-3000:]
