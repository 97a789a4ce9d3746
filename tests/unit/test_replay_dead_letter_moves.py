"""What every dead-letter redrive shares: the pace of moves and the listing's body previews."""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from poller.errors import SourceError
from poller.recovery.dead_letter_moves import (
    DeadLetter,
    Pace,
    Tally,
    preview,
    print_listing,
    print_tally,
)
from poller.recovery.dead_letter_sqs import redrive_sqs


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=0.5, max_value=50), st.lists(st.floats(0, 0.3), max_size=12))
def test_no_second_ever_holds_more_moves_than_the_rate(rate: float, lateness: list[float]) -> None:
    """However late a move starts, the next waits a full 1/rate after it."""
    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def run() -> None:
        pace = Pace(rate, clock=lambda: now[0], sleep=sleep)
        for late in lateness:
            now[0] += late  # the move before took this long
            await pace.wait()
            starts.append(now[0])

    anyio.run(run)
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= 1 / rate - 1e-9
    for first in starts:
        in_window = [t for t in starts if first <= t < first + 1.0 - 1e-9]
        assert len(in_window) <= math.ceil(rate - 1e-9)


def test_previews_show_80_characters_of_text_or_the_size_of_binary() -> None:
    assert preview("x" * 80) == "x" * 80
    assert preview("y" * 81) == "y" * 80 + "..."
    assert preview(b"line\nnext") == "line\\nnext"
    assert preview(b"\xff\xfe\x00") == "<binary, 3 bytes>"


def test_listing_and_tally_tables() -> None:
    out = io.StringIO()
    tally = Tally("orders", "orders.dlq")
    print_listing([DeadLetter("id-1", "g", "2", "hello")], tally, "made visible again", out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "dry run: orders.dlq -> orders (nothing moved)"
    assert lines[2].split() == ["id-1", "g", "2", "hello"]
    assert lines[-1] == "1 dead letter(s) would be moved; made visible again"
    out = io.StringIO()
    tally.moved, tally.left = 3, None
    tally.failures.append("id-9: SendMessage failed")
    print_tally(tally, out)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["MOVED", "FAILED", "LEFT"]
    assert lines[2].split() == ["3", "1", "-"]
    assert lines[3] == "failed: id-9: SendMessage failed"


class _DeniedSqs:
    """An SQS client whose every call is refused by IAM, as AWS words it."""

    def __getattr__(self, name: str) -> Any:
        operation = "".join(part.title() for part in name.split("_"))

        async def refused(**_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, operation
            )

        return refused


async def test_access_denied_names_the_action_and_the_queue() -> None:
    arn = "arn:aws:sqs:us-east-1:123456789012:orders"
    with pytest.raises(SourceError) as raised:
        await redrive_sqs(
            _DeniedSqs(),
            arn,
            dead_letter_queue=None,
            rate_per_second=10,
            max_messages=None,
            dry_run=False,
            out=io.StringIO(),
        )
    assert str(raised.value) == f"access denied: sqs:GetQueueUrl on source queue {arn}"
