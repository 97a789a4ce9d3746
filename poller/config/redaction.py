"""Keeping credentials out of everything poller prints: config errors, logs, reprs, status.

A credential leaks through whichever output forgot about it, so the knowledge of what is secret
lives in one place: the config models themselves. A field that holds a credential carries the
:data:`SECRET` marker in its ``Annotated`` metadata; a field that holds a URL which may carry a
login (``amqps://user:password@host``) carries :data:`LOGIN_URL`. :func:`sensitive_paths` walks
the models and finds them, so a new secret field is covered by marking it, and a test checks that
every field whose name sounds secret is marked.

What the outputs do with that:

* **config errors** (:func:`shown_input`, :class:`Scrubber`): pydantic quotes the value it refused
  (``input_value``); for a secret field, or a table that holds one, poller says only what kind of
  value it was (``'***' (a string holding JSON)``), and URLs lose their login. The scrubber then
  removes every secret value of the file from every problem line, whatever message quoted it.
* **reprs** (:func:`redacted_field`): a config model's repr shows ``'***'`` for a secret (the keys
  of a secret table stay, so one sees which are set) and URLs without their login.
* **logs and status documents** (:func:`redact_text`, :func:`redact_document`): every string loses
  URL logins, and a value under a key that names a credential (``password``, ``token``...) is
  replaced. The structlog processor in :mod:`poller.observability.logging` and the operators'
  endpoint use these.

A redacted value always reads ``'***'``.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = [
    "LOGIN_URL",
    "REDACTED",
    "SECRET",
    "Beside",
    "Scrubber",
    "Sensitive",
    "SensitivePath",
    "config_fields",
    "describe",
    "login_of",
    "marker_of",
    "mask_login",
    "redact_document",
    "redact_text",
    "redacted_field",
    "secret_key_name",
    "sensitive_paths",
    "shown_input",
]

#: How a redacted value reads everywhere.
REDACTED = "***"


@dataclass(frozen=True, slots=True)
class Sensitive:
    """Field metadata: what the field may hold that must not be printed.

    ``secret``: the value (and everything inside it) is a credential. ``url``: the value is one or
    more URLs whose user part (``user:password@``) is a credential.
    """

    kind: Literal["secret", "url"]


SECRET = Sensitive("secret")
LOGIN_URL = Sensitive("url")


@dataclass(frozen=True, slots=True)
class SensitivePath:
    """Where a sensitive field sits in a config file: field names (lower case, no ``_``, so
    ``SecretAccessKey`` and ``secret_access_key`` are one) and ``*`` for a list index or table
    key."""

    parts: tuple[str, ...]
    kind: Literal["secret", "url"]

    def __str__(self) -> str:
        return ".".join(self.parts)


def _normal(name: str) -> str:
    return name.replace("_", "").lower()


# --- finding the sensitive fields ---------------------------------------------------------------


#: Models whose fields are read at a path besides their place in the tree: a source's own
#: mapping fields sit beside the shared ones (``{("mappings", "*"): [KafkaMappingOptions, ...]}``).
Beside = Mapping[tuple[str, ...], Sequence[type[BaseModel]]]


def marker_of(info: FieldInfo) -> Sensitive | None:
    """The field's :class:`Sensitive` marker, if it has one."""
    return next((m for m in info.metadata if isinstance(m, Sensitive)), None)


