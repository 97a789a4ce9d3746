"""No credential in any output: every secret-bearing config field, given right or wrong.

The fields come from one place, the markers on the config models (``secret_fields()``); the
walk below must know how to put a value in each of them, so a newly marked field fails here until
it is walked too, and a field whose name sounds secret fails until it is marked (or listed below
with the reason it is not a credential). Each value carries a unique marker in the part that is
the secret; the marker must appear in no problem line, repr, log line or status document.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from poller.config import ConfigError, PollerConfig, parse_config
from poller.config.loading import secret_fields
from poller.config.redaction import (
    REDACTED,
    Scrubber,
    config_fields,
    describe,
    mask_login,
    redact_document,
    redact_text,
)
from poller.observability.logging import configure_logging
from poller.sources import registry

_COUNTER = itertools.count()
#: Numbers stand out in output only when long and unlikely: each case gets its own.
_NUMBER_BASE = 738_291_645_000


def _marker() -> str:
    return f"Qx7Mark{next(_COUNTER):04d}z"


def _base() -> dict[str, Any]:
    """A valid config with every sensitive field set to something harmless."""
    return {
        "aws": {
            "region": "us-east-1",
            "endpoint_url": "http://127.0.0.1:4566",
            "access_key_id": "AKIDEXAMPLE",
            "secret_access_key": "harmless-secret",
        },
        "store": {"url": "memory://"},
        "functions": [
            {
                "FunctionName": "web",
                "Url": "http://127.0.0.1:9/invoke",
                "Headers": {"Authorization": "Bearer harmless"},
                "Environment": {"Variables": {"API_TOKEN": "harmless"}},
            }
        ],
        "mappings": [
            {
                "SelfManagedEventSource": {
                    "Endpoints": {"MQ_BROKER_URLS": ["amqp://127.0.0.1:5672"]}
                },
                "Queues": ["orders"],
                "FunctionName": "web",
                "SourceAccessConfigurations": [
                    {"Type": "BASIC_AUTH", "Secret": {"username": "u", "password": "harmless"}}
                ],
            },
            {
                "SelfManagedEventSource": {
                    "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}
                },
                "Topics": ["orders"],
                "StartingPosition": "TRIM_HORIZON",
                "FunctionName": "web",
                "SourceAccessConfigurations": [
                    {
                        "Type": "CLIENT_CERTIFICATE_TLS_AUTH",
                        "Secret": {"certificate": "PEM", "privateKey": "PEM"},
                    }
                ],
            },
        ],
    }


Setter = Callable[[dict[str, Any], Any], None]


def _at(*steps: str | int) -> Setter:
    """Put the value at ``steps`` (keys and list indices) of the base config."""

    def put(data: dict[str, Any], value: Any) -> None:
        node: Any = data
        for step in steps[:-1]:
            node = node[step]
        node[steps[-1]] = value

    return put


_MQ, _KAFKA = ("mappings", 0), ("mappings", 1)
_ENDPOINTS = ("SelfManagedEventSource", "Endpoints")

#: Every sensitive field (as ``secret_fields()`` names it) and the places a value can go in it:
#: the field, inside it, and the tables that hold it.
PLACES: dict[str, dict[str, Setter]] = {
    "aws.endpointurl": {"[aws] endpoint_url": _at("aws", "endpoint_url")},
    "aws.accesskeyid": {"[aws] access_key_id": _at("aws", "access_key_id")},
    "aws.secretaccesskey": {"[aws] secret_access_key": _at("aws", "secret_access_key")},
    "store.url": {"[store] url": _at("store", "url")},
    "functions.*.environment.variables": {
        "Environment.Variables": _at("functions", 0, "Environment", "Variables"),
        "Environment.Variables.API_TOKEN": _at(
            "functions", 0, "Environment", "Variables", "API_TOKEN"
        ),
        "Environment": _at("functions", 0, "Environment"),
    },
    "functions.*.url": {"Url": _at("functions", 0, "Url")},
    "functions.*.headers": {
        "Headers": _at("functions", 0, "Headers"),
        "Headers.Authorization": _at("functions", 0, "Headers", "Authorization"),
    },
    "mappings.*.selfmanagedeventsource.endpoints": {
        "MQ_BROKER_URLS[0]": _at(*_MQ, *_ENDPOINTS, "MQ_BROKER_URLS", 0),
        "MQ_BROKER_URLS": _at(*_MQ, *_ENDPOINTS, "MQ_BROKER_URLS"),
        "KAFKA_BOOTSTRAP_SERVERS[0]": _at(*_KAFKA, *_ENDPOINTS, "KAFKA_BOOTSTRAP_SERVERS", 0),
        "Endpoints": _at(*_MQ, *_ENDPOINTS),
    },
    "mappings.*.sourceaccessconfigurations.*.secret": {
        "BASIC_AUTH Secret": _at(*_MQ, "SourceAccessConfigurations", 0, "Secret"),
        "BASIC_AUTH Secret.password": _at(
            *_MQ, "SourceAccessConfigurations", 0, "Secret", "password"
        ),
        "CLIENT_CERTIFICATE_TLS_AUTH Secret.privateKey": _at(
            *_KAFKA, "SourceAccessConfigurations", 0, "Secret", "privateKey"
        ),
        "SourceAccessConfigurations[0]": _at(*_MQ, "SourceAccessConfigurations", 0),
        "SourceAccessConfigurations": _at(*_MQ, "SourceAccessConfigurations"),
    },
}


def _secret_values(mark: str, number: int) -> list[Any]:
    """Wrong types and malformed values for a field that is a secret: the marker anywhere."""
    return [
        json.dumps({"username": "u", "password": mark}),  # a Secrets Manager string, pasted
        mark,
        f"first line\n{mark}",
        f"  {mark}  ",
        f"amqps://user:{mark}@broker.example:5671",
        number,
        number + 0.5,
        [mark],
        [{"password": mark}],
        {"password": mark},
        {"nested": {"deeper": mark}},
        {"password": number},
        True,
        "",
        [],
        {},
    ]


def _login_values(mark: str) -> list[Any]:
    """Values for a URL field, right or wrong: the marker is always in the login."""
    return [
        f"amqps://user:{mark}@broker.example:5671",
        f"stomp+ssl://user:{mark}@broker.example:61614",
        f"https://user:{mark}@example.com/path",
        f"https://user:{mark}@",  # malformed: no host
        f"user:{mark}@broker.example:9092",  # no scheme
        f"amqps://user:{mark}/slash@broker.example",  # a / in the password: not a URL any more
        f"ftp://{mark}@example.com",
        f"amqps://user:{mark}@broker.example:5671\nsecond line",
        [f"amqps://user:{mark}@broker.example:5671"],
        [f"user:{mark}@broker.example:9092", 7],
        {"MQ_BROKER_URLS": [f"amqps://user:{mark}@h"]},
        {"KAFKA_BOOTSTRAP_SERVERS": f"user:{mark}@h:9092"},
    ]


def _cases() -> Iterator[Any]:
    for path in secret_fields():
        for place, setter in PLACES.get(str(path), {}).items():
            if path.kind == "secret":
                values = _secret_values(_marker(), _NUMBER_BASE + next(_COUNTER))
            else:
                values = _login_values(_marker())
            for index, value in enumerate(values):
                yield pytest.param(setter, value, path.kind, id=f"{path}:{place}:{index}")


def _needles(value: Any, *, numbers: bool) -> list[str]:
    """The markers a value carries (in its strings, and its numbers as printed when a number
    there is the secret)."""
    found: list[str] = []
    if isinstance(value, str):
        found += re.findall(r"Qx7Mark\d{4}z", value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and numbers:
        found += [str(value), str(int(value))]
    elif isinstance(value, dict):
        for item in value.values():
            found += _needles(item, numbers=numbers)
    elif isinstance(value, list):
        for item in value:
            found += _needles(item, numbers=numbers)
    return found


def _outputs_of(data: dict[str, Any]) -> tuple[list[str], PollerConfig | None]:
    """What poller may print about this config: its problems, or the config's reprs."""
    try:
        config = parse_config(data, require_mappings=True)
    except ConfigError as error:
        return [str(error), *error.problems], None
    shown = [repr(config), str(config)]
    for mapping in config.mappings:
        resolved = mapping.resolved()
        shown += [repr(mapping), repr(resolved), resolved.source_label, mapping.mapping_id]
    return shown, config


