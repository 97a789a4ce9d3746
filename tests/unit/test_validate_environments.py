"""``poller validate`` on the functions' environments: what ``poller run`` would meet when it
starts them (programs, URLs, addresses to listen on, handlers imported with their variables)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from poller import parse_config
from poller.cli.environment_checks import environment_problems
from poller.config import PollerConfig
from tests.kit import KINESIS_ARN


def config_with(**function: Any) -> PollerConfig:
    return parse_config(
        {
            "functions": [{"FunctionName": "fn", **function}],
            "mappings": [
                {"EventSourceArn": KINESIS_ARN, "FunctionName": "fn", "StartingPosition": "LATEST"}
            ],
        }
    )


def test_a_command_that_is_not_executable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runtime.sh").write_text("#!/bin/sh\n")
    (tmp_path / "runtime.sh").chmod(0o644)

    problems = environment_problems(config_with(Command=["./runtime.sh"]))

    # Even root may execute only a file with an execute bit.
    assert problems == ["functions['fn'].Command: './runtime.sh' is not executable (chmod +x it)"]


def test_an_executable_command_and_one_on_path_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runtime.sh").write_text("#!/bin/sh\n")
    (tmp_path / "runtime.sh").chmod(0o755)

    assert environment_problems(config_with(Command=["./runtime.sh"])) == []
    assert environment_problems(config_with(Command=["sh", "-c", "true"])) == []
    (missing,) = environment_problems(config_with(Command=["no-such-runtime-here"]))
    assert missing.startswith("functions['fn'].Command: 'no-such-runtime-here' is not on PATH")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:70000/", "is not a valid URL: Port out of range"),
        ("http:///invoke", "names no host"),
    ],
)
def test_a_url_without_a_host_or_with_a_bad_port_is_refused(url: str, problem: str) -> None:
    (found,) = environment_problems(config_with(Url=url))

    assert found.startswith(f"functions['fn'].Url: {url!r} ") and problem in found


def test_a_runtime_api_address_in_use_is_refused_and_a_free_one_passes() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (found,) = environment_problems(config_with(RuntimeApi=f"127.0.0.1:{port}"))
    assert found.startswith(
        f"functions['fn'].RuntimeApi: poller cannot listen on '127.0.0.1:{port}'"
    )
    assert "in use" in found

    assert environment_problems(config_with(RuntimeApi=f"127.0.0.1:{port}")) == []


def test_a_handler_is_imported_with_lambda_s_variables_and_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    module = f"env_probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import os\n"
        "assert os.environ['AWS_LAMBDA_FUNCTION_NAME'] == 'fn'\n"
        "assert os.environ['LAMBDA_TASK_ROOT'] == os.getcwd()\n"
        "STAGE = os.environ['STAGE']\n"
        "def handle(event, context):\n    return STAGE\n"
    )
    given = config_with(Handler=f"{module}.handle", Environment={"Variables": {"STAGE": "prod"}})

    assert environment_problems(given) == []
    (missing,) = environment_problems(config_with(Handler=f"{module}.handle"))
    assert "raised KeyError: 'STAGE'" in missing


def test_a_handler_whose_import_ends_the_process_or_hangs_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    leaving, hanging = (f"probe_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("exit", "hang"))
    (tmp_path / f"{leaving}.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / f"{hanging}.py").write_text("import time\ntime.sleep(60)\n")

    (ended,) = environment_problems(config_with(Handler=f"{leaving}.handle"))
    (slow,) = environment_problems(config_with(Handler=f"{hanging}.handle"), import_seconds=0.5)

    assert "in its environment ended the process (exit code 3)" in ended
    assert slow == f"functions['fn'].Handler: importing '{hanging}.handle' took longer than 0.5 s"
