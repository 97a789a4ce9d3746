"""``poller replay`` end to end on the moto server and tansu: a real worker reads a stream, the
command moves its checkpoints (SQLite and DynamoDB stores) or its group's offsets, and a real
worker run afterwards reads again from exactly the chosen record. Leases held by a running
worker refuse the replay; ``--force`` waits until the worker lets them go.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import structlog

from poller import Worker
from poller.cli import main
from poller.cli.loading import add_config_arguments
from poller.cli.replay import add_replay_arguments, replay_command
from poller.config import PollerConfig
from tests.integration.kafka_helpers import (
    Handed,
    committed,
    create_topic,
    kafka_config,
    kafka_mapping,
    produce,
    wait_committed,
)
from tests.kit import (
    ACCOUNT,
    REGION,
    LambdaRecorder,
    create_stream,
    create_table_with_stream,
    moto_aws,
    moto_clients,
    poller_config,
    run_until_idle,
    stream_mapping,
    wait_until,
)
from tests.kit.redrive_kit import write_config

pytestmark = pytest.mark.integration

M = "replayed"


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """The command configures logging for the process (to the stderr pytest captures and later
    closes): put back what the tests after it log with."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
async def kinesis(moto_endpoint: str) -> AsyncIterator[Any]:
    async with moto_clients(moto_endpoint, "kinesis") as (client,):
        yield client


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return f"dynamodb://replay-{uuid.uuid4().hex[:10]}"


async def put(kinesis: Any, stream: str, bodies: list[str]) -> list[str]:
    """Write ``bodies`` in order to the one shard; their sequence numbers."""
    return [
        (await kinesis.put_record(StreamName=stream, Data=body.encode(), PartitionKey="k"))[
            "SequenceNumber"
        ]
        for body in bodies
    ]


def replay_args(*argv: str, mapping: str = M) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    add_replay_arguments(parser)
    return parser.parse_args(["--mapping", mapping, *argv])


async def replay(
    config: PollerConfig, capsys: pytest.CaptureFixture[str], *argv: str, mapping: str = M
) -> tuple[int, str, str]:
    """Run the command (in a thread: it runs its own event loop); exit code, stdout, stderr."""
    capsys.readouterr()  # what the workers before it logged
    args = replay_args(*argv, mapping=mapping)
    code = await anyio.to_thread.run_sync(replay_command, config, args)
    out, err = capsys.readouterr()
    return code, out, err


def decoded(recorder: LambdaRecorder) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in recorder.records()]


async def read_all(config: PollerConfig) -> list[str]:
    """What a fresh worker hands its function until the mapping is idle."""
    recorder = LambdaRecorder()
    await run_until_idle(Worker(config, handlers={M: recorder}), within=60.0, idle_for=0.5)
    return decoded(recorder)


async def stream_with_history(
    kinesis: Any, unique_name: str, moto_endpoint: str, store_url: str, count: int = 8
) -> tuple[PollerConfig, str, list[str]]:
    """A stream whose ``count`` records a worker has read (idempotency on)."""
    arn = await create_stream(kinesis, unique_name)
    sequence = await put(kinesis, unique_name, [f"r{n}" for n in range(count)])
    config = poller_config(
        moto_endpoint,
        stream_mapping(arn, uuid=M, BatchSize=3, Idempotency=True),
        store_url=store_url,
    )
    assert await read_all(config) == [f"r{n}" for n in range(count)]
    return config, arn, sequence


