"""``poller status``: what the store holds after a real ``poller run`` on the moto server, what a
running worker reports over HTTP (``--url``), and one-line refusals with their exit codes.

Every command runs as ``python -m poller.cli status ...`` in a child process, as an operator runs
it (the command configures the process's logging, which the test process must keep as it is).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from poller import Batch, Worker, parse_config
from poller.engine.state import Checkpoint
from poller.stores import SqliteStore
from poller.testing import MemoryPartition, MemorySource
from tests.kit import REGION, create_stream, moto_clients, wait_until

pytestmark = pytest.mark.integration

WAIT = 30.0
ROOT = Path(__file__).resolve().parents[2]

TYPED_HANDLER = "def handle(batch):\n    return None\n"


async def poller(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``python -m poller.cli ARGS`` in ``cwd``: exit code, stdout, stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(cwd)]))}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "poller.cli", *args], cwd=cwd, env=env, check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def table_rows(stdout: str, header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with ``header``, split on runs of spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(header))
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or not line.strip():
            break
        rows.append(line.split())
    return rows


def files(root: Path, pattern: str = "*") -> list[str]:
    """The names in ``root`` matching ``pattern``, sorted."""
    return sorted(p.name for p in root.glob(pattern))


def resolved(path: Path) -> Path:
    return path.resolve()


def toml_value(value: Any) -> str:
    """A TOML value: JSON spells strings, numbers, booleans and lists the same; tables inline."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(root: Path, store: str, *mappings: dict[str, Any], aws: str = "") -> Path:
    lines = [aws, "[store]", f"url = {json.dumps(store)}"]
    for mapping in mappings:
        lines += ["[[mappings]]", *(f"{k} = {toml_value(v)}" for k, v in mapping.items())]
    (root / "status_handler.py").write_text(TYPED_HANDLER)
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- after a real run ------------------------------------------------------------------------------


@pytest.fixture
async def kinesis(moto_endpoint: str) -> AsyncIterator[Any]:
    async with moto_clients(moto_endpoint, "kinesis") as (client,):
        yield client


async def test_status_after_a_run_shows_each_shard_at_its_last_record_and_leases_released(
    kinesis: Any, moto_endpoint: str, tmp_path: Path, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name, shards=2)
    response = await kinesis.put_records(
        StreamName=unique_name,
        Records=[{"PartitionKey": f"key-{n}", "Data": f"r{n}".encode()} for n in range(23)],
    )
    written: dict[str, list[str]] = {}
    for entry in response["Records"]:
        written.setdefault(entry["ShardId"], []).append(entry["SequenceNumber"])
    assert len(written) == 2, "both shards got records"
    mapping_id = str(uuid.uuid4())
    aws = "\n".join(
        [
            "[aws]",
            f'region = "{REGION}"',
            f'endpoint_url = "{moto_endpoint}"',
            'access_key_id = "testing"',
            'secret_access_key = "testing"',
            "[worker]",
            "idle_poll_seconds = 0.05",
            "shard_discovery_seconds = 1",
            "lease_duration_seconds = 2",
            "[logging]",
            'format = "json"',
        ]
    )
    config = write_config(
        tmp_path,
        "sqlite:///state.db",
        {
            "UUID": mapping_id,
            "EventSourceArn": arn,
            "Handler": "status_handler:handle",
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 4,
            "Idempotency": True,
        },
        aws=aws,
    )

    code, out, err = await poller("run", config.name, "--exit-when-idle", "2", cwd=tmp_path)
    assert code == 0, (out + err)[-3000:]
    state = tmp_path / "state.db"
    before = state.read_bytes()

    code, table, err = await poller("status", config.name, cwd=tmp_path)
    assert (code, err) == (0, ""), err
    assert f"{mapping_id}  kinesis  {arn}" in table.splitlines()
    rows = table_rows(table, "PARTITION")
    assert [row[0] for row in rows] == sorted(written)
    for shard, checkpoint, finished, records, owner, counter, epoch in rows:
        assert checkpoint == written[shard][-1]
        assert finished == "no"
        assert int(records) == len(written[shard])  # every record remembered as succeeded
        assert owner == "(free)"  # released at the clean stop
        assert int(counter) >= 1 and int(epoch) == 2  # taken once, released once

    code, text, err = await poller("status", config.name, "--json", cwd=tmp_path)
    assert (code, err) == (0, ""), err
    document = json.loads(text)
    assert document["store"] == "sqlite:///state.db"
    (mapping,) = document["mappings"]
    partitions = mapping.pop("partitions")
    assert mapping == {
        "uuid": mapping_id,
        "kind": "kinesis",
        "arn": arn,
        "source": arn,
        "enabled": True,
        "checkpoints": "store",
        "consumer_group": None,
    }
    assert [p["partition"] for p in partitions] == sorted(written)
    for partition in partitions:
        numbers = written[partition["partition"]]
        assert partition["checkpoint"] == {
            "position": numbers[-1],
            "finished": False,
            "opened_at": None,
        }
        assert partition["idempotency_records"] == len(numbers)
        lease = partition["lease"]
        assert (lease["owner"], lease["epoch"], lease["finished"]) == (None, 2, False)

    # Looking changed nothing: the same bytes, no WAL or shared-memory file left behind.
    assert state.read_bytes() == before
    assert files(tmp_path, "state.db*") == ["state.db"]