def test_every_sensitive_field_is_walked() -> None:
    """A field marked secret (or login URL) on the models is tried here, and nothing else is."""
    assert {str(p) for p in secret_fields()} == set(PLACES)


@pytest.mark.parametrize(("setter", "value", "kind"), list(_cases()))
def test_no_secret_in_problems_or_reprs(setter: Setter, value: Any, kind: str) -> None:
    data = _base()
    setter(data, copy.deepcopy(value))
    outputs, config = _outputs_of(data)
    needles = _needles(value, numbers=kind == "secret")
    if not needles:  # an empty string, list or table, true: refused or accepted, no traceback
        assert all("Traceback" not in text for text in outputs)
        return
    for text in outputs:
        for needle in needles:
            assert needle not in text, f"{needle!r} printed in:\n{text}"
        assert "Traceback" not in text
    if config is None:
        assert outputs[0].startswith("invalid config:")


def test_a_refused_secret_says_what_kind_of_value_it_was() -> None:
    data = _base()
    mark = _marker()
    secret = json.dumps({"username": "u", "password": mark})
    PLACES["mappings.*.sourceaccessconfigurations.*.secret"]["BASIC_AUTH Secret"](data, secret)
    PLACES["aws.secretaccesskey"]["[aws] secret_access_key"](data, 123456789)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    problems = caught.value.problems
    assert (
        "mappings[0].SourceAccessConfigurations[0].Secret: '***' (a string holding JSON; write it "
        "as a TOML table instead): Input should be a valid dictionary"
    ) in problems
    assert "aws.secret_access_key: '***' (a number): Input should be a valid string" in problems
    assert mark not in str(caught.value)


