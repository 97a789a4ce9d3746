"""Case-insensitive string tests, folding case exactly the way AWS's matcher does.

AWS's reference matcher (event-ruler, in Java) lets each character of the pattern stand for its
lower-case or its upper-case form, taken one UTF-16 unit at a time in the root locale. That is
not Unicode case folding: ``"ß"`` matches ``"ß"`` and ``"SS"`` but not ``"ss"``; a title-case
letter such as ``"ǅ"`` matches ``"ǆ"`` and ``"Ǆ"`` but not itself; characters outside the Basic
Multilingual Plane (stored as surrogate pairs in Java) match only themselves. Python's
``str.lower``/``str.upper`` of one character give the same mappings as Java's for the same
Unicode version.

An ASCII pattern can only match ASCII text and then equals plain ``lower()`` comparison, which
is what almost every pattern is, so that case skips the regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Literal

__all__ = ["alternatives", "ignore_case_test"]

Kind = Literal["equals", "prefix", "suffix"]
StrTest = Callable[[str], bool]


def alternatives(char: str) -> tuple[str, ...]:
    """What one pattern character matches in the text, ignoring case (lower form first)."""
    if ord(char) > 0xFFFF:
        return (char,)
    lower, upper = char.lower(), char.upper()
    return (lower,) if lower == upper else (lower, upper)


def ignore_case_test(kind: Kind, values: Iterable[str]) -> StrTest:
    """A test that a string equals / starts with / ends with any of ``values``, ignoring case."""
    ascii_values = sorted({v.lower() for v in values if v.isascii()})
    other_values = sorted({v for v in values if not v.isascii()})
    tests: list[StrTest] = []
    if ascii_values:
        tests.append(_ascii_test(kind, ascii_values))
    if other_values:
        tests.append(_regex_test(kind, other_values))
    if len(tests) == 1:
        return tests[0]
    first, second = tests
    return lambda text: first(text) or second(text)


def _ascii_test(kind: Kind, lowered: list[str]) -> StrTest:
    if kind == "equals":
        wanted = frozenset(lowered)
        return lambda text: text.isascii() and text.lower() in wanted
    if "" in lowered:
        return lambda text: True
    by_length: dict[int, frozenset[str]] = {}
    for length in sorted({len(v) for v in lowered}):
        by_length[length] = frozenset(v for v in lowered if len(v) == length)
    groups = tuple(by_length.items())
    if kind == "prefix":

        def starts(text: str) -> bool:
            for length, wanted in groups:
                head = text[:length]
                if head.isascii() and head.lower() in wanted:
                    return True
            return False

        return starts

    def ends(text: str) -> bool:
        for length, wanted in groups:
            tail = text[-length:]
            if len(tail) == length and tail.isascii() and tail.lower() in wanted:
                return True
        return False

    return ends


def _regex_test(kind: Kind, values: list[str]) -> StrTest:
    if kind == "suffix":
        # An ending is a beginning of the reversed text, with each character's forms reversed.
        reversed_prefix = re.compile(
            "|".join(_expression(v[::-1], reverse_forms=True) for v in values)
        )
        return lambda text: reversed_prefix.match(text[::-1]) is not None
    expression = re.compile("|".join(_expression(v, reverse_forms=False) for v in values))
    if kind == "equals":
        return lambda text: expression.fullmatch(text) is not None
    return lambda text: expression.match(text) is not None


def _expression(value: str, *, reverse_forms: bool) -> str:
    parts: list[str] = []
    for char in value:
        forms = alternatives(char)
        if reverse_forms:
            forms = tuple(form[::-1] for form in forms)
        if all(len(form) == 1 for form in forms):
            inner = "".join(re.escape(form) for form in forms)
            parts.append(inner if len(forms) == 1 else f"[{inner}]")
        else:
            parts.append("(?:" + "|".join(re.escape(form) for form in forms) + ")")
    return "(?:" + "".join(parts) + ")"