# --- what the store holds for each kind of mapping -------------------------------------------------

SQS_ARN = f"arn:aws:sqs:{REGION}:123456789012:jobs"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:123456789012:stream/orders"
QUIET_ARN = f"arn:aws:kinesis:{REGION}:123456789012:stream/quiet"
KAFKA = {
    "UUID": "clicks",
    "Handler": "status_handler:handle",
    "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}},
    "Topics": ["clicks"],
    "StartingPosition": "LATEST",
    "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "clicks-group"},
}


async def test_status_says_where_each_kind_keeps_its_progress(tmp_path: Path) -> None:
    now = time.time()
    async with SqliteStore(tmp_path / "state.db") as store:
        await store.put_checkpoint(
            "orders", "shardId-000000000000", Checkpoint("", 0, opened_at=now - 60)
        )
        await store.remember_succeeded("jobs", "queue", ["m-1", "m-2", "m-3"], now + 600)
        await store.remember_succeeded("jobs", "queue", ["m-0"], now - 1)  # expired
        await store.remember_succeeded("clicks", "clicks-10", ["5"], now + 600)
        await store.remember_succeeded("clicks", "clicks-2", ["5", "6"], now + 600)
    config = write_config(
        tmp_path,
        "sqlite:///state.db",
        {"UUID": "orders", "EventSourceArn": STREAM_ARN, "Handler": "status_handler:handle",
         "StartingPosition": "LATEST"},
        {"UUID": "jobs", "EventSourceArn": SQS_ARN, "Handler": "status_handler:handle",
         "Idempotency": True},
        KAFKA,
        {"UUID": "quiet", "EventSourceArn": QUIET_ARN, "Handler": "status_handler:handle",
         "StartingPosition": "LATEST", "Enabled": False},
    )  # fmt: skip

    code, out, err = await poller("status", config.name, cwd=tmp_path)
    assert (code, err) == (0, ""), err
    blocks = {block.splitlines()[0]: block.splitlines()[1:] for block in out.split("\n\n")}
    opened = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    assert blocks[f"orders  kinesis  {STREAM_ARN}"] == [
        "  PARTITION             CHECKPOINT          FINISHED  OPENED AT             IDEMPOTENCY",
        f"  shardId-000000000000  (none settled yet)  no        {opened}            0",
    ]
    assert blocks[f"jobs  sqs  {SQS_ARN}"] == [
        "  checkpoints: none (a queue's messages are deleted or acknowledged as they settle)",
        "  PARTITION  IDEMPOTENCY",
        "  queue                3",
    ]
    assert blocks["clicks  kafka  kafka://127.0.0.1:9092/clicks"] == [
        "  checkpoints: offsets are committed to consumer group 'clicks-group', not kept in the "
        "store",
        "  PARTITION  IDEMPOTENCY",
        "  clicks-2             2",
        "  clicks-10            1",
    ]
    assert blocks[f"quiet  kinesis  {QUIET_ARN}  (disabled)"] == ["  no state in the store yet"]

    code, text, err = await poller("status", config.name, "--json", "--mapping", "clicks",
                                   "--mapping", "jobs", cwd=tmp_path)  # fmt: skip
    assert (code, err) == (0, ""), err
    clicks, jobs = json.loads(text)["mappings"]
    assert (clicks["uuid"], clicks["checkpoints"], clicks["consumer_group"]) == (
        "clicks",
        "consumer_group",
        "clicks-group",
    )
    assert clicks["arn"] is None
    assert [(p["partition"], p["idempotency_records"]) for p in clicks["partitions"]] == [
        ("clicks-2", 2),
        ("clicks-10", 1),
    ]
    assert (jobs["checkpoints"], jobs["consumer_group"]) == ("none", None)
    assert jobs["partitions"] == [
        {"partition": "queue", "checkpoint": None, "idempotency_records": 3, "lease": None}
    ]


