"""Whole mappings against a real moto server over HTTP: the Worker API and the ``poller`` process.

The Python API tests run a :class:`~poller.Worker` inside the test's event loop. The crash and signal
tests run ``python -m poller.cli run config.toml`` as a child process, with a handler module written
next to its config that appends one line per batch it begins and ends to a file (fsynced before the
handler goes on), so a SIGKILL cannot lose what the test reads back. A record counts as processed
only when the batch that carried it logged its end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from poller import PollerConfig, Worker
from poller.stores import SqliteStore
from tests.conformance.kinesis_helpers import AwsSetup, aws_setup
from tests.kit import (
    REGION,
    TypedRecorder,
    drain_queue,
    handler_module,
    json_lines,
    moto_aws,
    pid_alive,
    start_poller,
    wait_until,
    worker_config,
)

pytestmark = pytest.mark.integration

#: Upper bound for a wait in these tests.
WAIT = 15.0
#: Quick pacing for a worker under test: shards polled often, shutdown never waits long.
FAST_WORKER = {
    "idle_poll_seconds": 0.05,
    "shard_discovery_seconds": 2.0,
    "lease_duration_seconds": 2,
}


# --- AWS side ------------------------------------------------------------------------------------


@dataclass
class Stream:
    """A stream, its shards and partition keys that land on each shard."""

    name: str
    arn: str
    shards: list[str]
    keys: dict[str, list[str]]


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[AwsSetup]:
    async with aws_setup(moto_endpoint) as setup:
        yield setup


def _hash_key(key: str) -> int:
    return int(hashlib.md5(key.encode()).hexdigest(), 16)


async def create_stream(aws: AwsSetup, name: str, shards: int, keys_per_shard: int = 3) -> Stream:
    """An ACTIVE stream with ``shards`` shards, and partition keys chosen to reach every shard."""
    arn = await aws.create_stream(name, shards)
    listed = (await aws.kinesis.list_shards(StreamName=name))["Shards"]
    ranges = {
        shard["ShardId"]: (
            int(shard["HashKeyRange"]["StartingHashKey"]),
            int(shard["HashKeyRange"]["EndingHashKey"]),
        )
        for shard in listed
    }
    keys: dict[str, list[str]] = {shard: [] for shard in ranges}
    candidate = 0
    while any(len(chosen) < keys_per_shard for chosen in keys.values()):
        key = f"key-{candidate}"
        candidate += 1
        hashed = _hash_key(key)
        for shard, (low, high) in ranges.items():
            if low <= hashed <= high and len(keys[shard]) < keys_per_shard:
                keys[shard].append(key)
    return Stream(name, arn, sorted(ranges), keys)


async def put(
    aws: AwsSetup, stream: Stream, records: Sequence[tuple[str, bytes]]
) -> dict[str, list[str]]:
    """PutRecords ``(key, data)`` in order; the sequence numbers per shard, in write order."""
    response = await aws.kinesis.put_records(
        StreamName=stream.name,
        Records=[{"PartitionKey": key, "Data": data} for key, data in records],
    )
    assert response["FailedRecordCount"] == 0, response
    written: dict[str, list[str]] = {}
    for entry in response["Records"]:
        written.setdefault(entry["ShardId"], []).append(entry["SequenceNumber"])
    return written


def spread(stream: Stream, count: int, tag: str) -> list[tuple[str, bytes]]:
    """``count`` records cycling over every key of every shard."""
    keys = [key for shard in stream.shards for key in stream.keys[shard]]
    return [(keys[i % len(keys)], f"{tag}-{i}".encode()) for i in range(count)]


def merge(*parts: Mapping[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for part in parts:
        for shard, numbers in part.items():
            merged.setdefault(shard, []).extend(numbers)
    return merged


async def checkpoints(path: Path, mapping_id: str, shards: Iterable[str]) -> dict[str, str | None]:
    """The checkpoint positions the SQLite store at ``path`` holds, per shard.

    None: no record of the shard was checkpointed yet (there may be a LATEST start marker, whose
    position is empty).
    """
    async with SqliteStore(path) as store:
        found: dict[str, str | None] = {}
        for shard in shards:
            checkpoint = await store.get_checkpoint(mapping_id, shard)
            found[shard] = (checkpoint.position or None) if checkpoint is not None else None
        return found


def ordinals(positions: Iterable[str]) -> list[int]:
    return [int(position) for position in positions]


def is_increasing(positions: Sequence[str]) -> bool:
    numbers = ordinals(positions)
    return all(a < b for a, b in itertools.pairwise(numbers))


# --- the Python API --------------------------------------------------------------------------------


def api_config(aws: AwsSetup, store: Path, **mapping: Any) -> PollerConfig:
    return worker_config(
        mapping,
        aws=moto_aws(aws.endpoint),
        store=f"sqlite:///{store}",
        **FAST_WORKER,
        shutdown_grace_seconds=5.0,
    )


async def test_worker_runs_a_mapping_from_first_record_to_stop(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    dlq = await aws.create_queue(f"{unique_name}-dlq")
    written = await put(aws, stream, spread(stream, 40, "lifecycle"))
    assert sorted(written) == stream.shards  # both shards have records
    mapping_id = str(uuid.uuid4())
    store = tmp_path / "state.db"
    config = api_config(
        aws,
        store,
        UUID=mapping_id,
        EventSourceArn=stream.arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=7,
        MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": dlq.arn}},
    )
    handler = TypedRecorder()

    async with Worker(config, handlers={mapping_id: handler}) as worker:
        await wait_until(
            lambda: handler.count() >= 40 and worker.idle,
            within=WAIT,
            what="all 40 records were handled",
        )
        status = worker.status()[mapping_id]

    for batch in handler.batches:
        assert 1 <= len(batch) <= 7
        assert {record.partition for record in batch} == {batch.partition}
        assert batch.mapping == mapping_id and batch.attempt == 1
    for shard in stream.shards:
        # Per-shard order, each record once: exactly the write order.
        assert handler.seen(shard) == written[shard]
        assert status["partitions"][shard]["checkpoint"] == written[shard][-1]
    assert status["metrics"]  # counters are exposed
    assert await checkpoints(store, mapping_id, stream.shards) == {
        shard: numbers[-1] for shard, numbers in written.items()
    }
    assert await drain_queue(aws.sqs, dlq) == []


async def test_typed_handler_failed_records_settle_the_prefix_and_retry_from_the_lowest(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2, keys_per_shard=1)
    poisoned, flaky = stream.shards
    dlq = await aws.create_queue(f"{unique_name}-dlq")
    records = [(stream.keys[poisoned][0], f"p-{i}".encode()) for i in range(10)]
    records += [(stream.keys[flaky][0], f"f-{i}".encode()) for i in range(10)]
    # Shard one: record 4 fails every time. Shard two: record 6 fails on its first attempt only.
    records[4] = (records[4][0], b"poison")
    records[16] = (records[16][0], b"flaky")
    written = await put(aws, stream, records)
    mapping_id = str(uuid.uuid4())
    store = tmp_path / "state.db"
    config = api_config(
        aws,
        store,
        UUID=mapping_id,
        EventSourceArn=stream.arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=100,
        MaximumRetryAttempts=1,
        RetryBackoffSeconds=0.05,
        DestinationConfig={"OnFailure": {"Destination": dlq.arn}},
    )
    handler = TypedRecorder(
        fail=lambda record, attempt: (
            record.data == b"poison" or (record.data == b"flaky" and attempt == 1)
        )
    )

    def caught_up() -> bool:
        partitions = worker.status()[mapping_id]["partitions"]
        return worker.idle and all(
            partitions.get(shard, {}).get("checkpoint") == written[shard][-1]
            for shard in stream.shards
        )

    async with Worker(config, handlers={mapping_id: handler}) as worker:
        await wait_until(
            caught_up, within=WAIT, what="both shards were checkpointed at their last record"
        )

    p, f = written[poisoned], written[flaky]
    batches = {
        shard: [[r.position for r in b] for b in handler.batches if b.partition == shard]
        for shard in stream.shards
    }
    # The records before the lowest failed one settle; the retry starts at the failed record.
    assert batches[poisoned] == [p, p[4:]]
    assert batches[flaky] == [f, f[6:]]
    # The poisoned rest is discarded after MaximumRetryAttempts, the checkpoint moves past it.
    (on_failure,) = await drain_queue(aws.sqs, dlq)
    assert on_failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert on_failure["requestContext"]["approximateInvokeCount"] == 2
    info = on_failure["KinesisBatchInfo"]
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
        poisoned,
        p[4],
        p[-1],
    )
    assert info["batchSize"] == 6 and info["streamArn"] == stream.arn
    assert await checkpoints(store, mapping_id, stream.shards) == {poisoned: p[-1], flaky: f[-1]}


async def test_restarted_worker_resumes_after_the_checkpoint_not_at_latest(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    mapping_id = str(uuid.uuid4())
    store = tmp_path / "state.db"
    config = api_config(
        aws, store, UUID=mapping_id, EventSourceArn=stream.arn, StartingPosition="LATEST"
    )

    first = TypedRecorder()
    async with Worker(config, handlers={mapping_id: first}) as worker:
        # LATEST: records count from the moment each shard's reader is open (caught up).
        await wait_until(
            lambda: worker.idle, within=WAIT, what="the first run caught up with both shards"
        )
        before = await put(aws, stream, spread(stream, 12, "run1"))
        await wait_until(
            lambda: first.count() >= 12 and worker.idle,
            within=WAIT,
            what="the first run handled 12 records",
        )
    assert sorted(before) == stream.shards
    for shard in stream.shards:
        assert first.seen(shard) == before[shard]
    saved = await checkpoints(store, mapping_id, stream.shards)
    assert saved == {shard: numbers[-1] for shard, numbers in before.items()}

    # Written while no worker runs: a restart at LATEST would skip them; the checkpoint must not.
    during = await put(aws, stream, spread(stream, 10, "stopped"))
    second = TypedRecorder()
    async with Worker(config, handlers={mapping_id: second}) as worker:
        await wait_until(
            lambda: second.count() >= 10 and worker.idle,
            within=WAIT,
            what="the second run handled the 10 records written while stopped",
        )
        after = await put(aws, stream, spread(stream, 4, "run2"))
        await wait_until(
            lambda: second.count() >= 14 and worker.idle,
            within=WAIT,
            what="the second run handled 4 more",
        )
    expected = merge(during, after)
    for shard in stream.shards:
        assert second.seen(shard) == expected[shard]  # nothing of run 1 again, nothing skipped
    assert await checkpoints(store, mapping_id, stream.shards) == {
        shard: numbers[-1] for shard, numbers in expected.items()
    }


class CheckpointsLost:
    """The SQLite store, except that no checkpoint write ever lands: a crash right after each success
    was remembered and before the checkpoint moved."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner

    async def put_checkpoint(self, *args: Any) -> None:
        return None

    async def put_checkpoint_fenced(self, *args: Any) -> bool:
        return True  # as if written, and lost in the crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_idempotency_skips_successes_whose_checkpoint_never_landed(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    written = await put(aws, stream, spread(stream, 12, "idem"))
    mapping_id = str(uuid.uuid4())
    store = tmp_path / "state.db"
    config = api_config(
        aws,
        store,
        UUID=mapping_id,
        EventSourceArn=stream.arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=4,
        Idempotency=True,
    )

    first = TypedRecorder()
    async with SqliteStore(store) as sqlite:
        lossy = CheckpointsLost(sqlite)
        async with Worker(config, handlers={mapping_id: first}, store=lossy) as worker:
            await wait_until(
                lambda: first.count() >= 12 and worker.idle,
                within=WAIT,
                what="the first run handled 12 records",
            )
    assert await checkpoints(store, mapping_id, stream.shards) == dict.fromkeys(stream.shards)

    # No checkpoint: the restart reads every shard from TRIM_HORIZON again, and hands nothing over.
    second = TypedRecorder()
    async with Worker(config, handlers={mapping_id: second}) as worker:
        await wait_until(lambda: worker.idle, within=WAIT, what="the second run caught up")
        statuses = worker.status()[mapping_id]["partitions"]
    assert second.batches == []
    for shard in stream.shards:
        assert statuses[shard]["checkpoint"] == written[shard][-1]  # skipped records settle


