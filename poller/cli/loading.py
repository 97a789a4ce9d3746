"""What every ``poller`` command shares: its config arguments, how they become a config, and the
look at the handlers a config names (imported as their environments would import them)."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from poller.config import (
    AwsConfig,
    PollerConfig,
    StoreConfig,
    load_esm_json,
    parse_config,
    read_config_file,
    read_text_file,
)
from poller.config.loading import secret_fields
from poller.config.redaction import Scrubber
from poller.errors import ConfigError, HandlerImportError
from poller.functions import is_typed, load_handler

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "HandlerEntry",
    "add_config_arguments",
    "handler_entries",
    "handler_problems",
    "load",
]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

#: The ``--esm`` options and the ``[aws]``/``[store]`` fields they set.
_ESM_OPTIONS = {"region": "--region", "endpoint_url": "--endpoint-url", "url": "--store"}


def add_config_arguments(command: argparse.ArgumentParser) -> None:
    """CONFIG, or a mapping as AWS prints it (``--esm``) with what it cannot say."""
    command.add_argument("config", nargs="?", help="TOML config file")
    command.add_argument(
        "--esm",
        metavar="JSON",
        help="a mapping as `aws lambda get-event-source-mapping` prints",
    )
    command.add_argument("--handler", metavar="MODULE:FUNCTION", help="handler for --esm")
    command.add_argument("--region", help="AWS region for --esm (default: AWS_REGION)")
    command.add_argument(
        "--endpoint-url", help="AWS endpoint for --esm (an emulator, or 'embedded')"
    )
    command.add_argument(
        "--store", help="store URL for --esm (default sqlite:///./.poller/state.db)"
    )


def load(args: argparse.Namespace) -> PollerConfig:
    """The config the arguments name; ConfigError with every problem found.

    ``poller validate`` also imports the handlers of a config that is refused, so that a missing
    module or function is reported with the config's other problems; ``poller run`` refuses a
    handler the worker imports but could not call. Warnings (a region botocore does not know
    yet) go to stderr.
    """
    if args.esm and args.config:
        raise ConfigError("give either a CONFIG file or --esm, not both")
    if args.esm:
        config = _load_esm(args)
    elif not args.config:
        raise ConfigError("give a CONFIG file, or --esm mapping.json --handler module:function")
    elif args.handler or args.region or args.endpoint_url or args.store:
        raise ConfigError("--handler, --region, --endpoint-url and --store go with --esm only")
    else:
        data = read_config_file(args.config)
        # Handler modules are found in the current directory, PYTHONPATH, and next to the file.
        config_dir = str(Path(args.config).resolve().parent)
        if config_dir not in sys.path:
            sys.path.append(config_dir)
        try:
            config = parse_config(data, require_mappings=True)
        except ConfigError as error:
            if args.command != "validate":
                raise
            found = handler_problems(_raw_handler_entries(data))
            raise ConfigError([*error.problems, *found]) from None
    if args.command == "run":
        # The handlers the worker imports anyway: one it cannot call is refused before it starts.
        imported = [entry for entry in handler_entries(config) if entry.runs != "process"]
        problems = handler_problems(imported)
        if problems:
            raise ConfigError(problems)
    for warning in config.warnings:
        print(f"poller: warning: {warning}", file=sys.stderr)
    return config


def _load_esm(args: argparse.Namespace) -> PollerConfig:
    text = read_text_file(args.esm, what="mapping JSON", kind="JSON")
    aws_fields: dict[str, str] = {}
    if args.region:
        aws_fields["region"] = args.region
    if args.endpoint_url:
        aws_fields["endpoint_url"] = args.endpoint_url
    try:
        aws = AwsConfig.model_validate(aws_fields)
        store = StoreConfig(url=args.store) if args.store else None
    except ValidationError as error:
        # The options are config fields too: an endpoint or store URL loses its login.
        scrub = Scrubber({"aws": aws_fields, "store": {"url": args.store}}, secret_fields())
        raise ConfigError([scrub(_option_problem(item)) for item in error.errors()]) from None
    return load_esm_json(text, handler=args.handler, aws=aws, store=store)


def _option_problem(item: ErrorDetails) -> str:
    """A problem with ``--region``, ``--endpoint-url`` or ``--store``, named as the option."""
    message = str(item["msg"]).removeprefix("Value error, ")
    field = str(item["loc"][0]) if item["loc"] else ""
    return f"{_ESM_OPTIONS.get(field, field)}: {message}" if field else message


# --- the handlers a config names --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandlerEntry:
    """A Python handler a config names, where it is named, and where it would run: ``mapping``
    (a mapping's own Handler: in the worker if typed, else in process environments),
    ``process`` or ``thread`` (a ``[[functions]]`` entry's Isolation)."""

    where: str
    reference: str
    runs: Literal["mapping", "process", "thread"]


def handler_entries(config: PollerConfig) -> list[HandlerEntry]:
    """The Python handlers of a valid config."""
    entries = [
        HandlerEntry(f"mappings[{index}].Handler", mapping.handler, "mapping")
        for index, mapping in enumerate(config.mappings)
        if mapping.handler is not None
    ]
    for function in config.functions:
        way = function.way
        if function.handler is not None and (way == "process" or way == "thread"):
            where = f"functions[{function.function_name!r}].Handler"
            entries.append(HandlerEntry(where, function.handler, way))
    return entries


def _raw_handler_entries(data: Mapping[str, Any]) -> list[HandlerEntry]:
    """The Python handlers a refused config names, read from the file's tables as written."""

    def field(table: Mapping[str, Any], aws_name: str, snake_name: str) -> Any:
        return table.get(aws_name, table.get(snake_name))

    entries: list[HandlerEntry] = []
    mappings = data.get("mappings")
    for index, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        reference = field(mapping, "Handler", "handler") if isinstance(mapping, Mapping) else None
        if isinstance(reference, str):
            entries.append(HandlerEntry(f"mappings[{index}].Handler", reference, "mapping"))
    functions = data.get("functions")
    for index, function in enumerate(functions if isinstance(functions, list) else []):
        if not isinstance(function, Mapping):
            continue
        reference = field(function, "Handler", "handler")
        elsewhere = any(
            field(function, aws_name, snake_name) is not None
            for aws_name, snake_name in (
                ("Command", "command"),
                ("RuntimeApi", "runtime_api"),
                ("Url", "url"),
            )
        )
        if not isinstance(reference, str) or elsewhere:
            continue
        name = field(function, "FunctionName", "function_name")
        where = f"functions[{name!r}].Handler" if isinstance(name, str) else f"functions[{index}]"
        thread = field(function, "Isolation", "isolation") == "thread"
        entries.append(HandlerEntry(where, reference, "thread" if thread else "process"))
    return entries


def handler_problems(entries: Iterable[HandlerEntry]) -> list[str]:
    """Import each handler as its environments would, and check that poller can call it: a
    problem line per handler that is missing, fails to import, or takes other arguments."""
    problems: list[str] = []
    for entry in entries:
        try:
            handler = load_handler(entry.reference)
        except HandlerImportError as error:
            problems.append(f"{entry.where}: {error}")
            continue
        problem = _signature_problem(entry, handler)
        if problem is not None:
            problems.append(f"{entry.where}: {problem}")
    return problems


def _signature_problem(entry: HandlerEntry, handler: Callable[..., Any]) -> str | None:
    """Why poller cannot call ``handler`` where it runs, or None.

    Process environments call ``handler(event, context)``; in the worker a handler is typed
    ``handler(batch)`` or Lambda style ``handler(event, context)`` (without ``*args``, which
    leaves its style unknown). A typed handler in process environments is reported by the
    worker's own check, with the fix.
    """
    if is_typed(handler):
        return None
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to tell
        return None
    try:
        signature.bind(None, None)
        callable_as_lambda = True
    except TypeError:
        callable_as_lambda = False
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())
    if callable_as_lambda and not (entry.runs == "thread" and star):
        return None
    name = getattr(handler, "__name__", entry.reference)
    expected = (
        "handler(event, context)"
        if entry.runs == "process"
        else "handler(event, context) (Lambda style) or handler(batch) (typed)"
    )
    return f"{entry.reference!r} takes {name}{signature}; poller calls {expected}"
