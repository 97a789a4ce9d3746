"""Shared fixtures: real servers started once per test run, unique names per test."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Test runs never touch real AWS: static dummy credentials for moto.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _servers_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "poller_test_servers", ROOT / "scripts" / "servers.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server over HTTP on loopback, shared by the whole run (or POLLER_TEST_MOTO_URL)."""
    external = os.environ.get("POLLER_TEST_MOTO_URL")
    if external:
        yield external
        return
    servers = _servers_module()
    server = servers.start_moto()
    try:
        yield server.endpoint
    finally:
        servers.stop(server)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A tansu Kafka-protocol broker (in memory) on loopback as "host:port", shared by the whole run
    and started only when a test asks for it (or POLLER_TEST_KAFKA_BOOTSTRAP)."""
    external = os.environ.get("POLLER_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    servers = _servers_module()
    server = servers.start_kafka()
    try:
        yield server.endpoint
    finally:
        servers.stop(server)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses, so tests can share one server."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"
