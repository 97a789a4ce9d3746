"""Reading a config: TOML files, ``get-event-source-mapping`` JSON, and readable problems.

Every problem becomes one line of a :class:`~poller.errors.ConfigError` that names the field, the
value and what is allowed, for example ``mappings[0].BatchSize: 0 is out of range (allowed 1..10000)``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poller.config.settings import AwsConfig, PollerConfig, StoreConfig
from poller.errors import ConfigError

__all__ = ["ESM_READ_ONLY_FIELDS", "load_config", "load_esm_json", "parse_config"]

#: Read-only fields that ``aws lambda get-event-source-mapping`` prints and a mapping ignores.
ESM_READ_ONLY_FIELDS = frozenset(
    {
        "State",
        "StateTransitionReason",
        "LastModified",
        "LastProcessingResult",
        "FunctionArn",
        "FunctionName",
        "EventSourceMappingArn",
        "ResponseMetadata",
        "FilterCriteriaError",
        "KMSKeyArn",
        "MetricsConfig",
        "ProvisionedPollerConfig",
    }
)


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _problems(error: ValidationError, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for item in error.errors(include_url=False):
        where = _location([p for p in item["loc"] if p not in ("function-after",)])
        if prefix:
            where = f"{prefix}.{where}" if where and not where.startswith("[") else prefix + where
        message = str(item["msg"]).removeprefix("Value error, ")
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field (check the spelling against the AWS field names)"
        elif kind == "missing":
            message = "missing; this field is required"
        elif (
            "input" in item and kind not in ("value_error",) and not isinstance(item["input"], dict)
        ):
            message = f"{item['input']!r}: {message}"
        for part in message.split("\n"):
            lines.append(f"{where}: {part}" if where else part)
    return lines


def parse_config(data: Mapping[str, Any]) -> PollerConfig:
    """Validate a config given as a mapping (the parsed TOML); ConfigError lists every problem."""
    try:
        return PollerConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None


def load_config(path: str | Path) -> PollerConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return parse_config(data)


def load_esm_json(
    text: str,
    *,
    handler: str | None,
    aws: AwsConfig | None = None,
    store: StoreConfig | None = None,
) -> PollerConfig:
    """Build a config from the JSON that ``aws lambda get-event-source-mapping`` prints.

    Read-only fields (State, LastModified, FunctionArn, ...) are ignored; a ``--handler`` given on the
    command line replaces FunctionName.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"mapping JSON: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError("mapping JSON: expected an object, as get-event-source-mapping prints")
    mapping = {k: v for k, v in raw.items() if k not in ESM_READ_ONLY_FIELDS}
    if handler is not None:
        mapping["Handler"] = handler
    data: dict[str, Any] = {"mappings": [mapping]}
    if aws is not None:
        data["aws"] = aws.model_dump(exclude_none=True)
    if store is not None:
        data["store"] = store.model_dump()
    return parse_config(data)
