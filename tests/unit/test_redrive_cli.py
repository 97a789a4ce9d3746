"""``poller redrive``'s arguments: what is refused (exit 2, with a message naming the option and
the value) before anything is opened, and queue mappings handed to the dead-letter redrive."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog

import poller.recovery.dead_letters as dead_letters
from poller.cli import main
from tests.kit.redrive_kit import write_config

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:orders"
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


def _config(tmp_path: Path, *mappings: dict[str, Any]) -> Path:
    data = {
        "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
        "store": {"url": "memory://"},
        "mappings": list(mappings),
    }
    return write_config(tmp_path / "config.toml", data)


#: One handler per mapping: AWS refuses two mappings of one function on one source.
_HANDLERS = {"s": "json:dumps", "nodest": "json:loads", "windowed": "copy:copy"}


def _stream(uuid: str = "s", **fields: Any) -> dict[str, Any]:
    return {
        "UUID": uuid,
        "EventSourceArn": STREAM,
        "StartingPosition": "TRIM_HORIZON",
        "Handler": _HANDLERS[uuid],
        "DestinationConfig": {"OnFailure": {"Destination": DLQ}},
        **fields,
    }


def _queue() -> dict[str, Any]:
    return {"UUID": "q", "EventSourceArn": QUEUE, "Handler": "json:dumps"}


@pytest.fixture(autouse=True)
def _logging_restored() -> Any:
    """The command points logging at the captured stderr; later tests must not inherit it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--mapping", "nope"], ["--mapping 'nope'", "mappings: s, q"]),
        (["--mapping", "s", "--from", "kafka://t"], ["kafka://TOPIC", "reads kinesis"]),
        (
            ["--mapping", "s", "--from", "arn:aws:lambda:us-east-1:1:function:f"],
            ["lambda ARN", "allowed"],
        ),
        (["--mapping", "s", "--from", "somewhere"], ["'somewhere' is not a destination"]),
        (["--mapping", "s", "--prefix", "p/"], ["--prefix 'p/'", "S3"]),
        (["--mapping", "s", "--rate", "5"], ["--rate goes with queue mappings"]),
        (["--mapping", "s", "--max-messages", "5"], ["--max-messages goes with queue"]),
        (["--mapping", "q", "--rate", "0"], ["--rate 0.0", "> 0"]),
        (["--mapping", "q", "--max-messages", "0"], ["--max-messages 0", "1 or more"]),
        (["--mapping", "q", "--json"], ["--json goes with stream mappings"]),
        (["--mapping", "nodest"], ["no on-failure destination", "--from"]),
        (["--mapping", "windowed"], ["TumblingWindowInSeconds"]),
    ],
)
def test_refused_arguments_exit_2_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], words: list[str]
) -> None:
    path = _config(
        tmp_path,
        _stream(),
        _queue(),
        {**_stream("nodest"), "DestinationConfig": {}},
        _stream("windowed", TumblingWindowInSeconds=60),
    )
    if arguments[1] == "nope":
        path = _config(tmp_path, _stream(), _queue())
    assert main(["redrive", str(path), *arguments]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err


def test_a_queue_mapping_goes_to_the_dead_letter_redrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    async def fake(config: Any, mapping: Any, *, out: TextIO, **options: Any) -> int:
        calls.append({"mapping": mapping.mapping_id, **options})
        return 0

    monkeypatch.setattr(dead_letters, "redrive_dead_letters", fake)
    path = _config(tmp_path, _queue())
    assert main(["redrive", str(path), "--mapping", "q", "--from", DLQ, "--dry-run"]) == 0
    assert (
        main(["redrive", str(path), "--mapping", "q", "--rate", "2.5", "--max-messages", "7"]) == 0
    )
    assert calls == [
        {
            "mapping": "q",
            "dead_letter_queue": DLQ,
            "rate_per_second": 50.0,
            "max_messages": None,
            "dry_run": True,
        },
        {
            "mapping": "q",
            "dead_letter_queue": None,
            "rate_per_second": 2.5,
            "max_messages": 7,
            "dry_run": False,
        },
    ]
