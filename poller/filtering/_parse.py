"""A pattern's text, read into a tree of rules and checked the way AWS checks it.

A pattern is a JSON object. Each key names a field of the record; its value is either an object
(the field's own fields, one level down) or a non-empty list of conditions on the field's value
(see ``_operators``). The key ``$or`` takes a list of at least two such objects, any one of which
must match; it may appear at any level. Everything else is refused before anything runs:
malformed JSON, a pattern that is not an object, empty objects and lists, bare values where a
list belongs, a key given twice, an operator name used as a field name inside ``$or``, and a
field that one branch of the pattern would constrain twice (AWS's "cannot be allowed multiple
times").
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from poller.filtering._operators import (
    OPERATOR_NAMES,
    Condition,
    PatternError,
    describe,
    parse_condition,
)

__all__ = ["LeafRule", "ObjectRule", "Rule", "drop_key", "parse_pattern"]


@dataclass(frozen=True, slots=True)
class LeafRule:
    """Conditions on one field's value; the field matches when any condition does."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class ObjectRule:
    """Fields of one object level, all of which must match, and ``$or`` groups at that level,
    each of which needs one matching branch."""

    fields: tuple[tuple[str, Rule], ...] = ()
    any_of: tuple[tuple[ObjectRule, ...], ...] = ()


Rule = LeafRule | ObjectRule

_OR = "$or"


def parse_pattern(text: str) -> ObjectRule:
    """The rule tree of one pattern; raises :class:`PatternError` naming what AWS would refuse."""
    if not text.strip():
        raise PatternError("the pattern is empty; a pattern is a JSON object")
    try:
        document = json.loads(
            text, object_pairs_hook=_object_without_repeats, parse_constant=_no_constant
        )
    except json.JSONDecodeError as error:
        raise PatternError(
            f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(document, dict):
        raise PatternError(f"a pattern is a JSON object, not {describe(document)}")
    rule = _object(document, (), inside_or=False)
    _refuse_repeated_paths(rule)
    return rule


def drop_key(rule: ObjectRule, key: str) -> ObjectRule:
    """``rule`` without its conditions on the top-level field ``key``, also inside top-level
    ``$or`` branches: what is left to check when AWS filters "on the metadata properties
    only" (a Kafka or MQ payload whose format does not match the pattern's)."""
    fields = tuple((name, sub) for name, sub in rule.fields if name != key)
    any_of = tuple(tuple(drop_key(branch, key) for branch in group) for group in rule.any_of)
    return ObjectRule(fields, any_of)


def _object(document: dict[str, Any], path: tuple[str, ...], *, inside_or: bool) -> ObjectRule:
    if not document:
        raise PatternError("an empty object matches nothing; give at least one field", path)
    fields: list[tuple[str, Rule]] = []
    groups: list[tuple[ObjectRule, ...]] = []
    for key, value in document.items():
        if key == _OR:
            groups.append(_or_group(value, path))
            continue
        if inside_or and key in OPERATOR_NAMES:
            raise PatternError(
                f"{key!r} is an operator name and cannot be a field name inside '$or'", path
            )
        where = (*path, key)
        if isinstance(value, dict):
            fields.append((key, _object(value, where, inside_or=inside_or)))
        elif isinstance(value, list):
            if not value:
                raise PatternError(
                    "an empty list matches nothing; give at least one value or operator", where
                )
            fields.append((key, LeafRule(tuple(parse_condition(item, where) for item in value))))
        else:
            raise PatternError(
                f"a field takes a list of values or an object of fields, not {describe(value)} "
                f"(write [{json.dumps(value)}] to match that value)",
                where,
            )
    return ObjectRule(tuple(fields), tuple(groups))


def _or_group(value: Any, path: tuple[str, ...]) -> tuple[ObjectRule, ...]:
    where = (*path, _OR)
    if not isinstance(value, list) or len(value) < 2:
        got = f"a list of {len(value)}" if isinstance(value, list) else describe(value)
        raise PatternError(f"'$or' takes a list of at least two objects, not {got}", where)
    branches: list[ObjectRule] = []
    for item in value:
        if not isinstance(item, dict):
            raise PatternError(f"every entry of '$or' is an object, not {describe(item)}", where)
        branches.append(_object(item, path, inside_or=True))
    return tuple(branches)


def _refuse_repeated_paths(rule: ObjectRule) -> None:
    """AWS expands ``$or`` into alternatives and refuses a pattern in which one alternative
    constrains the same field twice (say ``{"a": [1], "$or": [{"a": [2]}, {"b": [3]}]}``).
    Two uses of a path clash unless they sit in different branches of one ``$or``."""
    uses: defaultdict[tuple[str, ...], list[dict[int, int]]] = defaultdict(list)
    counter = itertools.count()

    def walk(node: ObjectRule, path: tuple[str, ...], choices: dict[int, int]) -> None:
        for key, sub in node.fields:
            where = (*path, key)
            if isinstance(sub, LeafRule):
                uses[where].append(choices)
            else:
                walk(sub, where, choices)
        for group in node.any_of:
            group_id = next(counter)
            for index, branch in enumerate(group):
                walk(branch, path, {**choices, group_id: index})

    walk(rule, (), {})
    for path, contexts in uses.items():
        for i, first in enumerate(contexts):
            for second in contexts[i + 1 :]:
                apart = any(first[g] != second[g] for g in first.keys() & second.keys())
                if not apart:
                    raise PatternError(
                        "this field is constrained twice in one alternative of the pattern "
                        "(merge its conditions into one list)",
                        path,
                    )


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise PatternError(f"the key {key!r} appears twice in one object")
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise PatternError(f"not valid JSON: {name} is not a JSON value")
