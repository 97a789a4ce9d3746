"""Config: AWS names and snake_case, AWS defaults, ranges, cross-field rules, precise errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from poller.config import (
    ConfigError,
    ConfigFileError,
    StartingPosition,
    load_config,
    load_esm_json,
    parse_config,
)

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
ROOT = Path(__file__).resolve().parents[2]


def one(**fields: Any) -> dict[str, Any]:
    mapping = {"EventSourceArn": STREAM, "StartingPosition": "TRIM_HORIZON"}
    mapping.update(fields)
    return {"mappings": [mapping]}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_readmes_first_example_parses_with_aws_meaning(tmp_path: Path) -> None:
    """README's "Run a mapping" config, as written (it runs on the embedded endpoint)."""
    readme = (ROOT / "README.md").read_text()
    example = readme.split("## Run a mapping", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "poller.toml"
    path.write_text(example)

    config = load_config(path)

    resolved = config.mappings[0].resolved()
    assert resolved.mapping_id == "orders"
    assert resolved.source_kind == "kinesis"
    assert resolved.batch_size == 5
    assert resolved.maximum_retry_attempts == 2
    assert resolved.report_batch_item_failures
    assert resolved.on_failure_destination == "arn:aws:sqs:us-east-1:123456789012:dlq"
    assert resolved.function_timeout == 60.0
    assert config.aws.embedded and config.store.url == "memory://"


def test_kinesis_defaults_are_aws_defaults() -> None:
    resolved = parse_config(one()).mappings[0].resolved()
    assert resolved.batch_size == 100
    assert resolved.batching_window == 0
    assert resolved.maximum_retry_attempts == -1
    assert resolved.maximum_record_age == -1
    assert resolved.parallelization_factor == 1
    assert not resolved.bisect_on_error
    assert not resolved.report_batch_item_failures


def test_snake_case_spellings_are_accepted() -> None:
    config = parse_config(
        {
            "mappings": [
                {
                    "event_source_arn": STREAM,
                    "starting_position": "LATEST",
                    "batch_size": 7,
                    "maximum_batching_window_in_seconds": 2,
                    "bisect_batch_on_function_error": True,
                    "function_response_types": ["ReportBatchItemFailures"],
                    "parallelization_factor": 3,
                    "function_timeout": 5,
                    "idempotency": True,
                }
            ]
        }
    )
    resolved = config.mappings[0].resolved()
    assert (resolved.batch_size, resolved.batching_window) == (7, 2)
    assert resolved.starting_position is StartingPosition.LATEST
    assert resolved.bisect_on_error and resolved.report_batch_item_failures
    assert resolved.parallelization_factor == 3 and resolved.idempotency


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"BatchSize": 0}, "mappings[0].BatchSize: 0 is out of range (allowed 1..10000)"),
        ({"BatchSize": 10001}, "mappings[0].BatchSize: 10001 is out of range (allowed 1..10000)"),
        (
            {"MaximumRetryAttempts": 10001},
            "mappings[0].MaximumRetryAttempts: 10001 is out of range (allowed -1 or 0..10000)",
        ),
        (
            {"MaximumRecordAgeInSeconds": 30},
            "mappings[0].MaximumRecordAgeInSeconds: 30 is out of range (allowed -1 or 60..604800)",
        ),
        (
            {"ParallelizationFactor": 11},
            "mappings[0].ParallelizationFactor: 11 is out of range (allowed 1..10)",
        ),
        (
            {"MaximumBatchingWindowInSeconds": 301},
            "mappings[0].MaximumBatchingWindowInSeconds: 301 is out of range (allowed 0..300)",
        ),
    ],
)
def test_out_of_range_values_name_field_value_and_range(
    fields: dict[str, Any], expected: str
) -> None:
    assert problems(one(**fields)) == [expected]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(one(BatchSize=0, ParallelizationFactor=0, BatchSzie=3))
    assert len(found) == 3
    assert any("BatchSzie: unknown field" in p for p in found)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"StartingPosition": None}, "StartingPosition: missing"),
        ({"StartingPosition": "AT_TIMESTAMP"}, "StartingPositionTimestamp: missing"),
        ({"StartingPositionTimestamp": 1700000000}, "only allowed with StartingPosition"),
        ({"StartingPosition": "SOMETIME"}, "StartingPosition"),
        (
            {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:1:d.fifo"}}},
            "FIFO SQS destination",
        ),
        (
            {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:lambda:us-east-1:1:f"}}},
            "allowed: an SQS queue, SNS topic or S3 bucket ARN",
        ),
        ({"EventSourceArn": "orders"}, "is not an ARN"),
        ({"Handler": "no_colon"}, "expected 'module.function' or 'module:function'"),
        ({"TumblingWindowInSeconds": 30, "ParallelizationFactor": 2}, "TumblingWindowInSeconds"),
        ({"RetryBackoffSeconds": 5, "RetryBackoffMaxSeconds": 1}, "must be >= it"),
    ],
)
def test_cross_field_and_value_rules(fields: dict[str, Any], fragment: str) -> None:
    data = one(**fields)
    if fields.get("StartingPosition", "") is None:
        del data["mappings"][0]["StartingPosition"]
    assert any(fragment in p for p in problems(data)), problems(data)