@pytest.mark.parametrize(
    ("store", "args", "code", "message"),
    [
        pytest.param(
            "sqlite:///state/state.db",
            [],
            1,
            "poller: no state file at {root}/state/state.db: no worker has run with this config yet",
            id="no-state-file",
        ),
        pytest.param(
            "sqlite:///state.db",
            ["--mapping", "nope"],
            2,
            "poller: no mapping 'nope' in the config (its mappings: orders)",
            id="unknown-mapping",
        ),
        pytest.param(
            "memory://",
            [],
            2,
            "poller: [store] url is memory://: its state lives only inside the worker's process;"
            " ask a running worker with --url http://HOST:PORT ([http] listen)",
            id="memory-store",
        ),
        pytest.param(
            "dynamodb://state",
            [],
            2,
            'poller: [aws] endpoint_url = "embedded": the DynamoDB table lives inside the'
            " worker's process; ask a running worker with --url http://HOST:PORT ([http] listen)",
            id="table-on-the-embedded-endpoint",
        ),
        pytest.param(
            "sqlite:///config.toml",
            [],
            1,
            "poller: sqlite store config.toml: cannot read: file is not a database",
            id="not-a-state-file",
        ),
    ],
)
async def test_status_refuses_in_one_line(
    tmp_path: Path, store: str, args: Sequence[str], code: int, message: str
) -> None:
    config = write_config(
        tmp_path,
        store,
        {"UUID": "orders", "EventSourceArn": STREAM_ARN, "Handler": "status_handler:handle",
         "StartingPosition": "LATEST"},
        aws='[aws]\nendpoint_url = "embedded"' if store.startswith("dynamodb://") else "",
    )  # fmt: skip
    if store == "sqlite:///state.db":
        await SqliteStore(tmp_path / "state.db").aclose()  # an empty state file
    before = files(tmp_path)

    got, out, err = await poller("status", config.name, *args, cwd=tmp_path)

    assert (got, out) == (code, "")
    assert err == message.format(root=resolved(tmp_path)) + "\n"
    assert files(tmp_path) == before  # nothing created


# --- a running worker (--url) ----------------------------------------------------------------------

OK, FAILING, BUSY = "shardId-000000000000", "shardId-000000000001", "shardId-000000000002"


@dataclass
class Live:
    """A running worker, the event its hanging batches wait for, and when it started."""

    worker: Worker
    release: anyio.Event
    started: float


@pytest.fixture
async def live_worker() -> AsyncIterator[Live]:
    """A worker on three in-memory shards: one caught up, one whose batch failed twice and now
    hangs in its third attempt, one whose first batch hangs in the handler (until the event)."""
    partitions = [MemoryPartition(pid) for pid in (OK, FAILING, BUSY)]
    for partition in partitions:
        for n in range(3):
            partition.put(f"r{n}".encode(), key=f"key-{n}")
    release = anyio.Event()

    async def handle(batch: Batch) -> None:
        if batch.partition == FAILING and batch.attempt <= 2:
            raise RuntimeError("failing on purpose")
        if batch.partition != OK:
            await release.wait()

    config = parse_config(
        {
            "store": {"url": "memory://"},
            "worker": {"idle_poll_seconds": 0.01, "shutdown_grace_seconds": 5},
            "mappings": [
                {
                    "UUID": "orders",
                    "EventSourceArn": STREAM_ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    "RetryBackoffSeconds": 0.01,
                    "RetryBackoffMaxSeconds": 0.02,
                }
            ],
        }
    )
    worker = Worker(
        config,
        handlers={"orders": handle},
        sources={"orders": MemorySource(partitions, arn=STREAM_ARN)},
    )
    started = time.time()
    await worker.start()
    try:
        yield Live(worker, release, started)
    finally:
        release.set()
        await worker.stop_and_wait()


@pytest.fixture
async def status_server(
    live_worker: Live,
) -> AsyncIterator[str]:
    """An HTTP server answering ``/status`` with the worker's status, as ``[http] listen`` does;
    ``/broken/status`` answers text and ``/gone`` has no ``/status``."""
    worker = live_worker.worker

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(worker.status())

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/broken/status", broken)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


