"""A rule tree turned into plain closures, so matching a record does no parsing and no lookups.

Each field's conditions are sorted once by the JSON type they can match (strings, numbers,
booleans, null) into sets, tuples and precomputed answers; matching a value is one ``type()``
check and, for the usual patterns, one set lookup or one ``startswith``.

How a document is walked (AWS's rules):

* All fields of an object level must match, and one branch of each ``$or`` group.
* A missing field matches only ``exists: false``. So does a field whose value is an object or an
  empty list: conditions apply to leaf values (strings, numbers, booleans, null) only.
* A list in the document is a set of values: a field matches when any element does (nested lists
  are flattened). Fields of objects inside a list must all match within one element; AWS does not
  combine fields taken from different elements.
* An object pattern over a value that is not an object sees no fields (only ``exists: false``
  can match there).
* :data:`NOT_JSON` fails every clause placed on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from sys import float_info
from typing import Any

from poller.filtering._casefold import ignore_case_test
from poller.filtering._operators import (
    AnythingBut,
    Condition,
    Equals,
    EqualsIgnoreCase,
    Exists,
    Numeric,
    Prefix,
    Suffix,
)
from poller.filtering._parse import LeafRule, ObjectRule, Rule
from poller.filtering._payload import NOT_JSON

__all__ = ["MISSING", "Test", "compile_rule"]

Test = Callable[[Any], bool]

#: What a field test is given for a field the document does not have.
MISSING: Any = type("Missing", (), {"__slots__": (), "__repr__": lambda self: "MISSING"})()

_NO_FIELDS: dict[str, Any] = {}
_BIGGEST = float_info.max


def compile_rule(rule: Rule) -> Test:
    """A test of one value (a document, or a field's value) against ``rule``."""
    if isinstance(rule, LeafRule):
        return _leaf(rule.conditions)
    return _object(rule)


def _object(rule: ObjectRule) -> Test:
    fields = tuple((key, compile_rule(sub)) for key, sub in rule.fields)
    groups = tuple(tuple(_object(branch) for branch in group) for group in rule.any_of)

    def test(document: Any) -> bool:
        kind = type(document)
        if kind is dict:
            get = document.get
        elif kind is list:
            return in_list(document)
        elif document is NOT_JSON:
            return False
        elif isinstance(document, Mapping):
            get = document.get
        else:  # missing, or a leaf value: no fields at this level
            get = _NO_FIELDS.get
        for key, field_test in fields:
            if not field_test(get(key, MISSING)):
                return False
        for group in groups:
            for branch in group:
                if branch(document):
                    break
            else:
                return False
        return True

    def in_list(items: list[Any]) -> bool:
        seen = False
        for item in items:
            seen = True
            if test(item):
                return True
        # An empty list has no fields, so it stands for a missing value.
        return False if seen else test(MISSING)

    if len(fields) == 1 and not groups:
        return _path(rule, test)
    return test


def _path(rule: ObjectRule, general: Test) -> Test:
    """The common shape ``{"body": {"status": [...]}}``: a chain of single fields ending in one
    rule, walked with plain dict lookups. Anything but a dict on the way (a list, a missing
    field, NOT_JSON) goes to ``general``, the full walk, so the answer is the same."""
    keys: list[str] = []
    node: Rule = rule
    while isinstance(node, ObjectRule) and len(node.fields) == 1 and not node.any_of:
        ((key, node),) = node.fields
        keys.append(key)
    last = compile_rule(node)
    if len(keys) == 1:
        (first,) = keys

        def one(document: Any) -> bool:
            if type(document) is dict:
                return last(document.get(first, MISSING))
            return general(document)

        return one
    if len(keys) == 2:
        outer, inner = keys

        def two(document: Any) -> bool:
            if type(document) is dict:
                value = document.get(outer, MISSING)
                if type(value) is dict:
                    return last(value.get(inner, MISSING))
            return general(document)

        return two
    chain = tuple(keys)

    def many(document: Any) -> bool:
        value = document
        for key in chain:
            if type(value) is not dict:
                return general(document)
            value = value.get(key, MISSING)
        return last(value)

    return many


def _leaf(conditions: Sequence[Condition]) -> Test:
    answers = _Answers(conditions)
    string_test, number_test = answers.string_test, answers.number_test
    true_ok, false_ok, null_ok = answers.true_ok, answers.false_ok, answers.null_ok
    scalar = answers.scalar()
    absent = any(isinstance(c, Exists) and not c.present for c in conditions)

    def test(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return string_test(value)
        if kind is int or kind is float:
            return number_test(value)
        if kind is bool:
            return true_ok if value else false_ok
        if value is None:
            return null_ok
        if kind is list:
            found = in_list(value)
            return absent if found is None else found
        if value is NOT_JSON:
            return False
        if value is MISSING or isinstance(value, Mapping):
            return absent
        if isinstance(value, list | tuple):
            found = in_list(value)
            return absent if found is None else found
        return scalar(value)

    def in_list(items: Sequence[Any]) -> bool | None:
        """True when a leaf matches, False when leaves exist but none matches, None when the
        list holds no leaf at all."""
        seen: bool | None = None
        for item in items:
            if type(item) is list:
                inner = in_list(item)
                if inner:
                    return True
                if inner is False:
                    seen = False
            elif isinstance(item, Mapping):
                continue
            elif scalar(item):
                return True
            else:
                seen = False
        return seen

    return test


class _Answers:
    """A field's conditions sorted by the JSON type of the value they test: a test for strings,
    a test for numbers, and fixed answers for true, false and null."""

    __slots__ = ("false_ok", "null_ok", "number_test", "string_test", "true_ok")

    def __init__(self, conditions: Sequence[Condition]) -> None:
        strings = _StringTests()
        numbers: list[Test] = []
        exact_numbers: set[int | float] = set()
        true_ok = false_ok = null_ok = False
        for condition in conditions:
            match condition:
                case Exists(present=True):
                    strings.tests.append(_always)
                    numbers.append(_always)
                    true_ok = false_ok = null_ok = True
                case Exists(present=False):
                    pass
                case Equals(value=str() as text):
                    strings.exact.add(text)
                case Equals(value=bool() as flag):
                    true_ok, false_ok = true_ok or flag, false_ok or not flag
                case Equals(value=None):
                    null_ok = True
                case Equals(value=int() | float() as number):
                    exact_numbers.add(number)
                case EqualsIgnoreCase(value=text):
                    strings.add_ignore_case("equals", text)
                case Prefix(value=text, ignore_case=folded):
                    strings.add_affix("prefix", text, folded)
                case Suffix(value=text, ignore_case=folded):
                    strings.add_affix("suffix", text, folded)
                case AnythingBut(values=excluded, numeric=False):
                    strings.tests.append(_not_in(excluded))
                    numbers.append(_always)
                    true_ok = false_ok = null_ok = True
                case AnythingBut(values=excluded, numeric=True):
                    strings.tests.append(_always)
                    numbers.append(_not_in(excluded))
                    true_ok = false_ok = null_ok = True
                case Numeric():
                    numbers.append(_range(condition))
        if exact_numbers:
            numbers.insert(0, frozenset(exact_numbers).__contains__)
        self.string_test = strings.build()
        self.number_test = _any_of(numbers)
        self.true_ok, self.false_ok, self.null_ok = true_ok, false_ok, null_ok

    def scalar(self) -> Test:
        """A test of one leaf value of any type (for the elements of lists)."""
        string_test, number_test = self.string_test, self.number_test
        true_ok, false_ok, null_ok = self.true_ok, self.false_ok, self.null_ok

        def scalar(value: Any) -> bool:
            kind = type(value)
            if kind is str:
                return string_test(value)
            if kind is int or kind is float:
                return number_test(value)
            if kind is bool:
                return true_ok if value else false_ok
            if value is None:
                return null_ok
            return False

        return scalar


class _StringTests:
    """Collects the string conditions of one field and builds one test from them."""

    __slots__ = ("exact", "folded", "prefixes", "suffixes", "tests")

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.folded: dict[str, list[str]] = {"equals": [], "prefix": [], "suffix": []}
        self.tests: list[Test] = []

    def add_ignore_case(self, kind: str, text: str) -> None:
        self.folded[kind].append(text)

    def add_affix(self, kind: str, text: str, folded: bool) -> None:
        if folded:
            self.folded[kind].append(text)
        elif kind == "prefix":
            self.prefixes.append(text)
        else:
            self.suffixes.append(text)

    def build(self) -> Test:
        tests: list[Test] = []
        if len(self.exact) == 1:
            (only,) = self.exact
            tests.append(only.__eq__)
        elif self.exact:
            tests.append(frozenset(self.exact).__contains__)
        if self.prefixes:
            prefixes = tuple(self.prefixes)
            tests.append(lambda text: text.startswith(prefixes))
        if self.suffixes:
            suffixes = tuple(self.suffixes)
            tests.append(lambda text: text.endswith(suffixes))
        for kind in ("equals", "prefix", "suffix"):
            if self.folded[kind]:
                tests.append(ignore_case_test(kind, self.folded[kind]))
        return _any_of([*tests, *self.tests])


def _range(condition: Numeric) -> Test:
    # Open ends stop at the largest double, so infinities (and NaN) never match, as AWS, which
    # compares doubles, cannot represent them.
    low = -_BIGGEST if condition.lower is None else condition.lower
    high = _BIGGEST if condition.upper is None else condition.upper
    low_in = condition.lower is None or condition.lower_inclusive
    high_in = condition.upper is None or condition.upper_inclusive
    if low_in and high_in:
        return lambda value: low <= value <= high
    if low_in:
        return lambda value: low <= value < high
    if high_in:
        return lambda value: low < value <= high
    return lambda value: low < value < high


def _not_in(excluded: frozenset[Any]) -> Test:
    return lambda value: value not in excluded


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _any_of(tests: Sequence[Test]) -> Test:
    if not tests:
        return _never
    if any(t is _always for t in tests):
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda value: first(value) or second(value)
    every = tuple(tests)

    def any_test(value: Any) -> bool:
        for test in every:  # noqa: SIM110 (a plain loop is faster than any() over a generator)
            if test(value):
                return True
        return False

    return any_test
