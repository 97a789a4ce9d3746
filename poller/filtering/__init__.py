"""FilterCriteria: the pattern language of Lambda event source mapping filters.

A mapping's ``FilterCriteria = { Filters = [{ Pattern = "<JSON>" }, ...] }`` decides which
records reach the function; the others are settled as filtered. This package compiles the
patterns once and tests records against them; which document a record presents (SQS ``body``,
Kinesis ``data``, DynamoDB ``dynamodb``, Kafka ``value``, MQ ``data``, plus metadata) is the
source's business, with :func:`decode_payload` for the data field.

The rules, as AWS documents them for Lambda (invocation-eventfiltering) and EventBridge (event
patterns, comparison operators, Pipes filtering), and as AWS's reference matcher behaves:

* Filters are ORed; no filters means every record passes. At most 5 filters (10 after a quota
  increase); a pattern is at most 4,096 characters of JSON.
* A pattern is a non-empty object. Its keys are fields of the record, nested like the record;
  every field named must match (AND); fields not named are ignored.
* A field's value in the pattern is a non-empty list; the field matches if any entry does (OR).
  Entries are exact values (strings character by character, no normalisation; numbers by value;
  ``true``, ``false``, ``null``; ``null`` and ``""`` are different) or one-operator objects:
  ``equals-ignore-case``, ``prefix``, ``suffix`` (both also ``{"equals-ignore-case": ...}``),
  ``anything-but`` (a string, a number, or a list of only strings or only numbers),
  ``numeric`` (``=``, ``<``, ``<=``, ``>``, ``>=``, or a ``>``/``>=`` then ``<``/``<=`` range)
  and ``exists`` (true or false). ``$or`` takes a list of two or more objects at any level.
* EventBridge's ``wildcard``, ``cidr`` and object forms of ``anything-but`` are refused: Lambda
  and EventBridge Pipes, which share the filtering, do not support them.
* Conditions apply to leaf values only; a list in the record matches when any element does, and
  fields of objects inside a list match within one element. ``exists: false`` matches a missing
  field (and an object or empty list, which have no leaf value), not a field set to null.
  ``anything-but`` never matches a missing field, and matches a value of another type.
  ``numeric`` needs a JSON number: a numeric string (DynamoDB's ``{"N": "101"}``) never matches.
* Numbers compare by value, in exact values too (``[300]`` matches ``300.0``), as AWS's
  reference matcher does; the pages' older note that 300 and 300.0 differ describes text
  matching it has since extended. Numeric matching covers the range of a double, as that matcher
  does now (the pages' older limits were ±1e9, then ±5e9 with 15 significant digits); numbers
  beyond a double are refused in patterns and never match.

AWS rejects every invalid pattern with one message, "Invalid filter pattern definition.";
poller's :class:`~poller.errors.ConfigError` says which filter, what is wrong and where.
"""

from poller.filtering._casefold import alternatives as case_alternatives
from poller.filtering._pattern import (
    DEFAULT_MAX_FILTERS,
    MAX_FILTERS_WITH_QUOTA_INCREASE,
    MAX_PATTERN_LENGTH,
    FilterSet,
    Pattern,
    compile_filters,
    compile_pattern,
)
from poller.filtering._payload import NOT_JSON, NotJson, decode_payload

__all__ = [
    "DEFAULT_MAX_FILTERS",
    "MAX_FILTERS_WITH_QUOTA_INCREASE",
    "MAX_PATTERN_LENGTH",
    "NOT_JSON",
    "FilterSet",
    "NotJson",
    "Pattern",
    "case_alternatives",
    "compile_filters",
    "compile_pattern",
    "decode_payload",
]
