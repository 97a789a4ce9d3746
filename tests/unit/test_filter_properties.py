"""Property tests of FilterCriteria matching against plain Python statements of the same rules."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from poller.filtering import (
    Pattern,
    case_alternatives,
    compile_filters,
    compile_pattern,
)

FAST = settings(max_examples=60, deadline=None)

keys = st.text(alphabet="abcdefgh-_.", min_size=1, max_size=4).filter(lambda k: k != "$or")
finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(st.integers(-(10**12), 10**12), finite)
strings = st.text(max_size=8)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
documents = st.dictionaries(keys, values, max_size=4)


def compiled(pattern: dict[str, Any], index: int = 0) -> Pattern:
    return compile_pattern(json.dumps(pattern), index=index)


def field(conditions: list[Any], value: Any) -> bool:
    return compiled({"f": conditions}).matches({"f": value})


# --- patterns drawn from a small grammar, for the OR property ---

leaf_conditions = st.one_of(
    scalars.map(lambda v: [v]),
    strings.map(lambda s: [{"prefix": s}]),
    strings.map(lambda s: [{"suffix": s}]),
    strings.map(lambda s: [{"equals-ignore-case": s}]),
    st.lists(strings, min_size=1, max_size=3).map(lambda v: [{"anything-but": v}]),
    numbers.map(lambda n: [{"numeric": [">=", n]}]),
    st.booleans().map(lambda b: [{"exists": b}]),
)
patterns = st.dictionaries(st.sampled_from("abc"), leaf_conditions, min_size=1, max_size=3)
small_documents = st.dictionaries(st.sampled_from("abcd"), values, max_size=4)


@FAST
@given(st.lists(patterns, max_size=5), small_documents)
def test_a_filter_set_matches_when_any_of_its_patterns_does(
    chosen: list[dict[str, Any]], document: dict[str, Any]
) -> None:
    filters = compile_filters([json.dumps(p) for p in chosen])
    singles = [compiled(p, i) for i, p in enumerate(chosen)]
    expected = not singles or any(p.matches(document) for p in singles)
    assert filters.matches(document) is expected


# --- a pattern made of a document's own leaf values matches it ---


def pattern_from(value: Any, random: Any) -> Any:
    """A pattern fragment that ``value`` satisfies, built from its own leaves: some fields of an
    object, one element of a list (fields of different elements never combine), the value
    itself for a leaf. None where there is nothing to build on (empty objects and lists)."""
    if isinstance(value, dict):
        fragment = {}
        for key in random.sample(sorted(value), k=random.randint(0, len(value))):
            inner = pattern_from(value[key], random)
            if inner is not None:
                fragment[key] = inner
        return fragment or None
    if isinstance(value, list):
        return pattern_from(random.choice(value), random) if value else None
    return [value]


@FAST
@given(documents, st.randoms(use_true_random=False))
def test_a_pattern_of_a_documents_own_leaf_values_matches_it(
    document: dict[str, Any], random: Any
) -> None:
    pattern = pattern_from(document, random)
    assume(pattern is not None)
    assert compiled(pattern).matches(document)


@FAST
@given(st.lists(scalars, min_size=1, max_size=4), st.dictionaries(keys, scalars, max_size=3))
def test_values_from_a_list_field_match_any_element(
    elements: list[Any], rest: dict[str, Any]
) -> None:
    document = {**rest, "f": elements}
    for element in elements:
        assert compiled({"f": [element]}).matches(document)


# --- anything-but is the negation of equality on present leaf values ---

excludable = st.one_of(strings, numbers)


@FAST
@given(excludable, scalars)
def test_anything_but_a_value_is_the_negation_of_the_value(excluded: Any, value: Any) -> None:
    assert field([{"anything-but": [excluded]}], value) is not field([excluded], value)
    assert field([{"anything-but": excluded}], value) is not field([excluded], value)


@FAST
@given(st.lists(excludable, min_size=1, max_size=4), scalars)
def test_anything_but_a_list_excludes_each_of_its_values(excluded: list[Any], value: Any) -> None:
    assume(
        all(isinstance(v, str) for v in excluded) or not any(isinstance(v, str) for v in excluded)
    )
    expected = not any(field([v], value) for v in excluded)
    assert field([{"anything-but": excluded}], value) is expected


@FAST
@given(excludable)
def test_anything_but_never_matches_a_missing_field(excluded: Any) -> None:
    assert compiled({"f": [{"anything-but": [excluded]}]}).matches({}) is False


# --- numeric comparisons are Python's on JSON numbers ---

OPERATORS = {
    "=": lambda v, n: v == n,
    "<": lambda v, n: v < n,
    "<=": lambda v, n: v <= n,
    ">": lambda v, n: v > n,
    ">=": lambda v, n: v >= n,
}


@FAST
@given(st.sampled_from(sorted(OPERATORS)), numbers, numbers)
def test_numeric_comparison_is_pythons(op: str, bound: Any, value: Any) -> None:
    assert field([{"numeric": [op, bound]}], value) is OPERATORS[op](value, bound)


@FAST
@given(
    st.sampled_from([">", ">="]),
    st.sampled_from(["<", "<="]),
    st.lists(numbers, min_size=2, max_size=2, unique=True).map(sorted),
    numbers,
)
def test_numeric_range_is_both_comparisons(
    low_op: str, high_op: str, bounds: list[Any], value: Any
) -> None:
    low, high = bounds
    assume(low < high)
    expected = OPERATORS[low_op](value, low) and OPERATORS[high_op](value, high)
    assert field([{"numeric": [low_op, low, high_op, high]}], value) is expected


@FAST
@given(numbers, st.one_of(strings, st.booleans(), st.none()))
def test_numeric_never_matches_what_is_not_a_number(bound: Any, value: Any) -> None:
    assert field([{"numeric": [">=", bound]}], value) is False
    assert field([{"numeric": ["<", bound]}], value) is False


# --- prefix and suffix are str.startswith and str.endswith ---


@FAST
@given(strings, st.text(max_size=12))
def test_prefix_is_startswith(prefix: str, text: str) -> None:
    assert field([{"prefix": prefix}], text) is text.startswith(prefix)
    assert field([{"prefix": prefix}], prefix + text) is True


@FAST
@given(strings, st.text(max_size=12))
def test_suffix_is_endswith(suffix: str, text: str) -> None:
    assert field([{"suffix": suffix}], text) is text.endswith(suffix)
    assert field([{"suffix": suffix}], text + suffix) is True


# --- equals-ignore-case: AWS's per-character folding ---


def reference_fold_match(pattern: str, text: str, how: str) -> bool:
    """Does ``text`` equal / start with / end with ``pattern`` when each pattern character may
    stand for any of its forms? A plain backtracking search, independent of the regexes."""
    if how == "suffix":
        pattern_chars = [tuple(f[::-1] for f in case_alternatives(c)) for c in reversed(pattern)]
        text = text[::-1]
        how = "prefix"
    else:
        pattern_chars = [case_alternatives(c) for c in pattern]

    def walk(i: int, at: int) -> bool:
        if i == len(pattern_chars):
            return at == len(text) if how == "equals" else True
        return any(
            text.startswith(form, at) and walk(i + 1, at + len(form)) for form in pattern_chars[i]
        )

    return walk(0, 0)


folding_text = st.text(
    alphabet=st.one_of(
        # ß, capital ß, dotted capital I, dotless i, titlecase/upper/lower dz, sigma forms, the ff
        # ligature, the Kelvin sign, a Deseret letter pair beyond the BMP.
        st.sampled_from(
            "aAbBkKsSiI -\u00df\u1e9e\u0130\u0131\u01c5\u01c6\u01c4\u03a3\u03c3\u03c2"
            "\ufb00\u212a\U00010400\U00010428"
        ),
        st.characters(codec="utf-8"),
    ),
    max_size=6,
)


@FAST
@given(
    st.text(alphabet=st.characters(codec="ascii"), max_size=8),
    st.text(alphabet=st.characters(codec="ascii"), max_size=8),
)
def test_on_ascii_ignore_case_is_casefold_equality(pattern: str, text: str) -> None:
    assert field([{"equals-ignore-case": pattern}], text) is (pattern.casefold() == text.casefold())


@FAST
@given(folding_text, folding_text, st.sampled_from(["equals", "prefix", "suffix"]))
def test_ignore_case_follows_the_per_character_rule(pattern: str, text: str, how: str) -> None:
    condition = {
        "equals": {"equals-ignore-case": pattern},
        "prefix": {"prefix": {"equals-ignore-case": pattern}},
        "suffix": {"suffix": {"equals-ignore-case": pattern}},
    }[how]
    assert field([condition], text) is reference_fold_match(pattern, text, how)


@FAST
@given(folding_text)
def test_a_pattern_matches_its_per_character_upper_and_lower_forms(pattern: str) -> None:
    upper = "".join(case_alternatives(c)[-1] for c in pattern)
    lower = "".join(case_alternatives(c)[0] for c in pattern)
    assert field([{"equals-ignore-case": pattern}], upper)
    assert field([{"equals-ignore-case": pattern}], lower)


# --- lists in the document: a field matches when any element does ---


@FAST
@given(leaf_conditions, st.lists(scalars, min_size=1, max_size=5))
def test_a_list_field_matches_when_any_element_matches(
    conditions: list[Any], elements: list[Any]
) -> None:
    assume(conditions != [{"exists": False}])
    expected = any(field(conditions, element) for element in elements)
    assert field(conditions, elements) is expected
    assert field(conditions, [elements[:1], [elements[1:]]]) is expected
