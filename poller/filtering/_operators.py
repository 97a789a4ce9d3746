"""The comparisons a pattern may make on one field: parsed from one entry of a field's list.

A field's list holds plain values (exact matches) and operator objects such as
``{"prefix": "us-"}``. Each entry becomes one frozen *condition* here, checked for the shape
AWS accepts; the field matches when any of its conditions matches one of the field's values.

Lambda event source mappings accept the operators that EventBridge Pipes marks as supported
(Lambda documents the same list, Pipes adds the ignore-case forms of ``prefix`` and
``suffix``): exact values, ``equals-ignore-case``, ``prefix`` and ``suffix`` (each optionally
``{"equals-ignore-case": ...}``), ``anything-but`` with a value or a list of values,
``numeric``, and ``exists``. EventBridge's ``wildcard``, ``cidr`` and the object forms of
``anything-but`` are refused with a message that says so, so a pattern that would not deploy on
AWS does not quietly run here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OPERATOR_NAMES",
    "AnythingBut",
    "Condition",
    "Equals",
    "EqualsIgnoreCase",
    "Exists",
    "Numeric",
    "PatternError",
    "Prefix",
    "Suffix",
    "describe",
    "parse_condition",
]

Number = int | float
Scalar = str | int | float | bool | None


class PatternError(Exception):
    """One thing wrong with a pattern, and where: the caller adds the filter's index."""

    def __init__(self, reason: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


@dataclass(frozen=True, slots=True)
class Equals:
    """An exact value: a string, a number (compared by value), true, false or null."""

    value: Scalar


@dataclass(frozen=True, slots=True)
class EqualsIgnoreCase:
    """A string equal to ``value`` up to case, as AWS folds it (see ``_casefold``)."""

    value: str


@dataclass(frozen=True, slots=True)
class Prefix:
    """A string that starts with ``value``; with ``ignore_case``, up to case."""

    value: str
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class Suffix:
    """A string that ends with ``value``; with ``ignore_case``, up to case."""

    value: str
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class AnythingBut:
    """Any value except these: all strings, or all numbers (``numeric``); a value of another
    type (including null and booleans) always passes, and a missing field never does."""

    values: frozenset[str] | frozenset[Number]
    numeric: bool


@dataclass(frozen=True, slots=True)
class Numeric:
    """A JSON number within the bounds; a bound of None is open-ended."""

    lower: Number | None = None
    lower_inclusive: bool = False
    upper: Number | None = None
    upper_inclusive: bool = False


@dataclass(frozen=True, slots=True)
class Exists:
    """``present=True``: the field has a leaf value (null counts); False: it has none."""

    present: bool


Condition = Equals | EqualsIgnoreCase | Prefix | Suffix | AnythingBut | Numeric | Exists

#: Every operator name AWS's pattern language knows, supported here or not. None of them may be
#: used as a field name inside ``$or`` (AWS refuses it there, as it could not tell them apart).
OPERATOR_NAMES = frozenset(
    {
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "numeric",
        "exists",
        "wildcard",
        "cidr",
        "exactly",
        "=",
        "<",
        "<=",
        ">",
        ">=",
    }
)

_NOT_FOR_ESM = {
    "wildcard": "'wildcard' is an EventBridge operator that Lambda event source mappings do "
    "not support",
    "cidr": "'cidr' is an EventBridge operator that Lambda event source mappings do not support",
}
_SUPPORTED = "equals-ignore-case, prefix, suffix, anything-but, numeric, exists"
_RANGE_START = {">": False, ">=": True}
_RANGE_END = {"<": False, "<=": True}


def parse_condition(entry: Any, path: tuple[str, ...]) -> Condition:
    """One entry of a field's list as a condition; raises :class:`PatternError` if AWS would
    refuse it. ``path`` names the field for the message."""
    if entry is None or isinstance(entry, str | bool):
        return Equals(entry)
    if isinstance(entry, int | float):
        return Equals(_number(entry, "an exact value", path))
    if isinstance(entry, dict):
        return _operator(entry, path)
    raise PatternError(
        f"a match value is a string, a number, true, false, null or an operator object, "
        f"not {describe(entry)}",
        path,
    )


def _operator(entry: dict[str, Any], path: tuple[str, ...]) -> Condition:
    if len(entry) != 1:
        names = ", ".join(repr(k) for k in entry) or "none"
        raise PatternError(
            f"an operator object has exactly one operator, this one has {names}", path
        )
    ((name, value),) = entry.items()
    if name == "equals-ignore-case":
        return EqualsIgnoreCase(_string(name, value, path))
    if name in ("prefix", "suffix"):
        return _affix(name, value, path)
    if name == "anything-but":
        return _anything_but(value, path)
    if name == "numeric":
        return _numeric(value, path)
    if name == "exists":
        if not isinstance(value, bool):
            raise PatternError(f"'exists' takes true or false, not {describe(value)}", path)
        return Exists(value)
    if name in _NOT_FOR_ESM:
        raise PatternError(_NOT_FOR_ESM[name], path)
    raise PatternError(f"unknown operator {name!r} (Lambda supports: {_SUPPORTED})", path)


def _affix(name: str, value: Any, path: tuple[str, ...]) -> Prefix | Suffix:
    kind = Prefix if name == "prefix" else Suffix
    if isinstance(value, str):
        return kind(value)
    if isinstance(value, dict) and list(value) == ["equals-ignore-case"]:
        return kind(_string(f"{name}/equals-ignore-case", value["equals-ignore-case"], path), True)
    raise PatternError(
        f'{name!r} takes a string or {{"equals-ignore-case": <string>}}, not {describe(value)}',
        path,
    )


def _anything_but(value: Any, path: tuple[str, ...]) -> AnythingBut:
    takes = "'anything-but' takes a string, a number, or a non-empty list of only strings or only numbers"
    if isinstance(value, dict):
        inner = ", ".join(repr(k) for k in value) or "an empty object"
        raise PatternError(
            f"{takes}; its object form ({inner}) is EventBridge-only, Lambda event source "
            f"mappings do not support it",
            path,
        )
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PatternError(f"{takes}, not an empty list", path)
    for item in items:
        if item is None or isinstance(item, bool) or not isinstance(item, str | int | float):
            raise PatternError(f"{takes}, not {describe(item)}", path)
    if all(isinstance(item, str) for item in items):
        return AnythingBut(frozenset(items), numeric=False)
    if any(isinstance(item, str) for item in items):
        raise PatternError(f"{takes}, not a list that mixes strings and numbers", path)
    numbers = frozenset(_number(item, "'anything-but'", path) for item in items)
    return AnythingBut(numbers, numeric=True)


def _numeric(value: Any, path: tuple[str, ...]) -> Numeric:
    forms = (
        "'numeric' takes [op, number] with op one of =, <, <=, >, >=, or a range "
        '[">" or ">=", number, "<" or "<=", number]'
    )
    if not isinstance(value, list) or len(value) not in (2, 4):
        raise PatternError(f"{forms}, not {describe(value)}", path)
    op, first = value[0], value[1]
    if op not in ("=", "<", "<=", ">", ">=") or not _is_number(first):
        raise PatternError(f"{forms}; got {_json(value)}", path)
    first = _number(first, "'numeric'", path)
    if len(value) == 2:
        if op == "=":
            return Numeric(first, True, first, True)
        if op in _RANGE_START:
            return Numeric(lower=first, lower_inclusive=_RANGE_START[op])
        return Numeric(upper=first, upper_inclusive=_RANGE_END[op])
    op2, second = value[2], value[3]
    if op not in _RANGE_START or op2 not in _RANGE_END or not _is_number(second):
        raise PatternError(f"{forms}; got {_json(value)}", path)
    second = _number(second, "'numeric'", path)
    if not first < second:
        raise PatternError(
            f"'numeric' range {_json(value)} is empty: its lower bound must be below its upper "
            f"bound",
            path,
        )
    return Numeric(first, _RANGE_START[op], second, _RANGE_END[op2])


def _string(name: str, value: Any, path: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise PatternError(f"{name!r} takes a string, not {describe(value)}", path)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Number, where: str, path: tuple[str, ...]) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise PatternError(
            f"{where} takes numbers within the range of a double (about ±1.8e308)", path
        )
    return value


def describe(value: Any) -> str:
    """How a JSON value is named in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return "an object" if value else "an empty object"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
