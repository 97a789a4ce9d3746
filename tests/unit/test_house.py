"""The shape of the house: the registry, the optional extras, and the seams that keep it in order."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from poller.cli import main
from poller.sources import registry
from poller.sources.spec import Extra

ROOT = Path(__file__).resolve().parents[2]
BROKER_CLIENTS = ("aiokafka", "aio_pika", "aiormq", "stompman")


def _loaded_after(statement: str) -> list[str]:
    """The broker client modules a fresh interpreter has loaded after running ``statement``."""
    probe = (
        f"{statement}\nimport sys\n"
        f"print(' '.join(m for m in {BROKER_CLIENTS!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return result.stdout.split()


def test_import_poller_imports_no_broker_client() -> None:
    assert _loaded_after("import poller") == []


def test_package_faces_and_the_test_kit_import_no_broker_client() -> None:
    statement = (
        "import poller.sources.kafka, poller.sources.rabbitmq, poller.sources.activemq, "
        "poller.sources.mq, poller.testing, poller.cli"
    )
    assert _loaded_after(statement) == []


def test_opening_a_kafka_mapping_imports_its_client() -> None:
    assert "aiokafka" in _loaded_after("import poller.sources.kafka.source")


def test_every_kind_is_registered_once_with_what_it_needs() -> None:
    kinds = [spec.kind for spec in registry.SPECS]
    assert len(kinds) == len(set(kinds))
    for spec in registry.SPECS:
        assert spec.arn is not None or spec.endpoints is not None, spec.kind
        assert registry.spec_for_kind(spec.kind) is spec


def _write_config(tmp_path: Path, mapping: str) -> Path:
    (tmp_path / "handlers.py").write_text("def handle(event, context):\n    return None\n")
    path = tmp_path / "poller.toml"
    path.write_text(f"[[mappings]]\n{mapping}\n")
    return path


KAFKA_MAPPING = """Handler = "handlers:handle"
SelfManagedEventSource = { Endpoints = { KAFKA_BOOTSTRAP_SERVERS = ["127.0.0.1:9092"] } }
Topics = ["orders"]
StartingPosition = "LATEST"
"""
STOMP_MAPPING = """Handler = "handlers:handle"
SelfManagedEventSource = { Endpoints = { MQ_BROKER_URLS = ["stomp://127.0.0.1:61613"] } }
Queues = ["orders"]
"""


@pytest.mark.parametrize(
    ("mapping", "module", "install"),
    [
        (KAFKA_MAPPING, "aiokafka", "pip install 'poller[kafka]'"),
        (STOMP_MAPPING, "stompman", "pip install 'poller[activemq]'"),
    ],
)
def test_validate_refuses_a_mapping_whose_extra_is_missing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mapping: str,
    module: str,
    install: str,
) -> None:
    config = _write_config(tmp_path, mapping)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(config)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "mappings[0]:" in err
    assert f"missing: {module}" in err
    assert install in err
    assert "Traceback" not in err


def test_an_extra_knows_which_modules_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = Extra("rabbitmq", ("aio_pika", "aiormq"))
    assert extra.missing() == []
    monkeypatch.setitem(sys.modules, "aiormq", None)
    assert extra.missing() == ["aiormq"]
    assert extra.install == "pip install 'poller[rabbitmq]'"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_engine_imports_no_source_and_no_client_library() -> None:
    forbidden = ("poller.sources", "poller.runtime", "botocore", "aiobotocore", *BROKER_CLIENTS)
    for path in sorted((ROOT / "poller" / "engine").rglob("*.py")):
        bad = [m for m in _imports(path) if m.startswith(forbidden)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_sources_never_import_another_source() -> None:
    cores = {"spec", "registry", "aws_calls", "credentials", "shards", "mq"}
    sources = ROOT / "poller" / "sources"
    for package in sorted(p for p in sources.iterdir() if p.is_dir() and p.name not in cores):
        for path in package.rglob("*.py"):
            others = {
                m.split(".")[2]
                for m in _imports(path)
                if m.startswith("poller.sources.") and len(m.split(".")) > 2
            }
            strangers = others - cores - {package.name}
            assert not strangers, f"{path.relative_to(ROOT)} imports sources {strangers}"
