"""Reading a config: TOML files, ``get-event-source-mapping`` JSON, and readable problems.

Every problem becomes one line of a :class:`~poller.errors.ConfigError` that names the field, the
value and what is allowed, for example ``mappings[0].BatchSize: 0 is out of range (allowed 1..10000)``.
A file that cannot be read as TOML text is one :class:`ConfigFileError` (a ConfigError whose
message is that one line: the file and why).

No problem line quotes a credential: a value refused in a secret field (or in a table holding
one) is described, not shown, URLs lose their login, and every line is scrubbed of the file's
secrets (:mod:`poller.config.redaction`).
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poller.config.redaction import Scrubber, SensitivePath, sensitive_paths, shown_input
from poller.config.settings import AwsConfig, PollerConfig, StoreConfig
from poller.errors import ConfigError
from poller.sources import registry

__all__ = [
    "ESM_READ_ONLY_FIELDS",
    "NO_MAPPINGS",
    "ConfigFileError",
    "load_config",
    "load_esm_json",
    "parse_config",
    "read_config_file",
    "read_text_file",
    "secret_fields",
]

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


@functools.cache
def secret_fields() -> tuple[SensitivePath, ...]:
    """Every field of a config file that holds a credential or a URL that may carry a login,
    found from the markers on the models (each source's own mapping fields included)."""
    return sensitive_paths(
        PollerConfig, {("mappings", "*"): [spec.options for spec in registry.SPECS]}
    )


def _problems(error: ValidationError, scrub: Scrubber) -> list[str]:
    lines: list[str] = []
    paths = secret_fields()
    for item in error.errors(include_url=False):
        where = _location([p for p in item["loc"] if p not in ("function-after",)])
        message = str(item["msg"]).removeprefix("Value error, ")
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field (check the spelling against the AWS field names)"
        elif kind == "missing":
            message = "missing; this field is required"
        elif "input" in item and kind != "value_error":
            shown, redacted = shown_input(item["loc"], item["input"], paths)
            if redacted or not isinstance(item["input"], dict):
                message = f"{shown}: {message}"
        for part in message.split("\n"):
            lines.append(scrub(f"{where}: {part}" if where else part))
    return lines


#: The problem of a config file without mappings (it would run nothing and say so only by idling).
NO_MAPPINGS = (
    "mappings: none given; a config file needs at least one [[mappings]] table (an "
    "EventSourceArn or SelfManagedEventSource, and a Handler or FunctionName)"
)


_NUL = "\x00"


class ConfigFileError(ConfigError):
    """The config file cannot be read as TOML text; its one problem is the whole message."""

    def __str__(self) -> str:
        return self.problems[0]


def parse_config(data: Mapping[str, Any], *, require_mappings: bool = False) -> PollerConfig:
    """Validate a config given as a mapping (the parsed TOML); ConfigError lists every problem.

    ``require_mappings`` refuses a config without ``[[mappings]]`` (a config file must have one;
    a config built in Python may add its handlers' mappings otherwise).
    """
    problems: list[str] = []
    config: PollerConfig | None = None
    try:
        config = PollerConfig.model_validate(data)
    except ValidationError as error:
        problems.extend(_problems(error, Scrubber(data, secret_fields())))
    if require_mappings and not data.get("mappings"):
        problems.append(NO_MAPPINGS)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def read_text_file(path: str | Path, *, what: str = "config file", kind: str = "TOML") -> str:
    """The text of ``what`` (a file of ``kind``, TOML or JSON); :class:`ConfigFileError` (one line:
    the file and why) when it cannot be read or is not UTF-8 text (a binary file, an image)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read the {what} ({error.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigFileError(
            f"{path}: not a {kind} text file (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start} is not UTF-8; is it a binary file?)"
        ) from None
    if _NUL in text:
        raise ConfigFileError(
            f"{path}: not a {kind} text file (it holds NUL bytes at offset "
            f"{text.index(_NUL)}; is it a binary file?)"
        )
    return text


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML config file as data, not validated yet; :class:`ConfigFileError` when it cannot be
    read, is not text or is not valid TOML."""
    text = read_text_file(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(f"{path}: not valid TOML ({error})") from None


def load_config(path: str | Path) -> PollerConfig:
    """Read and validate a TOML config file (which must have at least one ``[[mappings]]``)."""
    return parse_config(read_config_file(path), require_mappings=True)


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
        # Unset fields stay unset, so a region from the environment is reported as such.
        data["aws"] = aws.model_dump(exclude_none=True, exclude_unset=True)
    if store is not None:
        data["store"] = store.model_dump()
    return parse_config(data)
