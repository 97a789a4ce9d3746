"""What the redrive tests share: a config file written as TOML, a handler that fails on marked
records until a flag file exists, and ``poller redrive`` run as the command line runs it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import structlog

from poller.cli import main

__all__ = [
    "DYNAMODB_TEXTS",
    "KAFKA_TEXTS",
    "KINESIS_TEXTS",
    "FlakyHandler",
    "redrive",
    "toml_text",
    "write_config",
]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(data: Mapping[str, Any]) -> str:
    """``data`` as TOML: top-level tables, arrays of tables, inline tables below them."""
    lines: list[str] = []
    for name, value in data.items():
        if isinstance(value, Mapping):
            lines += [f"[{name}]", *(f"{k} = {_value(v)}" for k, v in value.items()), ""]
        elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            for table in value:
                lines += [f"[[{name}]]", *(f"{k} = {_value(v)}" for k, v in table.items()), ""]
        else:
            lines.insert(0, f"{name} = {_value(value)}")
    return "\n".join(lines)


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as a TOML config file at ``path``."""
    path.write_text(toml_text(data))
    return path


class FlakyHandler:
    """A Lambda-style handler module in ``root``: it logs each batch's record texts (one JSON
    list per line) and fails a batch holding a text starting with ``bad`` until ``fixed()``."""

    def __init__(self, root: Path, name: str, monkeypatch: pytest.MonkeyPatch, texts: str) -> None:
        self.seen = root / f"{name}.seen"
        self.flag = root / f"{name}.fixed"
        (root / f"{name}.py").write_text(
            textwrap.dedent(
                f'''\
                """Fails batches with a record starting with "bad" until the flag file exists."""
                import base64
                import json
                import pathlib

                SEEN = pathlib.Path({str(self.seen)!r})
                FLAG = pathlib.Path({str(self.flag)!r})


                def texts(event):
                    return {texts}


                def handle(event, context):
                    found = texts(event)
                    with SEEN.open("a") as out:
                        out.write(json.dumps(found) + "\\n")
                    if not FLAG.exists() and any(t.startswith("bad") for t in found):
                        raise RuntimeError("a bad record")
                '''
            )
        )
        monkeypatch.syspath_prepend(str(root))
        self.reference = f"{name}.handle"

    def fix(self) -> None:
        """From now on every batch succeeds."""
        self.flag.touch()

    def batches(self) -> list[list[str]]:
        """The record texts of every batch handed over so far, in order."""
        if not self.seen.exists():
            return []
        return [json.loads(line) for line in self.seen.read_text().splitlines() if line]

    def texts(self) -> list[str]:
        """Every record text handed over so far, in order."""
        return [text for batch in self.batches() for text in batch]


#: How the handler reads record texts out of each source's event.
KINESIS_TEXTS = '[base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]'
DYNAMODB_TEXTS = '[r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]'
KAFKA_TEXTS = (
    '[base64.b64decode(r["value"]).decode() for rs in event["records"].values() for r in rs]'
)


async def redrive(
    capsys: pytest.CaptureFixture[str], config: Path, *arguments: str
) -> tuple[int, str, str]:
    """``poller redrive CONFIG *arguments`` as the command runs it (in a thread, with its own
    event loop); the exit code, stdout and stderr."""
    capsys.readouterr()
    # The command points logging at this test's captured stderr; later tests must not inherit it.
    saved = structlog.get_config()
    try:
        code = await anyio.to_thread.run_sync(lambda: main(["redrive", str(config), *arguments]))
    finally:
        structlog.configure(**saved)
    out, err = capsys.readouterr()
    return code, out, err
