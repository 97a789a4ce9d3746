"""``poller status --url``: a running worker's live state, from its ``/status`` endpoint."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from poller.cli.tables import Column, field, moment, natural, table, yes
from poller.config.redaction import mask_login, redact_document

__all__ = ["StatusFailed", "StatusRefused", "fetch", "live", "status_url"]


class StatusRefused(Exception):
    """What the user asked for cannot be shown; the message says why (exit 2)."""


class StatusFailed(Exception):
    """The store or the worker could not be read; the message says why (exit 1)."""


def status_url(url: str) -> URL:
    """``URL/status`` for a worker's base URL; a URL that is not ``http(s)://HOST[:PORT]`` is
    refused."""
    try:
        base = URL(url)
    except ValueError as error:
        raise StatusRefused(f"--url {mask_login(url)!r} is not a URL: {error}") from None
    if base.scheme not in ("http", "https") or not base.host:
        raise StatusRefused(f"--url {mask_login(url)!r} is not an http://HOST:PORT URL")
    return base.with_path(base.path.rstrip("/") + "/status", encoded=False)


async def fetch(url: URL, seconds: float) -> Any:
    """The JSON of ``GET url``, within ``seconds``."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                hint = " (is [http] listen set on that worker?)" if response.status == 404 else ""
                raise StatusFailed(f"GET {url} answered {response.status} {response.reason}{hint}")
            return await response.json(content_type=None)
    except TimeoutError:
        raise StatusFailed(f"GET {url}: no answer within {seconds:g} s") from None
    except aiohttp.ClientConnectorError as error:
        errno = error.os_error.errno
        raise StatusFailed(
            f"cannot reach {url}: {os.strerror(errno) if errno else error}"
        ) from None
    except aiohttp.ClientError as error:
        raise StatusFailed(f"GET {url}: {type(error).__name__}: {error}") from None
    except ValueError as error:  # the body is not JSON
        raise StatusFailed(f"GET {url}: the answer is not JSON ({error})") from None


def live(document: Any, wanted: Sequence[str] | None, *, as_json: bool) -> list[str]:
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise StatusFailed("the worker's /status answer is not a poller status document")
    document = redact_document(document)  # an older worker may not have redacted it
    if wanted:
        unknown = [name for name in wanted if name not in document]
        if unknown:
            raise StatusRefused(
                f"the worker runs no mapping {unknown[0]!r} "
                f"(it runs: {', '.join(document) or 'none'})"
            )
        document = {name: document[name] for name in dict.fromkeys(wanted)}
    if as_json:
        return [json.dumps(document, indent=2)]
    lines: list[str] = []
    now = time.time()
    for mapping_id, status in document.items():
        if lines:
            lines.append("")
        lines.extend(_render_live(mapping_id, status, now))
    return lines or ["the worker runs no mapping"]


def _render_live(mapping_id: str, status: Mapping[str, Any], now: float) -> list[str]:
    header = [mapping_id, "idle" if status.get("idle") else "busy"]
    leases = status.get("leases")
    if isinstance(leases, dict):
        header.append(f"leases: worker {leases.get('worker')} holds {len(leases.get('owned', []))}")
    queue = status.get("queue")
    if isinstance(queue, dict):
        header.append(
            f"queue: {queue.get('pollers')} pollers, {queue.get('batches_in_flight')} batches in"
            f" flight (at most {queue.get('maximum_concurrency')})"
        )
    lines = ["  ".join(header)]
    partitions = status.get("partitions")
    if isinstance(partitions, dict) and partitions:
        rows = [
            {"partition": pid, **p}
            for pid, p in sorted(partitions.items(), key=_by_id)
            if isinstance(p, dict)
        ]
        columns = [
            Column("PARTITION", lambda p: p["partition"]),
            Column("IN FLIGHT", lambda p: yes(p.get("in_flight"))),
            Column("BLOCKED SINCE", lambda p: _since(p.get("blocked_since"), now)),
            Column("ATTEMPTS", lambda p: field(p, "attempts"), right=True),
            Column("BEHIND MS", lambda p: field(p, "behind_ms"), right=True),
            Column("CHECKPOINT", lambda p: p.get("checkpoint") or "-"),
        ]
        lines.extend("  " + row for row in table(columns, rows))
    elif isinstance(partitions, dict):
        lines.append("  no partition running")
    finished = status.get("finished_partitions")
    if finished:
        lines.append(f"  finished: {', '.join(map(str, finished))}")
    return lines


def _since(epoch: Any, now: float) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return f"{moment(epoch)} ({max(0.0, now - epoch):.0f} s ago)"


def _by_id(item: tuple[str, Any]) -> tuple[str, int]:
    return natural(item[0])