async def test_restart_at_latest_keeps_records_a_shard_without_checkpoint_got_meanwhile(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    """A shard that had no record yet when the worker stopped has no checkpoint; the mapping's
    LATEST must still mean "from when the mapping first read it", not "from each restart"."""
    stream = await create_stream(aws, unique_name, shards=2)
    busy, quiet = stream.shards
    mapping_id = str(uuid.uuid4())
    store = tmp_path / "state.db"
    config = api_config(
        aws, store, UUID=mapping_id, EventSourceArn=stream.arn, StartingPosition="LATEST"
    )

    first = TypedRecorder()
    async with Worker(config, handlers={mapping_id: first}) as worker:
        await wait_until(
            lambda: worker.idle, within=WAIT, what="the first run caught up with both shards"
        )
        before = await put(aws, stream, [(stream.keys[busy][0], b"only-busy")])
        await wait_until(
            lambda: first.count() >= 1 and worker.idle, within=WAIT, what="the first run handled it"
        )
    assert first.seen(busy) == before[busy]
    assert await checkpoints(store, mapping_id, stream.shards) == {
        busy: before[busy][0],
        quiet: None,
    }

    during = await put(aws, stream, spread(stream, 8, "stopped"))
    second = TypedRecorder()
    async with Worker(config, handlers={mapping_id: second}) as worker:
        await wait_until(
            lambda: len(second.seen(busy)) >= len(during[busy]) and worker.idle,
            within=WAIT,
            what="the second run caught up",
        )
    assert second.seen(busy) == during[busy]
    assert second.seen(quiet) == during[quiet], (
        f"records written to {quiet} while the worker was stopped were skipped: the shard had "
        "no checkpoint, so the restart read it from LATEST again"
    )


# --- the poller process ----------------------------------------------------------------------------

HANDLER_MODULE = handler_module(
    "A Lambda handler, run in the worker's process environments: logs each batch's begin (with "
    "its records and the environment's pid) and end to SEEN_LOG, fsynced, and sleeps between.",
    """
    def handle(event, context):
        records = event["Records"]
        shard = records[0]["eventID"].split(":")[0]
        _log({"event": "begin", "batch": context.aws_request_id, "shard": shard,
              "seqs": [r["kinesis"]["sequenceNumber"] for r in records], "pid": os.getpid()})
        time.sleep(_DELAY)
        _log({"event": "end", "batch": context.aws_request_id, "shard": shard})
    """,
)


@dataclass
class SeenLog:
    """What the child process's handler wrote: batch begin and end lines."""

    path: Path

    def entries(self) -> list[dict[str, Any]]:
        return json_lines(self.path)

    def begun(self) -> list[dict[str, Any]]:
        return [entry for entry in self.entries() if entry["event"] == "begin"]

    def ended(self) -> list[dict[str, Any]]:
        """Batches that began and ended, in the order they began."""
        entries = self.entries()
        done = {entry["batch"] for entry in entries if entry["event"] == "end"}
        return [e for e in entries if e["event"] == "begin" and e["batch"] in done]

    def in_flight(self) -> bool:
        """The last entry is a begin: a batch is in the handler right now (or was, at a kill)."""
        entries = self.entries()
        return bool(entries) and entries[-1]["event"] == "begin"

    def per_shard(self, batches: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for batch in batches:
            seen.setdefault(batch["shard"], []).extend(batch["seqs"])
        return seen


@dataclass
class PollerRun:
    """A ``poller run`` child process and where its output and handler log go."""

    process: Process
    seen: SeenLog
    stdout: Path

    async def wait(self, within: float) -> int:
        with anyio.move_on_after(within):
            return await self.process.wait()
        pytest.fail(f"poller did not exit within {within:g} s; output:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")


@dataclass
class Project:
    """A directory holding config.toml, the handler module and the state store."""

    root: Path
    mapping_id: str
    store_url: str = "sqlite:///state.db"
    runs: list[PollerRun] = field(default_factory=list)

    @property
    def store(self) -> Path:
        """The SQLite state file (when the store is SQLite)."""
        return self.root / "state.db"

    async def start(self, *args: str, delay: float) -> PollerRun:
        index = len(self.runs) + 1
        seen = SeenLog(self.root / f"seen-{index}.jsonl")
        stdout = self.root / f"poller-{index}.log"
        process = await start_poller(
            self.root, *args, seen_log=seen.path, delay=delay, output=stdout
        )
        run = PollerRun(process, seen, stdout)
        self.runs.append(run)
        return run


@pytest.fixture
async def project(aws: AwsSetup, tmp_path: Path) -> AsyncIterator[Callable[..., Project]]:
    """Writes a config for one mapping; kills (by PID) any child process a test left running."""
    made: list[Project] = []

    def make(
        stream: Stream,
        *,
        store: str = "sqlite:///state.db",
        worker: Mapping[str, Any] | None = None,
        **mapping: Any,
    ) -> Project:
        """``store`` is the ``[store] url`` (a DynamoDB table on the moto server, for one);
        ``worker`` overrides ``[worker]`` settings."""
        mapping_id = str(uuid.uuid4())
        fields = {
            "UUID": mapping_id,
            "EventSourceArn": stream.arn,
            "Handler": "seen_handler:handle",
            "StartingPosition": "TRIM_HORIZON",
            **mapping,
        }
        lines = [
            "[aws]",
            f'region = "{REGION}"',
            f'endpoint_url = "{aws.endpoint}"',
            'access_key_id = "testing"',
            'secret_access_key = "testing"',
            "[store]",
            f"url = {json.dumps(store)}",
            "[worker]",
            *(f"{name} = {value}" for name, value in {**FAST_WORKER, **(worker or {})}.items()),
            "shutdown_grace_seconds = 10",
            "[logging]",
            'format = "json"',
            "[[mappings]]",
            *(f"{name} = {json.dumps(value)}" for name, value in fields.items()),
        ]
        (tmp_path / "config.toml").write_text("\n".join(lines) + "\n")
        (tmp_path / "seen_handler.py").write_text(HANDLER_MODULE)
        made.append(Project(tmp_path, mapping_id, store))
        return made[-1]

    yield make
    for each in made:
        for run in each.runs:
            if run.process.returncode is None:
                run.process.kill()
                with anyio.move_on_after(5):
                    await run.process.wait()


@pytest.mark.parametrize("idempotency", [False, True], ids=["plain", "idempotent"])
async def test_kill_9_mid_batch_then_restart_loses_nothing(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str, idempotency: bool
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    written = await put(aws, stream, spread(stream, 40, "crash"))
    here = project(stream, BatchSize=4, Idempotency=idempotency)

    # Each batch stays a second in the handler, so the kill, sent once a shard's second batch
    # began, lands inside a batch even when the machine is slow to deliver it.
    first = await here.start(delay=1.0)

    def second_batch_in_flight() -> bool:
        begun = first.seen.begun()
        shards = [batch["shard"] for batch in begun]
        return first.seen.in_flight() and any(shards.count(s) >= 2 for s in shards)

    await wait_until(
        second_batch_in_flight, within=WAIT, what="a shard's second batch was in the handler"
    )
    # Judged as the signal goes: the environment running the handler is a process of its own,
    # which may still finish its invocation after the worker is gone (its result then reaches
    # no one, and the checkpoint never moves past it).
    in_flight_at_kill = first.seen.in_flight()
    first.process.send_signal(signal.SIGKILL)
    assert await first.wait(within=5) == -signal.SIGKILL
    assert in_flight_at_kill, "the kill was meant to land while a batch was in the handler"

    remembered: dict[str, frozenset[str]] = {}
    if idempotency:
        async with SqliteStore(here.store) as store:
            for shard in stream.shards:
                remembered[shard] = await store.succeeded_among(
                    here.mapping_id, shard, written[shard]
                )
        # A shard's second batch began, so its first one was remembered before the checkpoint moved.
        assert any(remembered.values()), "no success was recorded before the kill"

    second = await here.start("--exit-when-idle", "1", delay=0.0)
    assert await second.wait(within=20) == 0, second.output()[-3000:]

    for run in (first, second):
        for shard, seqs in run.seen.per_shard(run.seen.begun()).items():
            assert is_increasing(seqs), f"{shard} out of order within one run: {seqs}"
    processed = merge(
        first.seen.per_shard(first.seen.ended()), second.seen.per_shard(second.seen.ended())
    )
    for shard in stream.shards:
        missing = set(written[shard]) - set(processed.get(shard, []))
        assert not missing, f"{shard}: records never processed: {sorted(ordinals(missing))}"
    # The batch the kill interrupted never succeeded: it is handed over again (idempotency too).
    interrupted = first.seen.begun()[-1]
    handed_again = second.seen.per_shard(second.seen.begun())
    assert set(interrupted["seqs"]) <= set(handed_again.get(interrupted["shard"], []))
    for shard, done in remembered.items():
        repeated = done & set(handed_again.get(shard, []))
        assert not repeated, f"{shard}: recorded successes handed over again: {sorted(repeated)}"


async def test_sigterm_lets_the_batch_in_flight_finish_and_checkpoints_it(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=1)
    (shard,) = stream.shards
    written = (await put(aws, stream, spread(stream, 20, "term")))[shard]
    here = project(stream, BatchSize=5)

    run = await here.start(delay=1.5)
    await wait_until(run.seen.in_flight, within=WAIT, what="a batch was in the handler")
    run.process.send_signal(signal.SIGTERM)
    assert await run.wait(within=15) == 0, run.output()[-3000:]

    begun, ended = run.seen.begun(), run.seen.ended()
    assert begun == ended, "a batch began and never ended: SIGTERM cut it short"
    assert [batch["seqs"] for batch in begun] == [written[:5]]  # nothing new began after SIGTERM
    saved = await checkpoints(here.store, here.mapping_id, [shard])
    assert saved == {shard: written[4]}
    events = [json.loads(line) for line in run.output().splitlines() if line.startswith("{")]
    stop = [e for e in events if e.get("event") == "signal received; stopping"]
    assert stop and stop[0]["signal"] == "SIGTERM"
    assert not any("abandoning" in str(e.get("event")) for e in events)


async def test_kill_9_of_the_worker_leaves_no_environment_behind(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    await put(aws, stream, spread(stream, 8, "orphan"))
    here = project(stream, BatchSize=2)

    run = await here.start(delay=30.0)
    await wait_until(
        lambda: len(run.seen.begun()) >= 2, within=WAIT, what="both shards' batches in handlers"
    )
    environments = {batch["pid"] for batch in run.seen.begun()}
    assert len(environments) == 2 and all(pid_alive(pid) for pid in environments)
    run.process.send_signal(signal.SIGKILL)
    assert await run.wait(within=5) == -signal.SIGKILL
    await wait_until(
        lambda: not any(pid_alive(pid) for pid in environments),
        within=5,
        what=f"the environments {sorted(environments)} to exit with their worker",
    )


async def test_sigterm_past_the_grace_stops_the_environment_and_the_batch_is_read_again(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=1)
    (shard,) = stream.shards
    written = (await put(aws, stream, spread(stream, 4, "grace")))[shard]
    here = project(stream, BatchSize=4)
    config = here.root / "config.toml"
    config.write_text(
        config.read_text().replace("shutdown_grace_seconds = 10", "shutdown_grace_seconds = 1")
    )

    run = await here.start(delay=20.0)
    await wait_until(run.seen.in_flight, within=WAIT, what="a batch was in the handler")
    (environment,) = {batch["pid"] for batch in run.seen.begun()}
    stopped_at = anyio.current_time()
    run.process.send_signal(signal.SIGTERM)
    assert await run.wait(within=10) == 0, run.output()[-3000:]
    assert anyio.current_time() - stopped_at < 6, "the grace period did not bound the batch"
    assert not pid_alive(environment), "the environment outlived the worker's grace period"
    assert run.seen.ended() == [], "the batch was stopped, not finished"

    again = await here.start("--exit-when-idle", "0.5", delay=0.0)
    assert await again.wait(within=20) == 0, again.output()[-3000:]
    assert again.seen.per_shard(again.seen.ended()) == {shard: written}


async def test_a_thread_stuck_past_its_timeout_does_not_keep_the_worker_from_exiting(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=1)
    (shard,) = stream.shards
    written = (await put(aws, stream, spread(stream, 2, "stuck")))[shard]
    here = project(stream, BatchSize=2)
    config = here.root / "config.toml"
    text = config.read_text().replace('Handler = "seen_handler:handle"', 'FunctionName = "stuck"')
    text += (
        '[[functions]]\nFunctionName = "stuck"\nHandler = "stuck_handler.handle"\n'
        'Isolation = "thread"\nTimeout = 1\n'
    )
    config.write_text(text)
    (here.root / "stuck_handler.py").write_text(
        "import os, time\n"
        "def handle(event, context):\n"
        "    if not os.path.exists('stuck'):\n"
        "        open('stuck', 'w').close()\n"
        "        time.sleep(120)\n"
    )

    run = await here.start("--exit-when-idle", "0.5", delay=0.0)
    assert await run.wait(within=20) == 0, run.output()[-3000:]
    events = [json.loads(line) for line in run.output().splitlines() if line.startswith("{")]
    assert any("Task timed out after 1.00 seconds" in str(e.get("reason")) for e in events)
    assert any("still running past their timeout" in str(e.get("event")) for e in events)
    assert await checkpoints(here.store, here.mapping_id, [shard]) == {shard: written[-1]}


async def test_exit_when_idle_exits_zero_once_caught_up(
    aws: AwsSetup, project: Callable[..., Project], unique_name: str
) -> None:
    stream = await create_stream(aws, unique_name, shards=2)
    written = await put(aws, stream, spread(stream, 16, "idle"))
    here = project(stream, BatchSize=3)

    run = await here.start("--exit-when-idle", "0.5", delay=0.0)
    assert await run.wait(within=20) == 0, run.output()[-3000:]

    assert run.seen.per_shard(run.seen.ended()) == written
    assert await checkpoints(here.store, here.mapping_id, stream.shards) == {
        shard: numbers[-1] for shard, numbers in written.items()
    }
    events = [json.loads(line) for line in run.output().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "every mapping idle; exiting" for e in events)
