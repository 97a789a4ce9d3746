"""FilterCriteria patterns: AWS's documented operators, the patterns AWS refuses, the limits.

Each case is written from a documented fact (Lambda's "Control which events Lambda sends to your
function" and per-source filtering pages, EventBridge's event pattern and comparison operator
pages) or from AWS's reference matcher's behaviour where the pages say nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.errors import ConfigError
from poller.filtering import (
    NOT_JSON,
    FilterSet,
    compile_filters,
    compile_pattern,
    decode_payload,
)


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return compile_pattern(json.dumps(pattern), index=0).matches(event)


# (what the case shows, pattern, event, expected)
DOCUMENTED: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # Null and empty: different things.
    ("null matches null", {"UserID": [None]}, {"UserID": None}, True),
    ("null is not the empty string", {"UserID": [None]}, {"UserID": ""}, False),
    ("null is not a missing field", {"UserID": [None]}, {}, False),
    ("empty matches the empty string", {"LastName": [""]}, {"LastName": ""}, True),
    ("empty is not null", {"LastName": [""]}, {"LastName": None}, False),
    # Equals: exact, character by character.
    ("equals", {"Name": ["Alice"]}, {"Name": "Alice"}, True),
    ("equals is case sensitive", {"Name": ["Alice"]}, {"Name": "alice"}, False),
    ("equals does not trim", {"Name": ["Alice"]}, {"Name": "Alice "}, False),
    ("a string is not a number", {"Count": ["5"]}, {"Count": 5}, False),
    ("a number is not a string", {"Count": [5]}, {"Count": "5"}, False),
    ("true matches true", {"Flag": [True]}, {"Flag": True}, True),
    ("true is not 1", {"Flag": [True]}, {"Flag": 1}, False),
    ("1 is not true", {"Flag": [1]}, {"Flag": True}, False),
    ("numbers compare by value", {"Price": [300]}, {"Price": 300.0}, True),
    ("numbers compare by value (exponent)", {"Price": [3.0e2]}, {"Price": 300}, True),
    # Equals ignoring case.
    ("equals-ignore-case", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, True),
    (
        "equals-ignore-case, mixed",
        {"Name": [{"equals-ignore-case": "alice"}]},
        {"Name": "aLiCe"},
        True,
    ),
    (
        "equals-ignore-case is whole",
        {"Name": [{"equals-ignore-case": "alice"}]},
        {"Name": "Alicia"},
        False,
    ),
    ("equals-ignore-case on a number", {"N": [{"equals-ignore-case": "5"}]}, {"N": 5}, False),
    # AND across fields, OR within a list, $or across fields.
    (
        "and: both",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        True,
    ),
    (
        "and: one",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Friday"},
        False,
    ),
    (
        "and: a field missing",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York"},
        False,
    ),
    ("or: first", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Credit"}, True),
    ("or: second", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True),
    ("or: neither", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Cash"}, False),
    (
        "$or: first field",
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "New York", "Day": "Friday"},
        True,
    ),
    (
        "$or: second field",
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Paris", "Day": "Monday"},
        True,
    ),
    (
        "$or: neither",
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Paris", "Day": "Friday"},
        False,
    ),
    (
        "$or with a field outside",
        {"source": ["a"], "$or": [{"x": [1]}, {"y": [2]}]},
        {"source": "b", "x": 1},
        False,
    ),
    (
        "$or nested in an object",
        {"detail": {"$or": [{"x": [1]}, {"y": [2]}]}},
        {"detail": {"y": 2}},
        True,
    ),
    (
        "$or inside $or",
        {"$or": [{"a": [1]}, {"b": [2], "$or": [{"c": [3]}, {"d": [4]}]}]},
        {"b": 2, "d": 4},
        True,
    ),
    (
        "$or inside $or, inner fails",
        {"$or": [{"a": [1]}, {"b": [2], "$or": [{"c": [3]}, {"d": [4]}]}]},
        {"b": 2},
        False,
    ),
    # Anything-but.
    ("anything-but list", {"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, True),
    (
        "anything-but list, excluded",
        {"Weather": [{"anything-but": ["Raining"]}]},
        {"Weather": "Raining"},
        False,
    ),
    ("anything-but, missing field", {"Weather": [{"anything-but": ["Raining"]}]}, {}, False),
    (
        "anything-but, null value",
        {"Weather": [{"anything-but": ["Raining"]}]},
        {"Weather": None},
        True,
    ),
    (
        "anything-but single string",
        {"state": [{"anything-but": "initializing"}]},
        {"state": "running"},
        True,
    ),
    (
        "anything-but single string, excluded",
        {"state": [{"anything-but": "initializing"}]},
        {"state": "initializing"},
        False,
    ),
    ("anything-but single number", {"x-limit": [{"anything-but": 123}]}, {"x-limit": 124}, True),
    (
        "anything-but numbers",
        {"x-limit": [{"anything-but": [100, 200, 300]}]},
        {"x-limit": 200},
        False,
    ),
    (
        "anything-but numbers by value",
        {"x-limit": [{"anything-but": [100]}]},
        {"x-limit": 100.0},
        False,
    ),
    (
        "anything-but numbers vs a string",
        {"x-limit": [{"anything-but": [100]}]},
        {"x-limit": "100"},
        True,
    ),
    (
        "anything-but strings vs a number",
        {"code": [{"anything-but": ["100"]}]},
        {"code": 100},
        True,
    ),
    # Numeric.
    ("numeric =", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, True),
    ("numeric = by value", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100.0}, True),
    ("numeric needs a JSON number", {"Price": [{"numeric": ["=", 100]}]}, {"Price": "100"}, False),
    ("numeric range, below", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10}, False),
    ("numeric range, inside", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10.5}, True),
    ("numeric range, top", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, True),
    (
        "numeric range, above",
        {"Price": [{"numeric": [">", 10, "<=", 20]}]},
        {"Price": 20.01},
        False,
    ),
    ("numeric <", {"d-count": [{"numeric": ["<", 10]}]}, {"d-count": 9.999}, True),
    ("numeric >=", {"c": [{"numeric": [">=", 0]}]}, {"c": 0}, True),
    (
        "numeric with an exponent",
        {"x-limit": [{"numeric": ["=", 3.018e2]}]},
        {"x-limit": 301.8},
        True,
    ),
    ("numeric on a boolean", {"c": [{"numeric": [">=", 0]}]}, {"c": True}, False),
    # Exists (leaf nodes only).
    ("exists", {"ProductName": [{"exists": True}]}, {"ProductName": "Tea"}, True),
    ("exists, missing", {"ProductName": [{"exists": True}]}, {}, False),
    (
        "exists, null counts as present",
        {"ProductName": [{"exists": True}]},
        {"ProductName": None},
        True,
    ),
    (
        "exists on an intermediate node",
        {"person": {"address": [{"exists": True}]}},
        {"person": {"address": {"city": "Anytown"}}},
        False,
    ),
    ("does not exist", {"ProductName": [{"exists": False}]}, {}, True),
    (
        "does not exist, present",
        {"ProductName": [{"exists": False}]},
        {"ProductName": "Tea"},
        False,
    ),
    (
        "does not exist, present as null",
        {"ProductName": [{"exists": False}]},
        {"ProductName": None},
        False,
    ),
    (
        "does not exist, an object is no leaf",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"c-count": {"c1": 100}}},
        True,
    ),
    ("does not exist, parent missing", {"detail": {"c-count": [{"exists": False}]}}, {}, True),
    ("does not exist, empty list", {"tags": [{"exists": False}]}, {"tags": []}, True),
    # Prefix and suffix.
    ("prefix", {"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, True),
    ("prefix, other", {"Region": [{"prefix": "us-"}]}, {"Region": "eu-west-1"}, False),
    ("prefix is case sensitive", {"Region": [{"prefix": "us-"}]}, {"Region": "US-EAST-1"}, False),
    ("prefix on a number", {"Code": [{"prefix": "4"}]}, {"Code": 404}, False),
    (
        "prefix ignoring case",
        {"service": [{"prefix": {"equals-ignore-case": "eventb"}}]},
        {"service": "EventBridge"},
        True,
    ),
    ("suffix", {"FileName": [{"suffix": ".png"}]}, {"FileName": "photo.png"}, True),
    (
        "suffix is case sensitive",
        {"FileName": [{"suffix": ".png"}]},
        {"FileName": "photo.PNG"},
        False,
    ),
    (
        "suffix ignoring case",
        {"service": [{"suffix": {"equals-ignore-case": "tbridge"}}]},
        {"service": "EVENTBRIDGE"},
        True,
    ),
    # Arrays in the event.
    (
        "array: any element",
        {"resources": ["arn:b", "arn:x"]},
        {"resources": ["arn:a", "arn:b"]},
        True,
    ),
    ("array: no element", {"resources": ["arn:x"]}, {"resources": ["arn:a", "arn:b"]}, False),
    ("array: nested lists flatten", {"tags": ["x"]}, {"tags": [["a"], ["b", ["x"]]]}, True),
    (
        "array of objects",
        {"employees": {"firstName": ["Anna"]}},
        {"employees": [{"firstName": "John"}, {"firstName": "Anna"}]},
        True,
    ),
    (
        "array of objects: one element at a time",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        {
            "employees": [
                {"firstName": "Anna", "lastName": "Smith"},
                {"firstName": "Peter", "lastName": "Jones"},
            ]
        },
        False,
    ),
    (
        "array of objects: both in one element",
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        {
            "employees": [
                {"firstName": "Anna", "lastName": "Smith"},
                {"firstName": "Peter", "lastName": "Jones"},
            ]
        },
        True,
    ),
    # Lambda's examples, per source.
    (
        "kinesis metadata and data",
        {"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}},
        {"partitionKey": "1", "data": {"Location": "Los Angeles"}},
        True,
    ),
    (
        "kinesis data range",
        {"data": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}},
        {"data": {"Temperature": 55}},
        True,
    ),
    (
        "kinesis data range, string value",
        {"data": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}},
        {"data": {"Temperature": "55"}},
        False,
    ),
    (
        "dynamodb typed key",
        {"dynamodb": {"Keys": {"Number": {"N": ["4567"]}}}},
        {"dynamodb": {"Keys": {"Number": {"N": "4567"}}}},
        True,
    ),
    (
        "dynamodb typed key, other",
        {"dynamodb": {"Keys": {"Number": {"N": ["4567"]}}}},
        {"dynamodb": {"Keys": {"Number": {"N": "1234"}}}},
        False,
    ),
    (
        "dynamodb N is a string to numeric",
        {"dynamodb": {"NewImage": {"qty": {"N": [{"numeric": [">", 1]}]}}}},
        {"dynamodb": {"NewImage": {"qty": {"N": "5"}}}},
        False,
    ),
    (
        "dynamodb eventName and image",
        {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"id": {"BOOL": [True]}}}},
        {"eventName": "INSERT", "dynamodb": {"NewImage": {"id": {"BOOL": True}}}},
        True,
    ),
    (
        "sqs body field",
        {"body": {"RequestCode": ["BBBB"]}},
        {"body": {"RequestCode": "BBBB"}},
        True,
    ),
    (
        "sqs body number",
        {"body": {"RecordNumber": [{"numeric": [">", 9999]}]}},
        {"body": {"RecordNumber": 1234}},
        False,
    ),
    ("sqs plain body", {"body": ["hello"]}, {"body": "hello"}, True),
    (
        "kafka value prefix",
        {"value": {"device_ID": [{"prefix": "AB"}]}},
        {"value": {"device_ID": "AB1234"}},
        True,
    ),
    (
        "kafka plain value anything-but",
        {"value": [{"anything-but": ["error"]}]},
        {"value": "error"},
        False,
    ),
    (
        "kafka plain value anything-but, other",
        {"value": [{"anything-but": ["error"]}]},
        {"value": "ok"},
        True,
    ),
    # Shape: a pattern object over a plain value, and a value list over an object.
    (
        "json pattern on a plain body",
        {"body": {"RequestCode": ["BBBB"]}},
        {"body": "RequestCode BBBB"},
        False,
    ),
    ("plain pattern on a json body", {"body": ["BBBB"]}, {"body": {"RequestCode": "BBBB"}}, False),
    ("fields not named are ignored", {"a": ["1"]}, {"a": "1", "b": "2", "c": {"d": None}}, True),
]


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [pytest.param(p, e, x, id=name) for name, p, e, x in DOCUMENTED],
)
def test_documented_behaviour(
    pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert matches(pattern, event) is expected


def test_a_field_matches_when_any_entry_of_its_list_matches() -> None:
    pattern = {"v": ["exact", {"prefix": "pre"}, {"numeric": [">", 100]}, None, {"exists": False}]}
    assert [matches(pattern, {"v": v}) for v in ("exact", "prefix", 101, None)] == [True] * 4
    assert matches(pattern, {}) is True
    assert [matches(pattern, {"v": v}) for v in ("other", 100, False)] == [False] * 3


def test_equals_ignore_case_folds_one_character_at_a_time_as_aws_does() -> None:
    pattern = {"v": [{"equals-ignore-case": "straße"}]}
    # ß stands for its lower form (itself) or its upper form "SS", never for "ss".
    assert matches(pattern, {"v": "STRASSE"}) is True
    assert matches(pattern, {"v": "Straße"}) is True
    assert matches(pattern, {"v": "strasse"}) is False
    # The Kelvin sign's lower form is "k"; an ASCII "k" in a pattern does not stand for it.
    assert matches({"v": [{"equals-ignore-case": "\u212a"}]}, {"v": "k"}) is True
    assert matches({"v": [{"equals-ignore-case": "k"}]}, {"v": "\u212a"}) is False


# --- invalid patterns: AWS answers "Invalid filter pattern definition." for all of these ---

P = "FilterCriteria.Filters[2].Pattern: "
AB = "'anything-but' takes a string, a number, or a non-empty list of only strings or only numbers"
NUMERIC = (
    "'numeric' takes [op, number] with op one of =, <, <=, >, >=, or a range "
    '[">" or ">=", number, "<" or "<=", number]'
)

INVALID: list[tuple[str, str, str]] = [
    ("empty", "", P + "the pattern is empty; a pattern is a JSON object"),
    ("blank", "  ", P + "the pattern is empty; a pattern is a JSON object"),
    ("malformed", '{"a": [1}', P + "not valid JSON: Expecting ',' delimiter (line 1, column 9)"),
    ("not an object", '["a"]', P + "a pattern is a JSON object, not a list"),
    ("a string", '"a"', P + "a pattern is a JSON object, not the string 'a'"),
    ("empty object", "{}", P + "an empty object matches nothing; give at least one field"),
    (
        "empty nested object",
        '{"a": {}}',
        P + "an empty object matches nothing; give at least one field (at a)",
    ),
    (
        "empty list",
        '{"a": []}',
        P + "an empty list matches nothing; give at least one value or operator (at a)",
    ),
    (
        "bare value",
        '{"a": {"b": "x"}}',
        P + "a field takes a list of values or an object of fields, not the string 'x' "
        '(write ["x"] to match that value) (at a.b)',
    ),
    (
        "nested list",
        '{"a": [["x"]]}',
        P
        + "a match value is a string, a number, true, false, null or an operator object, not a list (at a)",
    ),
    ("NaN", '{"a": [NaN]}', P + "not valid JSON: NaN is not a JSON value"),
    (
        "huge number",
        '{"a": [1e400]}',
        P + "an exact value takes numbers within the range of a double (about ±1.8e308) (at a)",
    ),
    ("repeated key", '{"a": [1], "a": [2]}', P + "the key 'a' appears twice in one object"),
    (
        "two operators",
        '{"a": [{"prefix": "x", "suffix": "y"}]}',
        P + "an operator object has exactly one operator, this one has 'prefix', 'suffix' (at a)",
    ),
    (
        "no operator",
        '{"a": [{}]}',
        P + "an operator object has exactly one operator, this one has none (at a)",
    ),
    (
        "unknown operator",
        '{"a": [{"contains": "x"}]}',
        P + "unknown operator 'contains' (Lambda supports: equals-ignore-case, prefix, suffix, "
        "anything-but, numeric, exists) (at a)",
    ),
    (
        "wildcard",
        '{"a": [{"wildcard": "x*"}]}',
        P
        + "'wildcard' is an EventBridge operator that Lambda event source mappings do not support (at a)",
    ),
    (
        "cidr",
        '{"ip": [{"cidr": "10.0.0.0/24"}]}',
        P
        + "'cidr' is an EventBridge operator that Lambda event source mappings do not support (at ip)",
    ),
    (
        "prefix of a number",
        '{"a": [{"prefix": 1}]}',
        P
        + "'prefix' takes a string or {\"equals-ignore-case\": <string>}, not the number 1 (at a)",
    ),
    (
        "suffix, other object",
        '{"a": [{"suffix": {"wildcard": "x"}}]}',
        P + "'suffix' takes a string or {\"equals-ignore-case\": <string>}, not an object (at a)",
    ),
    (
        "prefix ignore case of a number",
        '{"a": [{"prefix": {"equals-ignore-case": 5}}]}',
        P + "'prefix/equals-ignore-case' takes a string, not the number 5 (at a)",
    ),
    (
        "equals-ignore-case of a list",
        '{"a": [{"equals-ignore-case": ["x"]}]}',
        P + "'equals-ignore-case' takes a string, not a list (at a)",
    ),
    (
        "exists of a string",
        '{"a": [{"exists": "true"}]}',
        P + "'exists' takes true or false, not the string 'true' (at a)",
    ),
    (
        "anything-but null",
        '{"a": [{"anything-but": null}]}',
        P + AB + ", not null (at a)",
    ),
    (
        "anything-but boolean in a list",
        '{"a": [{"anything-but": ["x", true]}]}',
        P + AB + ", not true (at a)",
    ),
    (
        "anything-but empty list",
        '{"a": [{"anything-but": []}]}',
        P + AB + ", not an empty list (at a)",
    ),
    (
        "anything-but mixed",
        '{"a": [{"anything-but": ["x", 1]}]}',
        P + AB + ", not a list that mixes strings and numbers (at a)",
    ),
    (
        "anything-but prefix",
        '{"a": [{"anything-but": {"prefix": "x"}}]}',
        P
        + AB
        + "; its object form ('prefix') is EventBridge-only, Lambda event source mappings do not "
        "support it (at a)",
    ),
    (
        "numeric not a list",
        '{"a": [{"numeric": 5}]}',
        P + NUMERIC + ", not the number 5 (at a)",
    ),
    (
        "numeric unknown op",
        '{"a": [{"numeric": ["!=", 5]}]}',
        P + NUMERIC + '; got ["!=", 5] (at a)',
    ),
    (
        "numeric string bound",
        '{"a": [{"numeric": [">", "5"]}]}',
        P + NUMERIC + '; got [">", "5"] (at a)',
    ),
    (
        "numeric range starting with <",
        '{"a": [{"numeric": ["<", 5, ">", 1]}]}',
        P + NUMERIC + '; got ["<", 5, ">", 1] (at a)',
    ),
    (
        "numeric three terms",
        '{"a": [{"numeric": [">", 1, "<"]}]}',
        P + NUMERIC + ", not a list (at a)",
    ),
    (
        "numeric empty range",
        '{"a": [{"numeric": [">", 5, "<", 5]}]}',
        P
        + '\'numeric\' range [">", 5, "<", 5] is empty: its lower bound must be below its upper bound (at a)',
    ),
    (
        "$or not a list",
        '{"$or": {"a": [1]}}',
        P + "'$or' takes a list of at least two objects, not an object (at $or)",
    ),
    (
        "$or of one",
        '{"$or": [{"a": [1]}]}',
        P + "'$or' takes a list of at least two objects, not a list of 1 (at $or)",
    ),
    (
        "$or of values",
        '{"$or": [{"a": [1]}, ["b"]]}',
        P + "every entry of '$or' is an object, not a list (at $or)",
    ),
    (
        "operator name in $or",
        '{"$or": [{"numeric": [1]}, {"b": [2]}]}',
        P + "'numeric' is an operator name and cannot be a field name inside '$or'",
    ),
    (
        "a field twice through $or",
        '{"a": [1], "$or": [{"a": [2]}, {"b": [3]}]}',
        P + "this field is constrained twice in one alternative of the pattern "
        "(merge its conditions into one list) (at a)",
    ),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=n) for n, t, m in INVALID])
def test_invalid_patterns_are_refused_with_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_pattern(text, index=2)
    assert caught.value.problems == [message]


def test_the_same_field_in_different_branches_of_one_or_is_fine() -> None:
    pattern = compile_pattern('{"$or": [{"a": [1]}, {"a": [2], "b": [3]}]}', index=0)
    assert pattern.matches({"a": 2, "b": 3}) is True
    assert pattern.matches({"a": 2}) is False


def test_operator_names_are_ordinary_fields_outside_or() -> None:
    assert matches({"prefix": ["x"], "numeric": [1]}, {"prefix": "x", "numeric": 1}) is True


# --- limits ---


def test_a_pattern_of_4096_characters_is_accepted_and_4097_refused() -> None:
    def of_length(length: int) -> str:
        head = '{"a": ["'
        return head + "x" * (length - len(head) - 3) + '"]}'

    assert len(of_length(4096)) == 4096
    compile_pattern(of_length(4096), index=0)
    with pytest.raises(ConfigError) as caught:
        compile_pattern(of_length(4097), index=3)
    assert caught.value.problems == [
        "FilterCriteria.Filters[3].Pattern: 4,097 characters, at most 4,096 are allowed"
    ]


def test_five_filters_by_default_ten_with_a_quota_increase() -> None:
    five = [json.dumps({"n": [i]}) for i in range(5)]
    assert len(compile_filters(five)) == 5
    with pytest.raises(ConfigError) as caught:
        compile_filters([*five, '{"n": [5]}'])
    assert caught.value.problems == [
        "FilterCriteria.Filters: 6 filters, at most 5 are allowed (AWS's default quota; up to "
        "10 with a quota increase)"
    ]
    ten = [json.dumps({"n": [i]}) for i in range(10)]
    assert len(compile_filters(ten, max_filters=10)) == 10
    with pytest.raises(ConfigError) as caught:
        compile_filters([*ten, '{"n": [10]}'], max_filters=10)
    assert caught.value.problems == [
        "FilterCriteria.Filters: 11 filters, at most 10 are allowed by the configured quota"
    ]
    with pytest.raises(ValueError, match="between 1 and 10"):
        compile_filters(five, max_filters=11)


def test_every_problem_of_every_filter_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        compile_filters(['{"a": [1]}', "{}", '{"b": 1}'])
    assert caught.value.problems == [
        "FilterCriteria.Filters[1].Pattern: an empty object matches nothing; give at least one field",
        "FilterCriteria.Filters[2].Pattern: a field takes a list of values or an object of fields, "
        "not the number 1 (write [1] to match that value) (at b)",
    ]
    assert str(caught.value).startswith("invalid config:\n  FilterCriteria.Filters[1].Pattern")


# --- filter sets ---


def test_filters_are_ored_and_no_filters_pass_everything() -> None:
    filters = compile_filters(['{"kind": ["a"]}', '{"kind": ["b"]}'])
    assert [filters.matches({"kind": k}) for k in ("a", "b", "c")] == [True, True, False]
    assert bool(filters) is True
    empty = compile_filters([])
    assert empty == FilterSet()
    assert bool(empty) is False
    assert empty.matches({}) is True


def test_a_pattern_is_a_frozen_value_named_by_its_text_and_index() -> None:
    text = '{"a": [1]}'
    assert compile_pattern(text, index=1) == compile_pattern(text, index=1)
    assert compile_pattern(text, index=1) != compile_pattern(text, index=2)
    with pytest.raises(AttributeError):
        compile_pattern(text, index=1).text = "{}"  # type: ignore[misc]


def test_forms_say_how_a_pattern_treats_a_data_field() -> None:
    pattern = compile_pattern(
        '{"data": {"x": [1]}, "$or": [{"body": ["a"]}, {"body": {"y": [2]}}]}', index=0
    )
    assert pattern.forms("data") == {"object"}
    assert pattern.forms("body") == {"object", "values"}
    assert pattern.forms("partitionKey") == frozenset()


def test_without_a_key_filters_on_the_other_fields_only() -> None:
    filters = compile_filters(
        ['{"topic": ["orders"], "value": {"kind": ["paid"]}}', '{"value": ["x"]}']
    )
    assert filters.matches({"topic": "orders", "value": "plain text"}) is False
    metadata_only = filters.without("value")
    assert metadata_only.matches({"topic": "orders", "value": "plain text"}) is True
    # The second filter named only the value: without it nothing is left to check.
    assert metadata_only.matches({"topic": "refunds"}) is True


# --- payloads ---


def test_payloads_decode_to_json_objects_and_arrays() -> None:
    assert decode_payload(b'{"a": 1}') == {"a": 1}
    assert decode_payload('[1, {"b": null}]') == [1, {"b": None}]
    assert decode_payload(bytearray(b"{}")) == {}
    assert decode_payload(memoryview(b"[]")) == []


@pytest.mark.parametrize(
    "raw", [b"plain text", b"42", b'"quoted"', b"true", b"null", b"", b'{"a": NaN}', b"{'a': 1}"]
)
def test_other_utf8_payloads_are_not_json_or_their_own_text(raw: bytes) -> None:
    assert decode_payload(raw) is NOT_JSON
    assert decode_payload(raw, plain_text=True) == raw.decode()


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b"caf\xe9", "bad \ud800 surrogate"])
def test_payloads_that_are_not_utf8_are_never_filterable(raw: bytes | str) -> None:
    assert decode_payload(raw) is NOT_JSON
    assert decode_payload(raw, plain_text=True) is NOT_JSON


@pytest.mark.parametrize(
    "pattern",
    [
        {"data": {"a": [1]}},
        {"data": {"a": [{"exists": False}]}},
        {"data": [{"anything-but": ["x"]}]},
        {"data": [{"exists": False}]},
        {"data": [{"exists": True}]},
    ],
)
def test_no_pattern_on_a_field_that_is_not_json_matches(pattern: dict[str, Any]) -> None:
    assert matches(pattern, {"data": NOT_JSON}) is False
    assert matches({"partitionKey": ["1"]}, {"partitionKey": "1", "data": NOT_JSON}) is True


def test_not_json_pickles_to_itself() -> None:
    import pickle

    assert pickle.loads(pickle.dumps(NOT_JSON)) is NOT_JSON
    assert repr(NOT_JSON) == "NOT_JSON"