def test_a_secret_pasted_into_uri_is_not_quoted() -> None:
    data = _base()
    mark = _marker()
    data["mappings"][0]["SourceAccessConfigurations"] = [
        {"Type": "BASIC_AUTH", "URI": json.dumps({"username": "u", "password": mark})}
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert mark not in str(caught.value)
    assert "URI holds JSON text" in str(caught.value)


def test_a_valid_config_shows_which_secrets_are_set_but_not_their_values() -> None:
    data = _base()
    mark = _marker()
    data["functions"][0]["Headers"] = {"Authorization": f"Bearer {mark}"}
    data["mappings"][0]["SelfManagedEventSource"]["Endpoints"]["MQ_BROKER_URLS"] = [
        f"amqps://user:{mark}@broker.example:5671"
    ]
    config = parse_config(data)
    shown = repr(config)
    assert mark not in shown
    assert "headers={'Authorization': '***'}" in shown
    assert "'amqps://***@broker.example:5671'" in shown
    assert "secret_access_key='***'" in shown
    assert config.mappings[0].source_label == "amqps://broker.example:5671/orders"
    # The config itself still holds the values: the sources need them.
    assert config.functions[0].headers["Authorization"] == f"Bearer {mark}"


# --- one list of secret fields --------------------------------------------------------------------

#: Fields whose names sound secret but hold no credential, and why.
NOT_SECRET = {
    "mappings.*.kmskeyarn": "names a KMS key by ARN; the ARN is no credential",
    "mappings.*.sourceaccessconfigurations.*.type": "the kind of credential, not the credential",
    "mappings.*.sourceaccessconfigurations.*.uri": (
        "where the secret is (an ARN, env:NAME, file:PATH); JSON pasted there is refused unquoted"
    ),
    "mappings.*.sourceaccessconfigurations": "the list of entries; their Secret is marked",
}
_SOUNDS_SECRET = re.compile(
    r"password|secret|token|key|credential|auth|header|url|endpoint|environment|variables"
)


def test_every_field_that_sounds_secret_is_marked() -> None:
    """A new field named like a credential must be marked (or listed in NOT_SECRET with why)."""
    also = {("mappings", "*"): [spec.options for spec in registry.SPECS]}
    marked = {str(p) for p in secret_fields()}
    names = [".".join(path) for path, _info in config_fields(PollerConfig, also)]
    unmarked = sorted(
        name
        for name in names
        if _SOUNDS_SECRET.search(name.rpartition(".")[2])
        and name not in marked
        and name not in NOT_SECRET
        and not any(m.startswith(name + ".") for m in marked)  # a table holding a marked one
    )
    assert unmarked == [], f"mark these SECRET or LOGIN_URL, or list them in NOT_SECRET: {unmarked}"
    assert set(NOT_SECRET) <= set(names)


# --- logs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["json", "console"])
def test_log_lines_carry_no_secret(form: str) -> None:
    marks = [_marker() for _ in range(7)]
    data = _base()
    data["aws"]["secret_access_key"] = marks[0]
    data["functions"][0]["Headers"] = {"Authorization": marks[1]}
    config = parse_config(data)
    out = io.StringIO()
    configure_logging(level="debug", format=form, stream=out)
    log = structlog.get_logger("test")
    try:
        raise ConnectionError(f"cannot connect to amqps://admin:{marks[2]}@broker:5671/")
    except ConnectionError as error:
        log.debug(
            "connect failed",
            exc_info=error,
            error=error,
            password=marks[3],
            settings={"sasl_password": marks[4], "url": f"https://u:{marks[5]}@h/"},
            config=config,
            endpoints=[f"stomp+ssl://u:{marks[6]}@h:61614"],
        )
    written = out.getvalue()
    assert "connect failed" in written and "ConnectionError" in written
    for mark in marks:
        assert mark not in written, f"{mark} logged:\n{written}"
    assert "amqps://***@broker:5671/" in written


# --- status documents -----------------------------------------------------------------------------


def test_status_documents_lose_logins_and_credential_values() -> None:
    mark = _marker()
    document = {
        "secret-orders": {  # a mapping id that sounds secret keeps its status
            "idle": True,
            "health": f"SourceError: cannot connect to amqps://u:{mark}@h:5671",
            "tags": {"token": mark, "team": "payments"},
        }
    }
    shown = json.dumps(redact_document(document))
    assert mark not in shown
    redacted = redact_document(document)
    assert redacted["secret-orders"]["idle"] is True
    assert redacted["secret-orders"]["tags"] == {"token": REDACTED, "team": "payments"}


# --- the redaction functions themselves --------------------------------------------------------------

_LOGIN_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
)