async def test_at_sequence_rereads_from_exactly_that_record(
    kinesis: Any,
    unique_name: str,
    moto_endpoint: str,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _, sequence = await stream_with_history(kinesis, unique_name, moto_endpoint, store_url)
    shard = "shardId-000000000000"
    code, out, err = await replay(
        config, capsys, "--at-sequence", sequence[5], "--partition", shard, "--json"
    )
    assert code == 0, err
    (moved,) = json.loads(out)["partitions"]
    assert moved["partition"] == shard and moved["before"]["position"] == sequence[-1]
    assert moved["after"]["position"] == str(int(sequence[5]) - 1)
    # The idempotency records of the shard are forgotten, or the re-read would be skipped.
    assert moved["idempotency_records_forgotten"] == 8
    assert await read_all(config) == ["r5", "r6", "r7"]
    # The replayed records were checkpointed again: nothing more to read.
    assert await read_all(config) == []


async def test_trim_horizon_and_latest(
    kinesis: Any,
    unique_name: str,
    moto_endpoint: str,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _, sequence = await stream_with_history(kinesis, unique_name, moto_endpoint, store_url)
    code, out, err = await replay(config, capsys, "--trim-horizon")
    assert code == 0, err
    assert sequence[-1] in out and "resumes at" in out
    assert await read_all(config) == [f"r{n}" for n in range(8)]
    code, out, err = await replay(config, capsys, "--latest")
    assert code == 0, err
    await put(kinesis, unique_name, ["late"])
    assert await read_all(config) == ["late"]


async def test_at_timestamp_rereads_what_arrived_since(
    kinesis: Any,
    unique_name: str,
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    arn = await create_stream(kinesis, unique_name)
    await put(kinesis, unique_name, ["old-1", "old-2"])
    await anyio.sleep(1.1)  # arrival times a second apart: the moment falls between them
    moment = time.time()
    await anyio.sleep(0.1)
    await put(kinesis, unique_name, ["new-1", "new-2"])
    config = poller_config(
        moto_endpoint, stream_mapping(arn, uuid=M), store_url=f"sqlite:///{tmp_path / 's.db'}"
    )
    assert len(await read_all(config)) == 4
    code, _, err = await replay(config, capsys, "--at-timestamp", f"{moment:.3f}")
    assert code == 0, err
    assert await read_all(config) == ["new-1", "new-2"]


async def test_dry_run_writes_nothing(
    kinesis: Any,
    unique_name: str,
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config, _, sequence = await stream_with_history(kinesis, unique_name, moto_endpoint, url)
    code, out, err = await replay(config, capsys, "--trim-horizon", "--dry-run")
    assert code == 0, err
    assert "dry run" in out and str(int(sequence[0]) - 1) in out
    assert await read_all(config) == []


async def test_refused_while_a_worker_holds_leases_and_force_waits_for_it(
    kinesis: Any,
    unique_name: str,
    moto_endpoint: str,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _, _ = await stream_with_history(kinesis, unique_name, moto_endpoint, store_url)
    recorder = LambdaRecorder()
    worker = Worker(config, handlers={M: recorder})
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await put(kinesis, unique_name, ["live"])  # read only once the worker holds the lease
        await wait_until(lambda: decoded(recorder) == ["live"], within=30, what="'live' read")
        code, _, err = await replay(config, capsys, "--trim-horizon")
        assert code == 2
        assert config.worker.worker_id in err and "shardId-000000000000" in err
        # --force waits, saying so, until the worker stops and releases its lease.
        codes: list[int] = []

        async def forced() -> None:
            args = replay_args("--trim-horizon", "--force", "--wait", "60")
            codes.append(await anyio.to_thread.run_sync(replay_command, config, args))

        group.start_soon(forced)
        said = ""
        with anyio.fail_after(60):
            while "waiting" not in said:
                said += capsys.readouterr().err
                await anyio.sleep(0.05)
        assert not codes, "replay went ahead while the worker held the lease"
        assert config.worker.worker_id in said
        worker.stop()
    assert codes == [0], capsys.readouterr().err
    assert await read_all(config) == [*(f"r{n}" for n in range(8)), "live"]


async def test_dynamodb_stream_at_timestamp_scans_from_the_oldest_record(
    moto_endpoint: str,
    unique_name: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    async with moto_clients(moto_endpoint, "dynamodb") as (dynamodb,):
        arn = await create_table_with_stream(dynamodb, unique_name)

        async def write(n: int) -> None:
            await dynamodb.put_item(
                TableName=unique_name, Item={"pk": {"S": f"item-{n}"}, "sk": {"N": str(n)}}
            )

        await write(1)
        await write(2)
        await anyio.sleep(1.1)
        moment = time.time()
        await anyio.sleep(0.1)
        await write(3)
        config = poller_config(
            moto_endpoint, stream_mapping(arn, uuid=M), store_url=f"sqlite:///{tmp_path / 'd.db'}"
        )
        recorder = LambdaRecorder()
        await run_until_idle(Worker(config, handlers={M: recorder}), within=60, idle_for=0.5)
        assert len(recorder.records()) == 3
        code, _, err = await replay(config, capsys, "--at-timestamp", f"{moment:.3f}")
        assert code == 0, err
        again = LambdaRecorder()
        await run_until_idle(Worker(config, handlers={M: again}), within=60, idle_for=0.5)
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in again.records()]
        assert keys == ["item-3"]


# --- Kafka: the consumer group's committed offsets ---------------------------------------------------


async def kafka_history(bootstrap: str, topic_name: str) -> tuple[PollerConfig, str]:
    """A two-partition topic with offsets 0..5 on each, read and committed by a worker."""
    topic = await create_topic(bootstrap, topic_name, 2)
    await produce(bootstrap, topic, [(n % 2, f"v{n}".encode(), None) for n in range(12)])
    config = kafka_config(kafka_mapping(bootstrap, topic, topic_name))
    handed = Handed()
    async with Worker(config, handlers={topic_name: handed}):
        await wait_until(lambda: len(handed.records()) >= 12, within=60, what="12 records")
        assert await wait_committed(bootstrap, topic_name, topic, {0: 6, 1: 6}) == {0: 6, 1: 6}
    return config, topic


async def kafka_read(config: PollerConfig, group: str, count: int) -> dict[int, list[int]]:
    """The offsets a new worker of the group hands over, once ``count`` records were handed."""
    handed = Handed()
    async with Worker(config, handlers={group: handed}):
        await wait_until(lambda: len(handed.records()) >= count, within=60, what="records")
        await anyio.sleep(0.5)  # anything more would be a record the replay should not give
    return handed.offsets_by_partition()


async def test_kafka_offsets_move_and_the_group_rereads_from_there(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, topic = await kafka_history(kafka_bootstrap, unique_name)
    code, out, err = await replay(
        config,
        capsys,
        "--at-sequence",
        "2",
        "--partition",
        f"{topic}-0",
        "--json",
        "--force",  # tansu lists the stopped worker's member until the group rebalances
        mapping=unique_name,
    )
    assert code == 0, err
    (moved,) = json.loads(out)["partitions"]
    assert moved == {
        "partition": f"{topic}-0",
        "before": {"offset": 6},
        "after": {"offset": 2},
        "note": "resumes at offset 2",
        "idempotency_records_forgotten": None,
        "failed": False,
    }
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 2, 1: 6}
    assert await kafka_read(config, unique_name, 4) == {0: [2, 3, 4, 5]}
    code, out, err = await replay(
        config, capsys, "--trim-horizon", "--dry-run", mapping=unique_name
    )
    assert code == 0, err
    assert "dry run" in out
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 6, 1: 6}
    await replay(config, capsys, "--trim-horizon", "--force", mapping=unique_name)
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 0, 1: 0}
    code, _, err = await replay(config, capsys, "--latest", "--force", mapping=unique_name)
    assert code == 0, err
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 6, 1: 6}


async def test_kafka_replay_is_refused_while_the_group_has_members(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, topic = await kafka_history(kafka_bootstrap, unique_name)
    handed = Handed()
    async with Worker(config, handlers={unique_name: handed}):
        await produce(kafka_bootstrap, topic, [(0, b"live", None)])
        await wait_until(lambda: len(handed.records()) == 1, within=60, what="'live' read")
        code, _, err = await replay(config, capsys, "--trim-horizon", mapping=unique_name)
        assert code == 2 and "active members" in err
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 7, 1: 6}
    code, _, err = await replay(
        config, capsys, "--trim-horizon", "--force", "--wait", "30", mapping=unique_name
    )
    assert code == 0, err
    assert await committed(kafka_bootstrap, unique_name, topic, 2) == {0: 0, 1: 0}


# --- the command line ------------------------------------------------------------------------------


async def test_the_command_line_replays_and_refuses_with_exit_2(
    kinesis: Any,
    unique_name: str,
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config, arn, sequence = await stream_with_history(kinesis, unique_name, moto_endpoint, url)
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique_name}"
    path = write_config(
        tmp_path / "config.toml",
        {
            "aws": moto_aws(moto_endpoint),
            "store": {"url": url},
            "mappings": [
                stream_mapping(arn, uuid=M, BatchSize=3, Idempotency=True),
                {"UUID": "a-queue", "EventSourceArn": queue},
            ],
        },
    )

    async def poller(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await anyio.to_thread.run_sync(main, ["replay", str(path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = await poller("--mapping", M, "--trim-horizon", "--json", "--dry-run")
    assert code == 0, err
    (planned,) = json.loads(out)["partitions"]
    assert planned["before"]["position"] == sequence[-1]
    assert planned["after"]["position"] == str(int(sequence[0]) - 1)
    refusals = {
        ("--mapping", M, "--at-sequence", sequence[2]): "needs --partition",
        ("--mapping", M, "--at-sequence", "12x", "--partition", "p"): "decimal digits",
        ("--mapping", M, "--latest", "--partition", "shardId-9"): "no such shard",
        ("--mapping", "nope", "--latest"): "no such mapping",
        ("--mapping", "a-queue", "--latest"): "poller redrive",
        ("--mapping", M, "--at-timestamp", "soon"): "ISO 8601",
        ("--mapping", M, "--latest", "--force", "--wait", "0"): "--wait 0",
    }
    for argv, said in refusals.items():
        code, _, err = await poller(*argv)
        assert (code, said in err) == (2, True), (argv, err)
        assert "Traceback" not in err
    # Nothing above wrote: the next worker has nothing to read.
    assert await read_all(config) == []