def config_fields(
    root: type[BaseModel], also: Beside | None = None
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every field under ``root`` with its path (a marked field's insides are not walked)."""
    yield from _walk(root, ())
    for prefix, models in (also or {}).items():
        for model in models:
            yield from _walk(model, tuple(_normal(p) if p != "*" else p for p in prefix))


def sensitive_paths(root: type[BaseModel], also: Beside | None = None) -> tuple[SensitivePath, ...]:
    """Every marked field under ``root`` (and ``also``)."""
    found = [
        SensitivePath(path, marker.kind)
        for path, info in config_fields(root, also)
        if (marker := marker_of(info)) is not None
    ]
    return tuple(dict.fromkeys(found))


def _walk(
    model: type[BaseModel], prefix: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    for name, info in model.model_fields.items():
        path = (*prefix, _normal(name))
        yield path, info
        if marker_of(info) is None:
            for extra, inner in _models_in(info.annotation):
                yield from _walk(inner, (*path, *extra))


def _models_in(annotation: Any) -> Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    """The config models an annotation holds, with the ``*`` steps to reach them."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield (), annotation
    elif origin is typing.Annotated:
        yield from _models_in(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)
    elif origin in (tuple, list, dict, set, frozenset):
        args = typing.get_args(annotation)
        for arg in args[1:] if origin is dict else args:  # a table's values, a list's items
            if arg is not Ellipsis:
                yield from ((("*", *steps), model) for steps, model in _models_in(arg))


def _relation(path: SensitivePath, loc: Sequence[int | str]) -> Literal["in", "above"] | None:
    """``in``: ``loc`` is the field or inside it; ``above``: ``loc`` holds it; else None."""
    names = [p for p in loc if not (isinstance(p, str) and "[" in p)]  # pydantic's type tags
    for index, part in enumerate(path.parts):
        if index == len(names):
            return "above"
        name = names[index]
        if part != "*" and (not isinstance(name, str) or _normal(name) != part):
            return None
    return "in"


# --- showing values -------------------------------------------------------------------------------

_LOGIN = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#'\"]*@")


def redact_text(text: str) -> str:
    """``text`` with the user part of every URL in it replaced (``amqps://***@host``)."""
    return _LOGIN.sub(rf"\g<scheme>{REDACTED}@", text) if "@" in text else text


def login_of(value: str) -> str:
    """The part of a URL field's value that :func:`mask_login` removes ("" when none)."""
    head, at, _ = value.rpartition("@")
    return head.partition("://")[2] or head if at else ""


def mask_login(value: str) -> str:
    """A URL field's value (or ``user:password@host:port``) without its user part: everything
    between the scheme and the last ``@`` goes, even where the URL is malformed (a ``/`` in a
    password), since the value is known to be a URL."""
    head, at, host = value.rpartition("@")
    if not at:
        return value
    scheme, sep, _ = head.partition("://")
    return f"{scheme}{sep}{REDACTED}@{host}" if sep else f"{REDACTED}@{host}"


def describe(value: Any) -> str:
    """What kind of value this is, without the value: for messages about a secret field."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        if not value.strip():
            return "an empty string"
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict | list):
            return "a string holding JSON; write it as a TOML table instead"
        return "a string with a line break" if "\n" in value else "a string"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def shown_input(
    loc: Sequence[int | str], value: Any, paths: Iterable[SensitivePath]
) -> tuple[str, bool]:
    """How a problem may show the value it refused at ``loc``, and whether it is redacted.

    A secret, or a value that holds one (a list given where a table of secrets goes), shows as
    ``'***' (what kind of value)``; a URL field's value (or one holding URL fields) loses its
    logins.
    """
    url = False
    for path in paths:
        relation = _relation(path, loc)
        if relation is not None and path.kind == "secret":
            return f"{REDACTED!r} ({describe(value)})", True
        url = url or relation is not None
    if url:
        return redact_text(repr(_masked(value))), False
    return repr(value), False


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_login(value)
    if isinstance(value, list | tuple):
        return type(value)(_masked(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    return value


def redacted_field(marker: Sensitive, value: Any) -> Any:
    """A field's value as a repr may show it (secret tables keep their keys)."""
    if value is None:
        return None
    if marker.kind == "url":
        return _masked(value)
    if isinstance(value, Mapping):
        return {key: REDACTED for key in value}
    return REDACTED


# --- scrubbing whole messages -------------------------------------------------------------------

#: Shorter secret values are not scrubbed out of messages (they would mangle ``mappings[1]``); the
#: problem lines never quote them anyway, :func:`shown_input` hides them where pydantic would.
_SCRUB_MIN_LENGTH = 4


class Scrubber:
    """Removes the secret values of one config file (and the logins of its URLs) from text.

    The field-by-field rules above decide what a problem shows; this is the second line: every
    problem line is scrubbed of every secret the file holds, whichever message quoted it.
    """

    __slots__ = ("_replacements",)

    def __init__(self, data: Any, paths: Iterable[SensitivePath]) -> None:
        found: dict[str, str] = {}
        for path in paths:
            for node in _nodes_at(data, path.parts):
                for leaf in _leaves(node):
                    # As written, as validated (stripped) and as a repr quotes it (escaped).
                    for form in {leaf, leaf.strip()}:
                        if path.kind == "secret" and len(form) >= _SCRUB_MIN_LENGTH:
                            found[form] = REDACTED
                            found[repr(form)[1:-1]] = REDACTED
                        elif path.kind == "url" and mask_login(form) != form:
                            found[form] = mask_login(form)
                            found[repr(form)[1:-1]] = repr(mask_login(form))[1:-1]
        # Longest first, so a value containing another is replaced whole.
        self._replacements = sorted(found.items(), key=lambda item: -len(item[0]))

    def __call__(self, text: str) -> str:
        for secret, shown in self._replacements:
            if secret in text:
                text = text.replace(secret, shown)
        return redact_text(text)


def _nodes_at(data: Any, parts: tuple[str, ...]) -> Iterator[Any]:
    if not parts:
        yield data
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        children: Iterable[Any] = (
            data.values() if isinstance(data, Mapping) else data if isinstance(data, list) else ()
        )
    elif isinstance(data, Mapping):
        children = [v for k, v in data.items() if isinstance(k, str) and _normal(k) == head]
    else:
        children = ()
    for child in children:
        yield from _nodes_at(child, rest)


def _leaves(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _leaves(value)
    elif isinstance(node, str | int | float) and not isinstance(node, bool):
        yield str(node)


# --- logs and status documents ------------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"(^|[_-])(password|passwd|secret|token|credentials?|authorization|private[_-]?key|api[_-]?key"
    r"|access[_-]?key(_id)?|secret[_-]?access[_-]?key|session[_-]?token)$",
    re.IGNORECASE,
)


def secret_key_name(key: str) -> bool:
    """Whether a log or document key names a credential (``password``, ``sasl_password``,
    ``Authorization``, ``session_token``...)."""
    return bool(_SECRET_KEY.search(key))


def redact_document(value: Any) -> Any:
    """A JSON-like document with URL logins removed from its strings and the plain values under
    credential-named keys replaced (a table under such a key is walked, not dropped: status
    documents key mappings by their user-given ids)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str)
            and secret_key_name(key)
            and item is not None
            and not isinstance(item, Mapping | list | tuple)
            else redact_document(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_document(item) for item in value]
    return value