@given(password=_LOGIN_TEXT, user=st.text(string.ascii_letters, min_size=1, max_size=8))
def test_mask_login_drops_any_password(password: str, user: str) -> None:
    secret = f"Qx7{password}"
    for url in (f"amqps://{user}:{secret}@broker:5671/vhost", f"{user}:{secret}@broker:9092"):
        masked = mask_login(url)
        assert secret not in masked
        assert masked.endswith("broker:5671/vhost") or masked.endswith("broker:9092")


@given(password=st.text(string.ascii_letters + string.digits + "!$%^&*()-_=+:;,.~", min_size=1))
def test_redact_text_drops_logins_in_free_text(password: str) -> None:
    secret = f"Qx7{password}"
    text = f"failed: could not reach amqps://user:{secret}@broker:5671 (refused)"
    assert secret not in redact_text(text)
    assert "amqps://***@broker:5671 (refused)" in redact_text(text)


@given(secret=st.text(min_size=4).filter(lambda s: s.strip() == s and s))
def test_scrubber_removes_every_secret_of_the_file(secret: str) -> None:
    data = {"aws": {"secret_access_key": secret}}
    scrub = Scrubber(data, secret_fields())
    assert secret not in scrub(f"aws.x: {secret!r} and {secret} again")


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('{"password": "x"}', "a string holding JSON; write it as a TOML table instead"),
        ("a\nb", "a string with a line break"),
        ("", "an empty string"),
        (12, "a number"),
        ([1, 2], "a list of 2"),
        ({"a": 1}, "a table"),
        (True, "true/false"),
    ],
)
def test_describe_names_the_kind_of_value(value: Any, said: str) -> None:
    assert describe(value) == said


def test_a_login_in_the_url_and_an_authorization_header_are_refused_together() -> None:
    """The HTTP client refuses to send both at run time; the config says so, quoting neither."""
    data = _base()
    mark = _marker()
    data["functions"][0]["Url"] = f"https://user:{mark}@app.example/invoke"
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert mark not in str(caught.value)
    assert "Url has a login and Headers an Authorization header" in str(caught.value)


def test_a_login_in_a_bootstrap_server_is_refused_without_printing_it() -> None:
    """``user:password@host:9092`` is no Kafka server: refused here, or every connection error
    would quote it (it has no scheme, so no log line could tell its login apart)."""
    data = _base()
    mark = _marker()
    data["mappings"][1]["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"] = [
        "127.0.0.1:9092",
        f"user:{mark}@kafka.example:9092",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert mark not in str(caught.value)
    assert (
        "KAFKA_BOOTSTRAP_SERVERS[1]: '***@kafka.example:9092' holds a login (credentials go in "
        "SourceAccessConfigurations, not in a server address)"
    ) in str(caught.value)


def test_pydantic_own_messages_do_not_quote_refused_values() -> None:
    """A library user who validates a model directly (no parse_config) gets pydantic's message:
    it names the fields without quoting what was refused, and URL checks show no login."""
    data = _base()
    marks = [_marker() for _ in range(3)]
    data["aws"]["secret_access_key"] = [marks[0]]
    data["mappings"][0]["SourceAccessConfigurations"][0]["Secret"] = json.dumps({"pw": marks[1]})
    data["store"]["url"] = f"ftp://user:{marks[2]}@host/state"
    with pytest.raises(ValidationError) as caught:
        PollerConfig.model_validate(data)
    shown = str(caught.value)
    assert "aws.secret_access_key" in shown and "store.url" in shown
    for mark in marks:
        assert mark not in shown
