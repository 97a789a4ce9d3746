"""The AWS rules that turn a handler's response into success, partial or whole-batch failure."""

from __future__ import annotations

from typing import Any

import pytest

from poller.engine.outcome import (
    Failed,
    PartiallyFailed,
    Succeeded,
    parse_lambda_response,
    parse_typed_result,
)
from poller.records import Record


def records(n: int) -> list[Record]:
    return [Record("s", str(i), i, "k", b"x", 0.0, 1) for i in range(1, n + 1)]


BATCH = records(4)


def parse(response: Any, report: bool = True) -> Any:
    return parse_lambda_response(
        response, BATCH, lambda r: r.position, report_batch_item_failures=report
    )


@pytest.mark.parametrize(
    "response",
    ["", [], None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, {"other": 1}],
)
def test_success_responses(response: Any) -> None:
    assert parse(response) == Succeeded()


@pytest.mark.parametrize(
    "entry",
    [{"itemIdentifier": 123}, {"itemIdentifier": ""}, {"itemIdentifier": None}, {"foo": "2"}, "2"],
)
def test_invalid_entries_fail_the_whole_batch(entry: Any) -> None:
    outcome = parse({"batchItemFailures": [entry]})
    assert isinstance(outcome, Failed)
    assert outcome.function_error is None


@pytest.mark.parametrize("response", ["some text", 5, ["x"], {"batchItemFailures": "2"}])
def test_unusable_responses_fail_the_whole_batch(response: Any) -> None:
    assert isinstance(parse(response), Failed)


def test_unknown_identifier_fails_the_whole_batch() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "99"}]})
    assert isinstance(outcome, Failed) and "99" in outcome.reason


def test_partial_failure_names_sorted_unique_indexes() -> None:
    outcome = parse(
        {
            "batchItemFailures": [
                {"itemIdentifier": "3"},
                {"itemIdentifier": "2"},
                {"itemIdentifier": "3"},
            ]
        }
    )
    assert outcome == PartiallyFailed((1, 2))


def test_without_report_batch_item_failures_any_response_is_success() -> None:
    assert parse({"batchItemFailures": [{"itemIdentifier": "2"}]}, report=False) == Succeeded()
    assert parse("garbage", report=False) == Succeeded()


def test_typed_results() -> None:
    identify = lambda r: r.position  # noqa: E731
    assert parse_typed_result(None, BATCH, identify) == Succeeded()
    assert parse_typed_result([], BATCH, identify) == Succeeded()
    assert parse_typed_result([BATCH[2]], BATCH, identify) == PartiallyFailed((2,))
    assert parse_typed_result(["2", BATCH[3]], BATCH, identify) == PartiallyFailed((1, 3))
    assert isinstance(parse_typed_result(["nope"], BATCH, identify), Failed)
    assert isinstance(parse_typed_result("2", BATCH, identify), Failed)
    assert isinstance(parse_typed_result([42], BATCH, identify), Failed)
    assert isinstance(parse_typed_result({"batchItemFailures": []}, BATCH, identify), Failed)
