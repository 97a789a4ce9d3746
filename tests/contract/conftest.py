"""Fixtures of the contract suites: plain clients on the run's moto server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.aws import SERVICES, Clients
from tests.kit import moto_clients


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[Clients]:
    """Plain aiobotocore clients on the run's moto server, by service, closed after the test."""
    async with moto_clients(moto_endpoint, *SERVICES) as made:
        yield dict(zip(SERVICES, made, strict=True))
