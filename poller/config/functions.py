"""``[[functions]]``: what a mapping invokes, with Lambda's own field names and defaults.

A function is reached in one of four ways, chosen by which field is set:

* ``Handler`` (``module.function`` as Lambda writes it, or ``module:function``): a Python handler.
  ``Isolation = "process"`` (the default) runs each execution environment as its own process,
  talking to poller over the Lambda Runtime API; ``Isolation = "thread"`` runs it in the worker.
* ``Command = [...]``: each environment is that command (any Lambda runtime interface client),
  started with ``AWS_LAMBDA_RUNTIME_API`` pointing at poller.
* ``RuntimeApi = "HOST:PORT"``: poller listens there for environments that run elsewhere (a
  sidecar container built from a Lambda base image).
* ``Url = "http://..."``: each invocation is an HTTP POST of the event to an application.

A mapping names a function with ``FunctionName``; a mapping's own ``Handler`` is shorthand for a
function with these defaults and the mapping's ``FunctionTimeout``.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from poller.config.fields import ConfigModel, in_range
from poller.config.redaction import LOGIN_URL, SECRET, mask_login

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_SECONDS",
    "EnvironmentVariables",
    "FunctionConfig",
    "expand_header",
    "split_handler",
]

#: Lambda's defaults for a new function.
DEFAULT_TIMEOUT_SECONDS = 3.0
DEFAULT_MEMORY_MB = 128

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HEADER_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Variables Lambda reserves: a function may not set them (AWS refuses them too).
_RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def split_handler(reference: str) -> tuple[str, str] | None:
    """``module:function`` or Lambda's ``module.function`` as (module, attribute), else None."""
    module, sep, attribute = reference.partition(":")
    if not sep:
        module, sep, attribute = reference.rpartition(".")
    if not sep or not module or not attribute:
        return None
    return module, attribute


def expand_header(value: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${NAME}`` with the worker's environment variable (KeyError names a missing one)."""
    source = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        return source[match.group(1)]

    return _HEADER_VARIABLE.sub(lookup, value)


class EnvironmentVariables(ConfigModel):
    """``Environment = { Variables = { NAME = "value" } }``, as Lambda's function configuration.

    The values are treated as secrets (never printed; the names are): functions commonly get
    their tokens and passwords this way, and poller cannot tell which values are which.
    """

    variables: Annotated[dict[str, str], SECRET] = Field(default_factory=dict)

    @field_validator("variables")
    @classmethod
    def _check_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a variable name (letters, digits and _, starting "
                    "with a letter)"
                )
            if name in _RESERVED_VARIABLES:
                raise ValueError(f"{name!r} is reserved by Lambda and set by poller")
        return value


class FunctionConfig(ConfigModel):
    """One ``[[functions]]`` entry."""

    function_name: str
    handler: str | None = None
    #: Seconds an invocation may run (Lambda: 1..900, default 3; poller accepts fractions).
    timeout: Annotated[float, in_range(0.001, 900)] = DEFAULT_TIMEOUT_SECONDS
    #: MB an environment may use before it is stopped (Lambda: 128..10240, default 128).
    memory_size: Annotated[int, in_range(128, 10240)] = DEFAULT_MEMORY_MB
    environment: EnvironmentVariables = Field(default_factory=EnvironmentVariables)
    #: At most this many environments at once; unset = as many as the mappings need.
    reserved_concurrent_executions: Annotated[int | None, in_range(1, 1000)] = None
    isolation: Literal["process", "thread"] = "process"
    command: tuple[str, ...] | None = None
    runtime_api: str | None = None
    url: Annotated[str | None, LOGIN_URL] = None
    #: HTTP targets: extra request headers; ``${NAME}`` is replaced by the worker's variable.
    #: The values are secrets (an ``Authorization`` header is the common case): never printed.
    headers: Annotated[dict[str, str], SECRET] = Field(default_factory=dict)

    @field_validator("function_name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a function name (1 to 64 letters, digits, - and _)")
        return value

    @field_validator("handler")
    @classmethod
    def _check_handler(cls, value: str | None) -> str | None:
        if value is not None and split_handler(value) is None:
            raise ValueError(
                f"{value!r} is not a handler reference (expected 'module.function' or "
                "'module:function')"
            )
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("empty command (give the program and its arguments as a list)")
        return value

    @field_validator("runtime_api")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not HOST:PORT (for example '0.0.0.0:9001')")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{mask_login(value)!r} is not an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if any(c in name + text for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: line breaks are not allowed in headers")
            for variable in _HEADER_VARIABLE.findall(text):
                if variable not in os.environ:
                    raise ValueError(
                        f"header {name!r} uses ${{{variable}}}, which is not set in the "
                        "worker's environment"
                    )
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> FunctionConfig:
        ways = [
            name
            for name, given in (
                ("Command", self.command is not None),
                ("RuntimeApi", self.runtime_api is not None),
                ("Url", self.url is not None),
            )
            if given
        ]
        if len(ways) > 1:
            raise ValueError(f"{' and '.join(ways)} both set; a function is reached one way")
        if not ways and self.handler is None:
            raise ValueError("give Handler, Command, RuntimeApi or Url (how the function is run)")
        if ways and ways[0] != "Command" and self.handler is not None:
            raise ValueError(f"Handler and {ways[0]} both set; a function is reached one way")
        if self.headers and self.url is None:
            raise ValueError("Headers: only HTTP functions (Url) send headers")
        if (
            self.url is not None
            and "@" in self.url.partition("://")[2].partition("/")[0]
            and any(name.lower() == "authorization" for name in self.headers)
        ):
            raise ValueError(
                "Url has a login and Headers an Authorization header; the HTTP client sends "
                "one or the other, give one"
            )
        if self.isolation == "thread" and ways:
            raise ValueError(f"Isolation: 'thread' applies to a Handler alone, not {ways[0]}")
        return self

    @property
    def way(self) -> Literal["process", "thread", "command", "runtime_api", "url"]:
        """How invocations reach the code."""
        if self.url is not None:
            return "url"
        if self.runtime_api is not None:
            return "runtime_api"
        if self.command is not None:
            return "command"
        return self.isolation