async def test_url_renders_a_running_workers_partitions(
    live_worker: Live, status_server: str, tmp_path: Path
) -> None:
    worker, release = live_worker.worker, live_worker.release

    def settled_into_place() -> bool:
        partitions = worker.status()["orders"]["partitions"]
        return (
            partitions.get(OK, {}).get("checkpoint") == "3"
            and partitions.get(FAILING, {}).get("attempts") == 3
            and partitions[FAILING]["in_flight"]
            and partitions.get(BUSY, {}).get("in_flight", False)
        )

    await wait_until(settled_into_place, within=10, what="each shard in its place")
    partitions = worker.status()["orders"]["partitions"]
    blocked_since = partitions[FAILING]["blocked_since"]
    assert live_worker.started <= blocked_since <= time.time()
    assert (partitions[OK]["in_flight"], partitions[OK]["blocked_since"]) == (False, None)
    assert (partitions[BUSY]["blocked_since"], partitions[BUSY]["attempts"]) == (None, 1)

    code, table, err = await poller("status", "--url", status_server, cwd=tmp_path)
    assert (code, err) == (0, ""), err
    assert table.splitlines()[0] == "orders  busy"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(blocked_since))
    rows = {row[0]: row[1:] for row in table_rows(table, "PARTITION")}
    assert rows[OK] == ["no", "-", "1", "0", "3"]
    assert rows[BUSY] == ["yes", "-", "1", "0", "-"]
    assert rows[FAILING][:2] == ["yes", since]
    assert rows[FAILING][-3:] == ["3", "0", "-"]  # attempt 3, nothing settled yet

    code, text, err = await poller("status", "--url", status_server + "/", "--json", cwd=tmp_path)
    assert (code, err) == (0, ""), err
    fetched = json.loads(text)
    assert fetched["orders"]["partitions"] == worker.status()["orders"]["partitions"]

    # The failing batch succeeds: the shard is no longer blocked, and keeps its last attempt.
    release.set()
    await wait_until(lambda: worker.idle, within=10, what="every shard caught up")
    partitions = worker.status()["orders"]["partitions"]
    assert partitions[FAILING]["checkpoint"] == "3"
    assert (partitions[FAILING]["blocked_since"], partitions[FAILING]["attempts"]) == (None, 3)
    assert not any(p["in_flight"] for p in partitions.values())


@pytest.mark.parametrize(
    ("url", "args", "code", "message"),
    [
        pytest.param(
            "{server}", ["--mapping", "nope"], 2,
            "poller: the worker runs no mapping 'nope' (it runs: orders)", id="unknown-mapping",
        ),
        pytest.param(
            "{server}/broken", [], 1,
            "poller: GET {server}/broken/status: the answer is not JSON", id="not-json",
        ),
        pytest.param(
            "{server}/gone", [], 1,
            "poller: GET {server}/gone/status answered 404 Not Found (is [http] listen set on "
            "that worker?)",
            id="no-status-there",
        ),
        pytest.param(
            "{server}", ["--timeout", "0"], 2,
            "poller: --timeout 0: give a number of seconds above 0", id="no-time",
        ),
        pytest.param(
            "ftp://127.0.0.1:21", [], 2,
            "poller: --url 'ftp://127.0.0.1:21' is not an http://HOST:PORT URL", id="not-http",
        ),
        pytest.param(
            "{server}", ["config.toml"], 2,
            "poller: give either CONFIG (read the store) or --url (ask a running worker), not both",
            id="config-and-url",
        ),
    ],
)  # fmt: skip
async def test_url_refuses_in_one_line(
    status_server: str, tmp_path: Path, url: str, args: Sequence[str], code: int, message: str
) -> None:
    got, out, err = await poller(
        "status", "--url", url.format(server=status_server), *args, cwd=tmp_path
    )
    assert (got, out) == (code, "")
    assert err.startswith(message.format(server=status_server)), err
    assert err.count("\n") == 1 and "Traceback" not in err


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound (so no one else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_url_of_nothing_listening_is_a_one_line_error(tmp_path: Path) -> None:
    with refusing_port() as port:
        got, out, err = await poller("status", "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert (got, out) == (1, "")
    assert err == f"poller: cannot reach http://127.0.0.1:{port}/status: Connection refused\n"
