"""``poller validate`` as an operator runs it (a child process), on the store and environments a
config names: a DynamoDB store on the moto server, one that does not answer, SQLite state files
that ``poller run`` could not use, and functions whose environments could not start."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.kit import REGION, moto_clients

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STREAM_ARN = f"arn:aws:kinesis:{REGION}:123456789012:stream/validate-store"
MAPPING = f"""
[[mappings]]
EventSourceArn = "{STREAM_ARN}"
Handler = "validate_handler:handle"
StartingPosition = "LATEST"
"""


async def validate(root: Path, config: str) -> tuple[int, str, str, float]:
    """``poller validate config.toml`` in ``root``: exit code, stdout, stderr, seconds taken."""
    (root / "validate_handler.py").write_text("def handle(event, context):\n    return None\n")
    (root / "config.toml").write_text(config)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    started = time.monotonic()
    with anyio.fail_after(90):
        done = await anyio.run_process(
            [sys.executable, "-m", "poller.cli", "validate", "config.toml"],
            cwd=root,
            env=env,
            check=False,
        )
    taken = time.monotonic() - started
    return done.returncode, done.stdout.decode(), done.stderr.decode(), taken


def dynamodb_config(endpoint: str, table: str, *, create: bool | None = None) -> str:
    store = f'[store]\nurl = "dynamodb://{table}"\n'
    if create is not None:
        store += f"create = {json.dumps(create)}\n"
    return f'[aws]\nregion = "{REGION}"\nendpoint_url = "{endpoint}"\n{store}{MAPPING}'


@pytest.fixture
async def dynamodb(moto_endpoint: str) -> AsyncIterator[Any]:
    async with moto_clients(moto_endpoint, "dynamodb") as (client,):
        yield client


# --- DynamoDB ------------------------------------------------------------------------------------


async def test_a_missing_table_with_create_off_is_a_problem_and_is_not_created(
    dynamodb: Any, moto_endpoint: str, tmp_path: Path, unique_name: str
) -> None:
    code, out, err, _ = await validate(
        tmp_path, dynamodb_config(moto_endpoint, unique_name, create=False)
    )

    assert code == 2, out + err
    assert f"DynamoDB table {unique_name!r} does not exist and [store] create = false" in err
    assert unique_name not in (await dynamodb.list_tables())["TableNames"]


async def test_a_missing_table_poller_would_create_is_ok_with_a_note_and_not_created(
    dynamodb: Any, moto_endpoint: str, tmp_path: Path, unique_name: str
) -> None:
    code, out, err, _ = await validate(tmp_path, dynamodb_config(moto_endpoint, unique_name))

    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "config OK: 1 mapping"
    assert f"note: [store] url: DynamoDB table {unique_name!r} does not exist yet" in lines[1]
    assert unique_name not in (await dynamodb.list_tables())["TableNames"]


async def test_an_existing_table_with_other_keys_is_refused_and_poller_s_own_passes(
    dynamodb: Any, moto_endpoint: str, tmp_path: Path, unique_name: str
) -> None:
    for name, keys in ((f"{unique_name}-other", ("id",)), (unique_name, ("pk", "sk"))):
        await dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[
                {"AttributeName": k, "KeyType": kind}
                for k, kind in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
        )

    code, out, err, _ = await validate(
        tmp_path, dynamodb_config(moto_endpoint, f"{unique_name}-other")
    )
    assert code == 2, out + err
    assert "has the keys {'id': 'HASH'}, not poller's" in err

    code, out, err, _ = await validate(tmp_path, dynamodb_config(moto_endpoint, unique_name))
    assert code == 0, out + err
    assert out == "config OK: 1 mapping\n"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that takes connections and never answers (the kernel accepts them into the
    listen backlog; nothing reads them)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_an_endpoint_that_never_answers_exits_1_within_the_bound(
    silent_endpoint: str, tmp_path: Path
) -> None:
    code, out, err, taken = await validate(tmp_path, dynamodb_config(silent_endpoint, "state"))

    assert code == 1, out + err
    assert err.startswith("poller: store unreachable: [store] url: DynamoDB table 'state': ")
    assert "did not answer DescribeTable within 10 s" in err
    assert out == ""
    # Ten seconds for DescribeTable, and the interpreter's start on a busy machine.
    assert taken < 60, taken


async def test_an_endpoint_that_refuses_connections_exits_1_naming_it(tmp_path: Path) -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{bound.getsockname()[1]}"
        code, out, err, _ = await validate(tmp_path, dynamodb_config(endpoint, "state"))

    assert code == 1, out + err
    assert "store unreachable" in err and f"{endpoint} cannot be reached" in err


# --- SQLite --------------------------------------------------------------------------------------


async def test_a_state_file_that_is_not_a_database_is_refused_naming_its_path(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    state.write_text("not a database, " * 100)

    code, out, err, _ = await validate(tmp_path, f'[store]\nurl = "sqlite:///{state}"\n{MAPPING}')

    assert code == 2, out + err
    assert f"[store] url: {state} is not an SQLite database" in err
    assert state.read_text() == "not a database, " * 100


async def test_a_state_path_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where a directory should be")

    config = f'[store]\nurl = "sqlite:///data/state.db"\n{MAPPING}'
    code, out, err, _ = await validate(tmp_path, config)

    assert code == 2, out + err
    assert "data/state.db: cannot be created:" in err
    assert f"{tmp_path / 'data'} is a file, not a directory" in err


async def test_a_new_state_file_passes_and_validate_leaves_nothing_behind(tmp_path: Path) -> None:
    code, out, err, _ = await validate(tmp_path, MAPPING)  # the default ./.poller/state.db

    assert code == 0, out + err
    assert out == "config OK: 1 mapping\n" and err == ""
    assert not (tmp_path / ".poller").exists()


# --- the functions' environments -----------------------------------------------------------------


async def test_handlers_are_imported_with_their_environment_variables_and_commands_looked_up(
    tmp_path: Path,
) -> None:
    module = f"needs_env_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import os\nTABLE = os.environ['ORDERS_TABLE']\n\n"
        "def handle(event, context):\n    return TABLE\n"
    )
    config = f"""
[[functions]]
FunctionName = "given"
Handler = "{module}.handle"
Environment = {{ Variables = {{ ORDERS_TABLE = "orders" }} }}

[[functions]]
FunctionName = "missing"
Handler = "{module}.handle"

[[functions]]
FunctionName = "tool"
Command = ["./no-such-runtime", "--serve"]

[[mappings]]
EventSourceArn = "{STREAM_ARN}"
FunctionName = "given"
StartingPosition = "LATEST"
"""
    code, out, err, _ = await validate(tmp_path, config)

    assert code == 2, out + err
    problems = err.splitlines()[1:]
    assert problems == [
        f"  functions['missing'].Handler: Handler '{module}.handle': importing {module!r} "
        "raised KeyError: 'ORDERS_TABLE'",
        f"  functions['tool'].Command: './no-such-runtime' is not a file (relative to {tmp_path})",
    ]
