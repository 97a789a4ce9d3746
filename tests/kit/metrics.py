"""A worker's ``/metrics`` read over HTTP and parsed as Prometheus parses it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["scrape"]


async def scrape(port: int | None) -> dict[str, float]:
    """The samples of the worker listening on ``port`` (one mapping's), by sample name."""
    assert port is not None, "the worker's endpoint is not listening"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
