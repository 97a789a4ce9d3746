"""The ``poller`` command: ``validate`` verdicts and exit codes, and ``run --esm`` on a real server.

Refused configs are checked through :func:`poller.cli.main` in this process (fast, and the same
code the console script runs); the exit codes and streams of a real process are checked with
``python -m poller.cli``. ``run --esm`` talks to the moto server over HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from poller.cli import main
from tests.kit import ACCOUNT, REGION, create_stream, moto_clients

pytestmark = pytest.mark.integration

STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/cli-validate"

#: The fields a good mapping needs; each refused case changes one thing.
GOOD = {
    "EventSourceArn": STREAM_ARN,
    "Handler": "HANDLER:handle",
    "StartingPosition": "LATEST",
}


def toml_value(value: Any) -> str:
    """A TOML value: JSON spells strings, numbers and booleans the same; tables are inline."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def toml_config(mapping: dict[str, Any]) -> str:
    lines = ["[[mappings]]", *(f"{name} = {toml_value(value)}" for name, value in mapping.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The current directory, holding a handler module under a name unique to the test."""
    module = f"cli_handler_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{module}.py").write_text("def handle(event, context):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path, module


def write_config(workdir: tuple[Path, str], mapping: dict[str, Any]) -> Path:
    root, module = workdir
    if isinstance(mapping.get("Handler"), str):
        mapping = {**mapping, "Handler": mapping["Handler"].replace("HANDLER", module)}
    path = root / "config.toml"
    path.write_text(toml_config(mapping))
    return path


def poller_process(
    args: Sequence[str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """``python -m poller.cli ARGS`` in ``cwd``, with output captured."""
    return subprocess.run(
        [sys.executable, "-m", "poller.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- validate ----------------------------------------------------------------------------------------


def test_validate_accepts_a_good_config_and_exits_0(workdir: tuple[Path, str]) -> None:
    config = write_config(workdir, {**GOOD, "BatchSize": 10, "MaximumRetryAttempts": 3})

    done = poller_process(["validate", str(config)], cwd=workdir[0])

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "config OK: 1 mapping"
    assert done.stderr == ""


def test_validate_refuses_a_bad_config_with_exit_2_on_stderr(workdir: tuple[Path, str]) -> None:
    config = write_config(workdir, {**GOOD, "BatchSize": 0})

    done = poller_process(["validate", str(config)], cwd=workdir[0])

    assert done.returncode == 2
    assert done.stdout == ""
    assert "mappings[0].BatchSize: 0 is out of range (allowed 1..10000)" in done.stderr


FIFO_DLQ = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures.fifo"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"BatchSize": 0},
            ["mappings[0].BatchSize", "0 is out of range", "allowed 1..10000"],
            id="batch-size-0",
        ),
        pytest.param(
            {"batch_size": 10001},
            ["batch_size", "10001 is out of range", "allowed 1..10000"],
            id="snake-case-batch-size-10001",
        ),
        pytest.param(
            {"MaximumRetryAttempts": 20000},
            ["mappings[0].MaximumRetryAttempts", "20000", "allowed -1 or 0..10000"],
            id="retry-attempts-20000",
        ),
        pytest.param(
            {"MaximumRecordAgeInSeconds": 30},
            ["mappings[0].MaximumRecordAgeInSeconds", "30", "allowed -1 or 60..604800"],
            id="record-age-30",
        ),
        pytest.param(
            {"BatchSzie": 10},
            ["mappings[0].BatchSzie", "unknown field"],
            id="unknown-field",
        ),
        pytest.param(
            {"DestinationConfig": {"OnFailure": {"Destination": FIFO_DLQ}}},
            [
                "mappings[0].DestinationConfig.OnFailure.Destination",
                FIFO_DLQ,
                "FIFO",
                "standard queue or topic",
            ],
            id="fifo-destination",
        ),
        pytest.param(
            {"StartingPosition": None},
            ["mappings[0]", "StartingPosition", "missing", "TRIM_HORIZON, LATEST, AT_TIMESTAMP"],
            id="missing-starting-position",
        ),
        pytest.param(
            {"StartingPosition": "AT_TIMESTAMP"},
            ["StartingPositionTimestamp", "missing", "AT_TIMESTAMP"],
            id="at-timestamp-without-timestamp",
        ),
        pytest.param(
            {"StartingPosition": "EARLIEST"},
            ["mappings[0].StartingPosition", "'EARLIEST'", "TRIM_HORIZON", "LATEST"],
            id="unknown-starting-position",
        ),
        pytest.param(
            {"Handler": "HANDLER"},
            ["Handler", "HANDLER", "'module.function' or 'module:function'"],
            id="handler-without-colon",
        ),
        pytest.param(
            {"Handler": "no_such_module_4f1c:handle"},
            ["mappings[0].Handler", "no_such_module_4f1c", "not found"],
            id="handler-module-not-found",
        ),
        pytest.param(
            {"Handler": "HANDLER:missing"},
            ["mappings[0].Handler", "'missing'", "has no attribute"],
            id="handler-attribute-missing",
        ),
    ],
)
def test_validate_names_field_value_and_allowed_range(
    workdir: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    expected: list[str],
) -> None:
    mapping = {name: value for name, value in {**GOOD, **change}.items() if value is not None}
    module = workdir[1]
    config = write_config(workdir, mapping)

    code = main(["validate", str(config)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("poller: ")
    for fragment in expected:
        assert fragment.replace("HANDLER", module) in err


def test_validate_reports_every_problem_at_once(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(workdir, {**GOOD, "BatchSize": 0, "MaximumRetryAttempts": 20000})

    assert main(["validate", str(config)]) == 2

    err = capsys.readouterr().err
    assert "BatchSize: 0 is out of range" in err
    assert "MaximumRetryAttempts: 20000 is out of range" in err


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_binary_config_is_refused_in_one_line(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = workdir[0] / "image.png"
    path.write_bytes(PNG)

    assert main([command, str(path)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"poller: {path}: not a TOML text file (byte 0x89 at offset 0 is not UTF-8; is it a "
        "binary file?)\n"
    )


def test_a_binary_mapping_json_is_refused_in_one_line(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir[0] / "mapping.json"
    path.write_bytes(PNG)

    assert main(["validate", "--esm", str(path), "--handler", "m:f"]) == 2
    assert capsys.readouterr().err == (
        f"poller: {path}: not a JSON text file (byte 0x89 at offset 0 is not UTF-8; is it a "
        "binary file?)\n"
    )


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("text", ["", '[aws]\nregion = "us-east-1"\n'], ids=["empty", "aws-only"])
def test_a_config_without_mappings_is_refused(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str], command: str, text: str
) -> None:
    path = workdir[0] / "config.toml"
    path.write_text(text)

    assert main([command, str(path), *(["--exit-when-idle", "0"] if command == "run" else [])]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("poller: invalid config:\n  mappings: none given; ")
    assert "at least one [[mappings]] table" in err


def test_validate_names_a_region_typo_with_the_allowed_regions(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    arn = STREAM_ARN.replace(REGION, "us-eest-1")
    config = write_config(workdir, {**GOOD, "EventSourceArn": arn})

    assert main(["validate", str(config)]) == 2

    err = capsys.readouterr().err
    assert "mappings[0].EventSourceArn: region 'us-eest-1' is not an AWS region" in err
    assert "did you mean" in err and "'us-east-1'" in err
    assert "allowed in partition 'aws'" in err and "eu-west-1" in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_source_in_another_region_than_the_embedded_endpoints_is_refused(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """The embedded endpoint creates the stream in [aws] region and poller reads it there: an ARN
    of another region would be created in one and read from the other, never found. It is
    refused before anything starts."""
    root, module = workdir
    path = root / "config.toml"
    path.write_text(
        '[aws]\nregion = "us-east-1"\nendpoint_url = "embedded"\n\n[store]\nurl = "memory://"\n\n'
        + toml_config(
            {
                **GOOD,
                "EventSourceArn": STREAM_ARN.replace(REGION, "eu-west-1"),
                "Handler": f"{module}:handle",
            }
        )
    )

    assert main([command, str(path), *(["--exit-when-idle", "0"] if command == "run" else [])]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert (
        "mappings[0].EventSourceArn: region 'eu-west-1' is not the [aws] region 'us-east-1' "
        "(allowed: 'us-east-1')"
    ) in err
    assert "Traceback" not in err


def test_validate_warns_of_a_region_newer_than_botocore_and_accepts_it(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, module = workdir
    path = root / "config.toml"
    path.write_text(
        '[aws]\nregion = "eu-west-99"\n\n'
        + toml_config(
            {
                **GOOD,
                "EventSourceArn": STREAM_ARN.replace(REGION, "eu-west-99"),
                "Handler": f"{module}:handle",
            }
        )
    )

    assert main(["validate", str(path)]) == 0

    out, err = capsys.readouterr()
    assert out == "config OK: 1 mapping\n"
    assert err.startswith("poller: warning: aws.region: region 'eu-west-99' is not one botocore")
    assert "poller: warning: mappings[0].EventSourceArn: region 'eu-west-99'" in err


THREE_ARGUMENTS = "def handle(event, context, extra):\n    return None\n"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_handler_poller_cannot_call_is_refused_with_its_signature(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    module = f"three_args_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{module}.py").write_text(THREE_ARGUMENTS)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(toml_config({**GOOD, "Handler": f"{module}:handle"}))

    assert main([command, str(path), *(["--exit-when-idle", "0"] if command == "run" else [])]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "poller: invalid config:\n"
        f"  mappings[0].Handler: '{module}:handle' takes handle(event, context, extra); poller "
        "calls handler(event, context) (Lambda style) or handler(batch) (typed)\n"
    )


def test_validate_refuses_a_function_handler_environments_could_not_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = f"three_args_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{module}.py").write_text(THREE_ARGUMENTS)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[[functions]]\nFunctionName = "fn"\nHandler = "{module}.handle"\n\n'
        + toml_config(
            {"EventSourceArn": STREAM_ARN, "FunctionName": "fn", "StartingPosition": "LATEST"}
        )
    )

    assert main(["validate", str(path)]) == 2

    err = capsys.readouterr().err
    assert (
        f"functions['fn'].Handler: '{module}.handle' takes handle(event, context, extra); poller "
        "calls handler(event, context)\n"
    ) in err


def test_validate_reports_missing_handlers_with_every_other_problem(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused config still has its handlers imported, so one run names everything."""
    root, module = workdir
    path = root / "config.toml"
    mappings = [
        {**GOOD, "BatchSize": 0, "Handler": "no_such_module_77c1:handle"},
        {**GOOD, "UUID": "second", "Handler": f"{module}:missing"},
        {**GOOD, "UUID": "third", "EventSourceArn": STREAM_ARN.replace(REGION, "eu-west-1")},
    ]
    path.write_text("".join(toml_config(m) for m in mappings).replace("HANDLER", module))

    assert main(["validate", str(path)]) == 2

    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "poller: invalid config:"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "mappings[0].BatchSize",
        "mappings[0].Handler",
        "mappings[1].Handler",
        "mappings[2].EventSourceArn",
    ]
    assert any("'no_such_module_77c1' not found" in line for line in lines)
    assert any("has no attribute 'missing'" in line for line in lines)


def test_validate_reports_a_missing_mapping_handler_and_a_broken_function_together(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, module = workdir
    path = root / "config.toml"
    path.write_text(
        f'[[functions]]\nFunctionName = "fn"\nHandler = "{module}.absent"\n\n'
        + toml_config({**GOOD, "Handler": "no_such_module_9d2e:handle"})
        + toml_config(
            {"EventSourceArn": STREAM_ARN, "FunctionName": "fn", "StartingPosition": "LATEST"}
        )
    )

    assert main(["validate", str(path)]) == 2

    err = capsys.readouterr().err
    assert "mappings[0].Handler: Handler 'no_such_module_9d2e:handle': module" in err
    assert f"functions['fn'].Handler: Handler '{module}.absent': module" in err
    assert err.count("no_such_module_9d2e") == 2  # once: the reference and its module, one line


def esm_json(arn: str, mapping_id: str, **fields: Any) -> dict[str, Any]:
    """A mapping as ``aws lambda get-event-source-mapping`` prints it, read-only fields included."""
    return {
        "UUID": mapping_id,
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "EventSourceArn": arn,
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:process-records",
        "LastModified": 1763802123.456,
        "LastProcessingResult": "No records processed",
        "State": "Enabled",
        "StateTransitionReason": "User action",
        "DestinationConfig": {"OnFailure": {}},
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": False,
        "MaximumRetryAttempts": -1,
        "TumblingWindowInSeconds": 0,
        "FunctionResponseTypes": [],
        "EventSourceMappingArn": (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{mapping_id}"
        ),
        **fields,
    }


def test_validate_esm_json_ignores_read_only_fields(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, module = workdir
    path = root / "mapping.json"
    path.write_text(json.dumps(esm_json(STREAM_ARN, str(uuid.uuid4()))))

    assert main(["validate", "--esm", str(path), "--handler", f"{module}:handle"]) == 0
    assert capsys.readouterr().out.strip() == "config OK: 1 mapping"


def test_validate_esm_json_accepts_snake_case_and_refuses_bad_values(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, module = workdir
    path = root / "mapping.json"
    snake = {"event_source_arn": STREAM_ARN, "starting_position": "LATEST", "batch_size": 50}
    path.write_text(json.dumps(snake))
    assert main(["validate", "--esm", str(path), "--handler", f"{module}:handle"]) == 0
    capsys.readouterr()

    path.write_text(json.dumps({**snake, "parallelization_factor": 11}))
    assert main(["validate", "--esm", str(path), "--handler", f"{module}:handle"]) == 2
    err = capsys.readouterr().err
    assert "parallelization_factor: 11 is out of range (allowed 1..10)" in err


def test_esm_without_handler_is_refused(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir[0] / "mapping.json"
    mapping_id = str(uuid.uuid4())
    path.write_text(json.dumps(esm_json(STREAM_ARN, mapping_id)))

    assert main(["validate", "--esm", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no FunctionName or Handler given" in err and mapping_id in err


def test_run_refuses_a_bad_config_before_reading(
    workdir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(workdir, {**GOOD, "BatchSize": 0})

    assert main(["run", str(config), "--exit-when-idle", "0"]) == 2
    assert "BatchSize: 0 is out of range" in capsys.readouterr().err
    assert main(["run", "--esm", str(workdir[0] / "absent.json"), "--handler", "m:f"]) == 2
    assert "cannot read the mapping JSON" in capsys.readouterr().err


# --- run --esm against moto ------------------------------------------------------------------------

LAMBDA_HANDLER = '''
"""A Lambda-style handler: logs each record it sees to SEEN_LOG; fails FAIL_ONCE the first time."""

import base64
import json
import os

_failed = set()


def handler(event, context):
    failures = []
    with open(os.environ["SEEN_LOG"], "a") as log:
        for record in event["Records"]:
            kinesis = record["kinesis"]
            data = base64.b64decode(kinesis["data"]).decode()
            log.write(json.dumps({"shard": record["eventID"].split(":")[0],
                                  "seq": kinesis["sequenceNumber"],
                                  "source": record["eventSourceARN"],
                                  "function": context.function_name}) + "\\n")
            if data.endswith(os.environ["FAIL_ONCE"]) and data not in _failed:
                _failed.add(data)
                failures.append({"itemIdentifier": kinesis["sequenceNumber"]})
    return {"batchItemFailures": failures}
'''


@pytest.fixture
async def kinesis(moto_endpoint: str) -> AsyncIterator[Any]:
    async with moto_clients(moto_endpoint, "kinesis") as (client,):
        yield client


async def test_run_esm_json_processes_records_and_logs_json_without_payloads(
    kinesis: Any, moto_endpoint: str, tmp_path: Path, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name, shards=2)
    secret = f"SECRET-{uuid.uuid4().hex}"
    payloads = [f"{secret}-{i}".encode() for i in range(12)]
    response = await kinesis.put_records(
        StreamName=unique_name,
        Records=[{"PartitionKey": f"key-{i % 5}", "Data": data} for i, data in enumerate(payloads)],
    )
    written = {(entry["ShardId"], entry["SequenceNumber"]) for entry in response["Records"]}
    shards = {shard for shard, _ in written}
    mapping_id = str(uuid.uuid4())
    (tmp_path / "mapping.json").write_text(
        json.dumps(
            esm_json(
                arn, mapping_id, BatchSize=4, FunctionResponseTypes=["ReportBatchItemFailures"]
            ),
            indent=2,
        )
    )
    (tmp_path / "esm_handler.py").write_text(textwrap.dedent(LAMBDA_HANDLER))
    seen_log = tmp_path / "seen.jsonl"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "SEEN_LOG": str(seen_log),
        "FAIL_ONCE": "-5",
    }
    command = [
        sys.executable,
        "-m",
        "poller.cli",
        "run",
        "--esm",
        "mapping.json",
        "--handler",
        "esm_handler:handler",
        "--region",
        REGION,
        "--endpoint-url",
        moto_endpoint,
        "--exit-when-idle",
        "1",
    ]

    with anyio.fail_after(25):
        done = await anyio.run_process(command, cwd=tmp_path, env=env, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()

    assert done.returncode == 0, stdout[-3000:] + stderr[-3000:]
    seen = [json.loads(line) for line in seen_log.read_text().splitlines()]
    assert {(entry["shard"], entry["seq"]) for entry in seen} == written
    assert {entry["source"] for entry in seen} == {arn}
    (function_name,) = {entry["function"] for entry in seen}
    assert function_name  # the Lambda context is filled in
    assert (tmp_path / ".poller" / "state.db").exists()  # the default store, under the cwd

    # stdout is a pipe, so every log line is one JSON object.
    lines = stdout.splitlines()
    assert lines, "no log output"
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events)
    per_shard = [e for e in events if "shard" in e]
    assert {e["shard"] for e in per_shard} >= shards
    for event in per_shard:
        assert event.get("mapping") == mapping_id, f"engine line without mapping id: {event}"
    for event in (e for e in events if "batch" in e):
        assert event.get("shard") in shards, f"batch line without shard id: {event}"
    starting = [e for e in events if e["event"] == "partition starting"]
    assert {e["shard"] for e in starting} == shards
    partial = [e for e in events if e["event"] == "batch partially failed"]
    assert partial and all(e["mapping"] == mapping_id and e["shard"] in shards for e in partial)

    # No payload in any log, neither as text nor as the base64 the event carries.
    for text in (stdout, stderr):
        assert secret not in text
        for data in payloads:
            assert base64.b64encode(data).decode() not in text


FOREIGN_RECORD_HANDLER = '''
"""A typed handler with a bug: once, it names a record of an earlier batch as failed."""

_earlier = []
_returned = []


def handle(batch):
    if _earlier and not _returned:
        _returned.append(True)
        return [_earlier[0]]
    _earlier.extend(batch)
    return None
'''


async def test_run_keeps_payloads_out_of_logs_when_a_handler_names_a_foreign_record(
    kinesis: Any, moto_endpoint: str, tmp_path: Path, unique_name: str
) -> None:
    arn = await create_stream(kinesis, unique_name, shards=1)
    secret = f"SECRET-{uuid.uuid4().hex}"
    payloads = [f"{secret}-{i}".encode() for i in range(4)]
    await kinesis.put_records(
        StreamName=unique_name, Records=[{"PartitionKey": "k", "Data": d} for d in payloads]
    )
    (tmp_path / "mapping.json").write_text(
        json.dumps(esm_json(arn, str(uuid.uuid4()), BatchSize=2))
    )
    (tmp_path / "foreign_handler.py").write_text(textwrap.dedent(FOREIGN_RECORD_HANDLER))
    command = [
        sys.executable,
        "-m",
        "poller.cli",
        "run",
        "--esm",
        "mapping.json",
        "--handler",
        "foreign_handler:handle",
        "--region",
        REGION,
        "--endpoint-url",
        moto_endpoint,
        "--exit-when-idle",
        "1",
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    with anyio.fail_after(25):
        done = await anyio.run_process(command, cwd=tmp_path, env=env, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()

    assert done.returncode == 0, stdout[-3000:] + stderr[-3000:]
    events = [json.loads(line) for line in stdout.splitlines()]
    failed = [e for e in events if e["event"] == "batch failed"]
    assert len(failed) == 1  # the handler's bug is reported, and the retry succeeds
    leaked = [line for line in (stdout + stderr).splitlines() if secret in line]
    assert not leaked, f"record payload in the logs: {leaked[0]}"


@pytest.mark.parametrize(
    ("module", "fragments"),
    [
        ("x = 1\n", ["functions['fn'].Handler", "has no attribute 'handle'"]),
        ("raise RuntimeError('no table')\n", ["functions['fn'].Handler", "RuntimeError: no table"]),
        ("def handle(batch):\n    pass\n", ["typed handler", 'Isolation = "thread"']),
    ],
)
def test_validate_imports_function_handlers_that_environments_would_import(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    fragments: list[str],
) -> None:
    name = f"fn_handler_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(module)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[functions]]\nFunctionName = "fn"\nHandler = "{name}.handle"\n\n'
        + toml_config(
            {"EventSourceArn": STREAM_ARN, "FunctionName": "fn", "StartingPosition": "LATEST"}
        )
    )
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert all(fragment in err for fragment in fragments), err
