"""How a mapping finds its source before validation, and validates the fields only it takes.

:class:`~poller.config.mapping.MappingConfig` validates in two halves: its own shared fields, and
the fields that belong to one kind of source (``Topics``, ``Queues``...), which it splits out and
hands to that source's options model. The helpers here do the splitting, find the source from the
raw ``EventSourceArn`` or ``SelfManagedEventSource``, and keep every problem's place in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from poller.config.fields import ARN, SelfManagedEventSource, SourceOptions
from poller.sources import registry
from poller.sources.spec import SourceSpec

__all__ = ["error_detail", "missing_source_message", "spec_of_raw", "validate_options"]


def spec_of_raw(data: Mapping[str, Any]) -> SourceSpec | None:
    """The source the raw mapping names (before validation), or None when it names none."""
    arn = data.get("EventSourceArn", data.get("event_source_arn"))
    if isinstance(arn, str):
        try:
            return registry.spec_for_arn(ARN.parse(arn.strip()))
        except ValueError:
            return None
    managed = data.get("SelfManagedEventSource", data.get("self_managed_event_source"))
    if isinstance(managed, SelfManagedEventSource):
        return registry.spec_for_endpoints(managed.key)
    if isinstance(managed, Mapping):
        endpoints = managed.get("Endpoints", managed.get("endpoints"))
        if isinstance(endpoints, Mapping) and len(endpoints) == 1:
            return registry.spec_for_endpoints(str(next(iter(endpoints))))
    return None


def validate_options(
    spec: SourceSpec, owned: Mapping[str, Any]
) -> tuple[SourceOptions | None, list[ErrorDetails], list[str]]:
    """The source's options from its fields: (options, field errors, fields of other sources).

    A field another source takes is a rule problem ("only allowed on Kafka mappings"), reported
    with the other cross-field rules.
    """
    foreign: list[str] = []
    mine: dict[str, Any] = {}
    for key, value in owned.items():
        owners = registry.owners_of(key)
        if spec in owners:
            mine[key] = value
            continue
        titles = " and ".join(s.title for s in owners)
        foreign.append(
            f"{registry.aws_name(owners[0].options, key)}: only allowed on {titles} mappings"
        )
    try:
        return spec.options.model_validate(mine), [], foreign
    except ValidationError as error:
        return None, error.errors(), foreign


def error_detail(error: ErrorDetails) -> InitErrorDetails:
    """An error collected from a nested validation, re-raised with its place and message."""
    if error["type"] in ("value_error", "assertion_error"):
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return {
            "type": PydanticCustomError(
                "value_error", message.replace("{", "{{").replace("}", "}}")
            ),
            "loc": error["loc"],
            "input": error.get("input"),
        }
    detail: InitErrorDetails = {
        "type": error["type"],
        "loc": error["loc"],
        "input": error.get("input"),
    }
    if "ctx" in error:
        detail["ctx"] = error["ctx"]
    return detail


def missing_source_message() -> str:
    takers = registry.self_managed_titles()
    return (
        "EventSourceArn: missing; a mapping needs EventSourceArn or, for "
        f"{takers}, SelfManagedEventSource.Endpoints"
    )