def test_at_timestamp_accepts_epoch_seconds() -> None:
    resolved = (
        parse_config(one(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1700000000))
        .mappings[0]
        .resolved()
    )
    assert resolved.starting_position_timestamp is not None
    assert resolved.starting_position_timestamp.timestamp() == 1700000000


def test_duplicate_function_and_source_is_a_conflict() -> None:
    mapping = {"EventSourceArn": STREAM, "StartingPosition": "LATEST", "Handler": "h:f"}
    found = problems({"mappings": [mapping, dict(mapping)]})
    assert any("already mapped by mappings[0]" in p for p in found)


def test_duplicate_uuid_is_refused() -> None:
    a = {"EventSourceArn": STREAM, "StartingPosition": "LATEST", "UUID": "x", "Handler": "h:f"}
    b = {**a, "Handler": "h:g"}
    assert any("UUID: 'x' is already used" in p for p in problems({"mappings": [a, b]}))


def test_derived_mapping_id_is_stable() -> None:
    first = parse_config(one(Handler="h:f")).mappings[0].mapping_id
    second = parse_config(one(Handler="h:f")).mappings[0].mapping_id
    assert first == second
    assert parse_config(one(Handler="h:g")).mappings[0].mapping_id != first


def test_bad_store_url_and_endpoint_are_named() -> None:
    found = problems({"store": {"url": "postgres://x"}, "aws": {"endpoint_url": "ftp://x"}})
    assert any(p.startswith("store.url:") and "sqlite:///PATH" in p for p in found)
    assert any(p.startswith("aws.endpoint_url:") and "'embedded'" in p for p in found)


