"""Compiled filter patterns and the ORed set of them that a mapping applies to each record.

Compiling checks everything AWS checks when a mapping is created (the pattern's length, its
JSON and its grammar, the number of filters) and raises one :class:`~poller.errors.ConfigError`
naming the filter and the problem, so a config that would not deploy on AWS never starts here.
Matching then costs a few closure calls per record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from poller.errors import ConfigError
from poller.filtering._compile import compile_rule
from poller.filtering._operators import PatternError
from poller.filtering._parse import LeafRule, ObjectRule, drop_key, parse_pattern

__all__ = [
    "DEFAULT_MAX_FILTERS",
    "MAX_FILTERS_WITH_QUOTA_INCREASE",
    "MAX_PATTERN_LENGTH",
    "FilterSet",
    "Pattern",
    "compile_filters",
    "compile_pattern",
]

#: Characters in one ``Filters[].Pattern`` (the Lambda API's length constraint).
MAX_PATTERN_LENGTH = 4096
#: Filters per event source mapping under AWS's default quota.
DEFAULT_MAX_FILTERS = 5
#: The most filters AWS grants per event source mapping after a quota increase.
MAX_FILTERS_WITH_QUOTA_INCREASE = 10

Form = Literal["object", "values"]


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled ``Filters[index].Pattern``. Immutable; safe to share between tasks."""

    #: The pattern as configured.
    text: str
    #: Its position in ``FilterCriteria.Filters`` (for messages).
    index: int
    rule: ObjectRule = field(repr=False, compare=False)
    _test: Callable[[Any], bool] = field(repr=False, compare=False)

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Whether the record, as Lambda presents it to filters, satisfies this pattern."""
        return self._test(document)

    def forms(self, key: str) -> frozenset[Form]:
        """How the pattern constrains the top-level field ``key`` (inside top-level ``$or``
        branches too): ``"object"`` when it reaches into the field's JSON, ``"values"`` when it
        compares the field's value itself. Empty when the pattern does not mention ``key``.
        Sources use it for AWS's payload-format rules (say, a Kinesis pattern on ``data`` must
        be an object)."""
        return frozenset(_forms(self.rule, key))

    def without(self, key: str) -> Pattern:
        """This pattern with its conditions on the top-level field ``key`` removed: AWS's
        "metadata properties only" filtering for Kafka and MQ payloads whose format does not
        match the pattern's. What is left may be empty, which matches every record."""
        rule = drop_key(self.rule, key)
        return Pattern(self.text, self.index, rule, compile_rule(rule))


@dataclass(frozen=True, slots=True)
class FilterSet:
    """The filters of one mapping: a record passes when any pattern matches it, and every
    record passes an empty set (a mapping without FilterCriteria).

    ``filters.matches(document)`` answers whether a record passes. It is a function stored on
    the instance rather than a method: it runs once per record, and calling the compiled
    closure directly saves a call level.
    """

    patterns: tuple[Pattern, ...] = ()
    #: Whether the record, as Lambda presents it to filters, passes these filters.
    matches: Callable[[Mapping[str, Any]], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matches", _any_pattern(self.patterns))

    def __bool__(self) -> bool:
        """True when there is something to filter on (at least one pattern)."""
        return bool(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    def without(self, key: str) -> FilterSet:
        """Every pattern without its conditions on the top-level field ``key``."""
        return FilterSet(tuple(pattern.without(key) for pattern in self.patterns))


def compile_pattern(text: str, *, index: int) -> Pattern:
    """Parse and check ``FilterCriteria.Filters[index].Pattern``.

    Raises :class:`~poller.errors.ConfigError` whose message starts with
    ``FilterCriteria.Filters[<index>].Pattern:`` and says what AWS would refuse and where.
    """
    prefix = f"FilterCriteria.Filters[{index}].Pattern"
    if not isinstance(text, str):
        raise ConfigError(f"{prefix}: a pattern is a string of JSON, not {type(text).__name__}")
    if len(text) > MAX_PATTERN_LENGTH:
        raise ConfigError(
            f"{prefix}: {len(text):,} characters, at most {MAX_PATTERN_LENGTH:,} are allowed"
        )
    try:
        rule = parse_pattern(text)
    except PatternError as error:
        where = f" (at {'.'.join(error.path)})" if error.path else ""
        raise ConfigError(f"{prefix}: {error.reason}{where}") from None
    return Pattern(text, index, rule, compile_rule(rule))


def compile_filters(
    patterns: Sequence[str], *, max_filters: int = DEFAULT_MAX_FILTERS
) -> FilterSet:
    """Compile ``FilterCriteria.Filters``, given as their ``Pattern`` strings.

    ``max_filters`` is the account's quota: 5 by default, up to 10 after an increase. Raises one
    :class:`~poller.errors.ConfigError` listing every problem (too many filters, and each
    invalid pattern).
    """
    if not 1 <= max_filters <= MAX_FILTERS_WITH_QUOTA_INCREASE:
        raise ValueError(
            f"max_filters is between 1 and {MAX_FILTERS_WITH_QUOTA_INCREASE}, not {max_filters}"
        )
    problems: list[str] = []
    if len(patterns) > max_filters:
        quota = (
            f"at most {max_filters} are allowed (AWS's default quota; up to "
            f"{MAX_FILTERS_WITH_QUOTA_INCREASE} with a quota increase)"
            if max_filters == DEFAULT_MAX_FILTERS
            else f"at most {max_filters} are allowed by the configured quota"
        )
        problems.append(f"FilterCriteria.Filters: {len(patterns)} filters, {quota}")
    compiled: list[Pattern] = []
    for index, text in enumerate(patterns):
        try:
            compiled.append(compile_pattern(text, index=index))
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return FilterSet(tuple(compiled))


def _any_pattern(patterns: Sequence[Pattern]) -> Callable[[Mapping[str, Any]], bool]:
    tests = tuple(pattern._test for pattern in patterns)
    if not tests:
        return _pass
    if len(tests) == 1:
        return tests[0]

    def any_pattern(document: Mapping[str, Any]) -> bool:
        for test in tests:  # noqa: SIM110 (a plain loop is faster than any() over a generator)
            if test(document):
                return True
        return False

    return any_pattern


def _pass(document: Mapping[str, Any]) -> bool:
    return True


def _forms(rule: ObjectRule, key: str) -> set[Form]:
    found: set[Form] = set()
    for name, sub in rule.fields:
        if name == key:
            found.add("values" if isinstance(sub, LeafRule) else "object")
    for group in rule.any_of:
        for branch in group:
            found |= _forms(branch, key)
    return found
