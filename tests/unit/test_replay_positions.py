"""Where a replayed partition resumes: the checkpoint "just before P", the moment markers, and
how ``--at-timestamp`` text is read. The resume itself is proven on the moto server
(tests/integration/test_replay.py); here, the arithmetic and the refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poller.cli.replay import parse_moment, render, render_json
from poller.engine.state import Checkpoint
from poller.recovery.replay import Move, ReplayRefused, ReplayReport
from poller.recovery.replay_positions import ReplayTarget, checkpoint_before, moment_marker

# Kinesis sequence numbers run to 56 digits and more; moto counts from 1.
SEQUENCES = st.integers(min_value=1, max_value=10**60)


@given(SEQUENCES, st.lists(SEQUENCES, max_size=20))
def test_the_checkpoint_before_p_lets_exactly_p_and_later_through(
    p: int, others: list[int]
) -> None:
    checkpoint = checkpoint_before(str(p))
    # A reader resumes strictly after the checkpoint's ordinal (AFTER_SEQUENCE_NUMBER and its
    # own screen): P is the first record it hands over, nothing before P comes again.
    resumed = sorted(n for n in {*others, p} if n > checkpoint.ordinal)
    assert resumed[0] == p
    assert all(n >= p for n in resumed)
    assert checkpoint.position == str(checkpoint.ordinal)
    assert not checkpoint.finished and checkpoint.opened_at is None


def test_sequence_numbers_that_cannot_be_resumed_at_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        checkpoint_before("0")
    with pytest.raises(ValueError):
        checkpoint_before("shard-7")


def test_a_moment_marker_is_the_latest_start_marker() -> None:
    marker = moment_marker(1_700_000_000.25)
    assert marker == Checkpoint(position="", ordinal=0, opened_at=1_700_000_000.25)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),  # no offset: UTC
        ("2023-11-15T00:13:20+02:00", 1_700_000_000.0),
    ],
)
def test_at_timestamp_reads_iso_8601_and_epoch_seconds(text: str, expected: float) -> None:
    assert parse_moment(text) == expected


def test_an_unreadable_timestamp_says_what_is_allowed() -> None:
    with pytest.raises(ReplayRefused, match=r"ISO 8601.*epoch seconds"):
        parse_moment("yesterday")


def test_targets_describe_themselves_as_the_command_line_spelled_them() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert ReplayTarget("at-timestamp", timestamp=moment).describe() == (
        "--at-timestamp 2026-01-02T03:04:05+00:00"
    )
    assert ReplayTarget("at-sequence", position="42").describe() == "--at-sequence 42"
    assert ReplayTarget("trim-horizon").describe() == "--trim-horizon"


def test_the_table_and_the_document_show_before_and_after() -> None:
    report = ReplayReport(
        "orders",
        "kinesis",
        "--trim-horizon",
        False,
        (
            Move(
                "shardId-000000000000",
                {"position": "90", "finished": False, "opened_at": None},
                {"position": "4", "finished": False, "opened_at": None},
                "resumes at 5",
                12,
            ),
            Move(
                "shardId-000000000001",
                {"position": "7", "finished": True, "opened_at": None},
                None,
                "finished: left alone",
            ),
        ),
    )
    lines = render(report)
    assert lines[0] == "orders  kinesis  --trim-horizon: moved"
    assert lines[1].split() == ["PARTITION", "BEFORE", "AFTER", "FORGOTTEN", "NOTE"]
    assert lines[2].split() == ["shardId-000000000000", "90", "4", "12", "resumes", "at", "5"]
    assert "(unchanged)" in lines[3] and "7 (finished)" in lines[3]
    document = json.loads("\n".join(render_json(report)))
    assert document["partitions"][0]["idempotency_records_forgotten"] == 12
    assert document["partitions"][1]["after"] is None
    assert set(document) == {"mapping", "kind", "target", "dry_run", "partitions"}