def test_esm_json_ignores_read_only_fields_and_takes_handler() -> None:
    text = json.dumps(
        {
            "UUID": "6d9bce8e-836b-442c-8070-74e77903c815",
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            "ParallelizationFactor": 1,
            "EventSourceArn": STREAM,
            "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "LastModified": 1700000000.0,
            "LastProcessingResult": "No records processed",
            "State": "Enabled",
            "StateTransitionReason": "User action",
            "DestinationConfig": {"OnFailure": {}},
            "StartingPosition": "TRIM_HORIZON",
            "MaximumRecordAgeInSeconds": -1,
            "BisectBatchOnFunctionError": False,
            "MaximumRetryAttempts": -1,
            "FunctionResponseTypes": [],
            "EventSourceMappingArn": "arn:aws:lambda:us-east-1:123456789012:event-source-mapping:x",
        }
    )
    config = load_esm_json(text, handler="handlers:handle")
    resolved = config.mappings[0].resolved()
    assert resolved.mapping_id == "6d9bce8e-836b-442c-8070-74e77903c815"
    assert resolved.handler == "handlers:handle"
    assert resolved.batch_size == 10
    assert resolved.on_failure_destination is None


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[mappings]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_esm_json("{", handler=None)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (PNG, "byte 0x89 at offset 0 is not UTF-8; is it a binary file?"),
        (b"[aws]\x00\x01\x02", "it holds NUL bytes at offset 5; is it a binary file?"),
    ],
    ids=["png", "nul-bytes"],
)
def test_a_binary_file_is_not_a_toml_text_file_in_one_line(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "poller.toml"
    path.write_bytes(content)

    with pytest.raises(ConfigFileError) as caught:
        load_config(path)

    assert str(caught.value) == f"{path}: not a TOML text file ({reason})"
    assert isinstance(caught.value, ConfigError)  # caught with every other config problem


@pytest.mark.parametrize(
    ("text", "also"),
    [
        ("", []),
        ('[aws]\nregion = "us-east-1"\n', []),
        ('[[mapping]]\nEventSourceArn = "x"\n', ["mapping: unknown field"]),
    ],
    ids=["empty", "no-mappings-table", "misspelt-mappings"],
)
def test_a_config_file_without_mappings_is_refused(
    tmp_path: Path, text: str, also: list[str]
) -> None:
    path = tmp_path / "poller.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    found = caught.value.problems
    assert found[-1].startswith("mappings: none given; a config file needs at least one")
    assert "[[mappings]]" in found[-1]
    assert len(found) == 1 + len(also)
    assert all(any(fragment in p for p in found) for fragment in also)


def test_a_config_built_in_python_may_have_no_mappings() -> None:
    assert parse_config({}).mappings == ()


def _readme_ranges() -> dict[str, str]:
    """README's Mapping fields table: the "allowed" column of every field with a numeric range."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Mapping fields", 1)[1].split("\n\n", 2)[1]
    ranges: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        allowed = [part.strip() for part in cells[2].removesuffix(" s").split("/")]
        if len(names) == len(allowed) and all(re.search(r"\d\.\.\d", a) for a in allowed):
            ranges.update(zip(names, allowed, strict=True))
    return ranges


#: A field whose value is checked with another at its documented maximum, so that only the field
#: under test can be out of its range (RetryBackoffMaxSeconds must be >= RetryBackoffSeconds).
_COMPANIONS = {"RetryBackoffSeconds": "RetryBackoffMaxSeconds"}


def test_readme_documents_the_ranges_the_model_allows() -> None:
    """Each range in README's Mapping fields table (``lo..hi``, maybe ``-1, lo..hi``) is what the
    model accepts: both ends pass, one step past either end is refused naming the field."""
    ranges = _readme_ranges()
    assert {"BatchSize", "RetryBackoffSeconds", "RetryBackoffMaxSeconds"} <= set(ranges)
    for field, allowed in ranges.items():
        special, _, span = allowed.rpartition(",")
        low_text, high_text = span.strip().split("..")
        also = float(special) if special else None
        step = 0.001 if "." in low_text else 1
        low, high = float(low_text), float(high_text)
        companion = _COMPANIONS.get(field)
        fields = {companion: float(ranges[companion].split("..")[1])} if companion else {}
        for value in (low, high, also):
            if value is not None:
                parse_config(one(**fields, **{field: value}))
        for value in (low - step, high + step):
            if value == also:
                continue
            found = problems(one(**fields, **{field: value}))
            assert any(p.startswith(f"mappings[0].{field}: ") for p in found), (field, value)


# --- FilterCriteria -----------------------------------------------------------------------------


def test_filter_criteria_are_checked_and_kept_for_the_engine() -> None:
    pattern = '{"data": {"kind": ["keep"]}}'
    config = parse_config(one(FilterCriteria={"Filters": [{"Pattern": pattern}]}))
    assert config.mappings[0].resolved().filter_patterns == (pattern,)


def test_an_invalid_filter_pattern_names_the_filter_and_what_is_wrong() -> None:
    filters = {"Filters": [{"Pattern": '{"data": ["x"]}'}, {"Pattern": '{"data": "x"}'}]}
    found = problems(one(FilterCriteria=filters))
    assert len(found) == 1, found
    assert found[0].startswith("mappings[0]: FilterCriteria.Filters[1].Pattern:"), found


def test_more_filters_than_the_quota_are_refused_unless_the_quota_allows_them() -> None:
    filters = {"Filters": [{"Pattern": '{"data": ["x"]}'}] * 6}
    found = problems(one(FilterCriteria=filters))
    assert any("6 filters, at most 5 are allowed" in problem for problem in found), found
    allowed = {**one(FilterCriteria=filters), "worker": {"max_filters_per_mapping": 10}}
    assert len(parse_config(allowed).mappings[0].resolved().filter_patterns) == 6
    found = problems(one(FilterCriteria={"Filters": [{"Pattern": '{"data": ["x"]}'}] * 11}))
    assert any("11 filters, at most 10 are allowed" in problem for problem in found), found
