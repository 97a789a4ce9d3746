"""``poller status``: what the state store holds for each mapping, or what a running worker does.

::

    poller status CONFIG.toml [--mapping UUID]... [--json]
    poller status --url http://HOST:PORT [--mapping UUID]... [--json] [--timeout SECONDS]

**From the store** (``CONFIG``, or ``--esm`` as for ``run``): no worker needs to run, and nothing
is created or written. Per mapping (UUID, source kind, ARN) and partition: the checkpoint
(position, finished, and ``opened_at``, the moment a LATEST start was first opened, while no
record has settled), how many idempotency records are held (not yet expired), and the lease
(owner, counter, epoch) when the mapping has leases. A Kafka mapping's progress is its consumer
group's committed offsets, which are not in the store; a queue mapping has no checkpoints. A
state file or table that does not exist yet is an error saying so, not an empty answer.

``--json`` prints this document; every key is always present (null when it does not apply)::

    {
      "store": "sqlite:///./.poller/state.db",
      "mappings": [
        {
          "uuid": "orders",
          "kind": "kinesis",                 # kinesis | dynamodb | kafka | sqs | mq
          "arn": "arn:aws:kinesis:us-east-1:123456789012:stream/orders",   # null: self-managed
          "source": "arn:aws:kinesis:us-east-1:123456789012:stream/orders",  # ARN or endpoint
          "enabled": true,
          "checkpoints": "store",            # store | consumer_group | none (queues)
          "consumer_group": null,            # Kafka: the group holding the offsets
          "partitions": [                    # sorted; every partition the store knows
            {
              "partition": "shardId-000000000000",
              "checkpoint": {"position": "4959...", "finished": false, "opened_at": null},
              "idempotency_records": 0,
              "lease": {"owner": "host-1234", "counter": 7, "epoch": 2, "finished": false}
            }
          ]
        }
      ]
    }

``checkpoint`` and ``lease`` are null where the store holds none; a released lease has owner null.

**From a running worker** (``--url``, the worker's ``[http] listen`` address): ``GET URL/status``,
the document of ``Worker.status()`` (mapping UUID -> its status), rendered per mapping and
partition: a batch in the handler now, blocked since when and at which attempt, lag
(``behind_ms``) and checkpoint; queue mappings show their pollers and batches in flight.
``--json`` prints the fetched document as it came.

Exit codes: 0 shown; 2 the config, ``--url`` or ``--mapping`` is refused; 1 the store or the worker
cannot be read. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
from yarl import URL

from poller.aws import AwsClients
from poller.cli.loading import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load
from poller.config import PollerConfig
from poller.config.resolved import ResolvedMapping
from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.errors import ConfigError, PollerError
from poller.observability import configure_logging
from poller.sources import registry
from poller.sources.kafka.options import KafkaSettings
from poller.stores.inspection import InspectableStore, open_for_inspection

__all__ = ["add_status_arguments", "status_command"]

_DEFAULT_TIMEOUT = 5.0


class _Refused(Exception):
    """What the user asked for cannot be shown; the message says why (exit 2)."""


class _Failed(Exception):
    """The store or the worker could not be read; the message says why (exit 1)."""


def add_status_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--mapping",
        action="append",
        metavar="UUID",
        help="show only this mapping (repeatable)",
    )
    command.add_argument("--json", action="store_true", help="print a JSON document")
    command.add_argument(
        "--url",
        metavar="http://HOST:PORT",
        help="ask a running worker ([http] listen) instead of reading the store",
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=_DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long --url may take (default {_DEFAULT_TIMEOUT:g})",
    )


def status_command(args: argparse.Namespace) -> int:
    """Print the status; the exit code says whether it could be read."""
    # Library log lines go to stderr, so stdout holds only the table or the JSON document.
    configure_logging(level="warning", format="console", stream=sys.stderr)
    try:
        if args.url:
            if args.config or args.esm:
                raise _Refused(
                    "give either CONFIG (read the store) or --url (ask a running worker), not both"
                )
            if not args.timeout > 0:
                raise _Refused(f"--timeout {args.timeout:g}: give a number of seconds above 0")
            document = anyio.run(_fetch, _status_url(args.url), args.timeout)
            lines = _live(document, args.mapping, as_json=args.json)
        else:
            config = load(args)
            lines = anyio.run(_from_store, config, args.mapping, args.json)
    except ConfigError as error:
        problems = error.problems
        said = f"invalid config: {problems[0]}" if len(problems) == 1 else str(error)
        print(f"poller: {said}", file=sys.stderr)
        return EXIT_CONFIG
    except _Refused as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (_Failed, PollerError) as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(lines))
    return EXIT_OK


# --- from the store --------------------------------------------------------------------------------


async def _from_store(
    config: PollerConfig, wanted: Sequence[str] | None, as_json: bool
) -> list[str]:
    mappings = _chosen([m.resolved() for m in config.mappings], wanted)
    url = config.store.url
    if url == "memory://":
        raise _Refused(
            "[store] url is memory://: its state lives only inside the worker's process; ask a "
            "running worker with --url http://HOST:PORT ([http] listen)"
        )
    clients: AwsClients | None = None
    if url.startswith("dynamodb://"):
        if config.aws.embedded:
            raise _Refused(
                '[aws] endpoint_url = "embedded": the DynamoDB table lives inside the worker\'s '
                "process; ask a running worker with --url http://HOST:PORT ([http] listen)"
            )
        clients = AwsClients(config.aws)
    try:
        store = await open_for_inspection(url, clients=clients)
        try:
            now = time.time()
            document = {
                "store": url,
                "mappings": [await _mapping_state(store, mapping, now) for mapping in mappings],
            }
        finally:
            await store.aclose()
    finally:
        if clients is not None:
            await clients.aclose()
    if as_json:
        return [json.dumps(document, indent=2)]
    return _render_store(document)


def _chosen(mappings: list[ResolvedMapping], wanted: Sequence[str] | None) -> list[ResolvedMapping]:
    """The mappings ``--mapping`` names (all without it); an unknown one is refused."""
    if not wanted:
        return mappings
    known = {m.mapping_id: m for m in mappings}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise _Refused(
            f"no mapping {unknown[0]!r} in the config (its mappings: {', '.join(known) or 'none'})"
        )
    return [known[name] for name in dict.fromkeys(wanted)]


async def _mapping_state(
    store: InspectableStore, mapping: ResolvedMapping, now: float
) -> dict[str, Any]:
    mapping_id = mapping.mapping_id
    family = registry.spec_for_kind(mapping.source_kind).family
    group = mapping.settings if isinstance(mapping.settings, KafkaSettings) else None
    if group is not None:
        kept = "consumer_group"
    elif family == "queue":
        kept = "none"
    else:
        kept = "store"
    checkpoints = await store.list_checkpoints(mapping_id)
    records = await store.count_idempotency_records(mapping_id, now)
    leases = {lease.partition: lease for lease in await store.list_leases(mapping_id)}
    partitions = sorted({*checkpoints, *records, *leases}, key=_natural)
    return {
        "uuid": mapping_id,
        "kind": mapping.source_kind,
        "arn": mapping.event_source_arn or None,
        "source": mapping.source_label,
        "enabled": mapping.enabled,
        "checkpoints": kept,
        "consumer_group": group.consumer_group_id if group is not None else None,
        "partitions": [
            {
                "partition": partition,
                "checkpoint": _checkpoint(checkpoints.get(partition)),
                "idempotency_records": records.get(partition, 0),
                "lease": _lease(leases.get(partition)),
            }
            for partition in partitions
        ],
    }


def _checkpoint(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "position": checkpoint.position,
        "finished": checkpoint.finished,
        "opened_at": checkpoint.opened_at,
    }


def _lease(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {
        "owner": lease.owner,
        "counter": lease.counter,
        "epoch": lease.epoch,
        "finished": lease.finished,
    }


def _render_store(document: Mapping[str, Any]) -> list[str]:
    lines = [f"store {document['store']}"]
    for mapping in document["mappings"]:
        lines.append("")
        disabled = "" if mapping["enabled"] else "  (disabled)"
        lines.append(f"{mapping['uuid']}  {mapping['kind']}  {mapping['source']}{disabled}")
        partitions = mapping["partitions"]
        if mapping["checkpoints"] == "consumer_group":
            lines.append(
                f"  checkpoints: offsets are committed to consumer group "
                f"{mapping['consumer_group']!r}, not kept in the store"
            )
        elif mapping["checkpoints"] == "none":
            lines.append(
                "  checkpoints: none (a queue's messages are deleted or acknowledged as they"
                " settle)"
            )
        if not partitions:
            lines.append(
                "  no state in the store yet"
                if mapping["checkpoints"] == "store"
                else "  no idempotency records"
            )
            continue
        lines.extend("  " + row for row in _store_table(mapping))
    return lines


def _store_table(mapping: Mapping[str, Any]) -> list[str]:
    partitions = mapping["partitions"]
    with_checkpoints = mapping["checkpoints"] == "store"
    opened = any((p["checkpoint"] or {}).get("opened_at") is not None for p in partitions)
    leased = any(p["lease"] is not None for p in partitions)
    columns = [
        _Column("PARTITION", lambda p: p["partition"]),
        *(
            [
                _Column("CHECKPOINT", lambda p: _position(p["checkpoint"])),
                _Column("FINISHED", lambda p: _yes((p["checkpoint"] or {}).get("finished"))),
            ]
            if with_checkpoints
            else []
        ),
        *(
            [_Column("OPENED AT", lambda p: _moment((p["checkpoint"] or {}).get("opened_at")))]
            if opened
            else []
        ),
        _Column("IDEMPOTENCY", lambda p: str(p["idempotency_records"]), right=True),
        *(
            [
                _Column("LEASE OWNER", lambda p: _owner(p["lease"])),
                _Column("COUNTER", lambda p: _field(p["lease"], "counter"), right=True),
                _Column("EPOCH", lambda p: _field(p["lease"], "epoch"), right=True),
            ]
            if leased
            else []
        ),
    ]
    return _table(columns, partitions)


def _position(checkpoint: Mapping[str, Any] | None) -> str:
    if checkpoint is None:
        return "-"
    # An empty position is the marker of a LATEST start before any record settled.
    return str(checkpoint["position"]) or "(none settled yet)"


def _owner(lease: Mapping[str, Any] | None) -> str:
    if lease is None:
        return "-"
    if lease["finished"]:
        return "(finished)"
    return str(lease["owner"]) if lease["owner"] else "(free)"


def _field(item: Mapping[str, Any] | None, key: str) -> str:
    return "-" if item is None or item.get(key) is None else str(item[key])


# --- from a running worker -------------------------------------------------------------------------


def _status_url(url: str) -> URL:
    """``URL/status`` for a worker's base URL; a URL that is not ``http(s)://HOST[:PORT]`` is
    refused."""
    try:
        base = URL(url)
    except ValueError as error:
        raise _Refused(f"--url {url!r} is not a URL: {error}") from None
    if base.scheme not in ("http", "https") or not base.host:
        raise _Refused(f"--url {url!r} is not an http://HOST:PORT URL")
    return base.with_path(base.path.rstrip("/") + "/status", encoded=False)


async def _fetch(url: URL, seconds: float) -> Any:
    """The JSON of ``GET url``, within ``seconds``."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                hint = " (is [http] listen set on that worker?)" if response.status == 404 else ""
                raise _Failed(f"GET {url} answered {response.status} {response.reason}{hint}")
            return await response.json(content_type=None)
    except TimeoutError:
        raise _Failed(f"GET {url}: no answer within {seconds:g} s") from None
    except aiohttp.ClientConnectorError as error:
        errno = error.os_error.errno
        raise _Failed(f"cannot reach {url}: {os.strerror(errno) if errno else error}") from None
    except aiohttp.ClientError as error:
        raise _Failed(f"GET {url}: {type(error).__name__}: {error}") from None
    except ValueError as error:  # the body is not JSON
        raise _Failed(f"GET {url}: the answer is not JSON ({error})") from None


def _live(document: Any, wanted: Sequence[str] | None, *, as_json: bool) -> list[str]:
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise _Failed("the worker's /status answer is not a poller status document")
    if wanted:
        unknown = [name for name in wanted if name not in document]
        if unknown:
            raise _Refused(
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
            _Column("PARTITION", lambda p: p["partition"]),
            _Column("IN FLIGHT", lambda p: _yes(p.get("in_flight"))),
            _Column("BLOCKED SINCE", lambda p: _since(p.get("blocked_since"), now)),
            _Column("ATTEMPTS", lambda p: _field(p, "attempts"), right=True),
            _Column("BEHIND MS", lambda p: _field(p, "behind_ms"), right=True),
            _Column("CHECKPOINT", lambda p: p.get("checkpoint") or "-"),
        ]
        lines.extend("  " + row for row in _table(columns, rows))
    elif isinstance(partitions, dict):
        lines.append("  no partition running")
    finished = status.get("finished_partitions")
    if finished:
        lines.append(f"  finished: {', '.join(map(str, finished))}")
    return lines


def _since(moment: Any, now: float) -> str:
    if not isinstance(moment, int | float):
        return "-"
    return f"{_moment(moment)} ({max(0.0, now - moment):.0f} s ago)"


def _by_id(item: tuple[str, Any]) -> tuple[str, int]:
    return _natural(item[0])


# --- tables ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    """A column: its title, its cell for a row, and whether it aligns right (numbers)."""

    title: str
    cell: Callable[[Mapping[str, Any]], str]
    right: bool = False


def _table(columns: Sequence[_Column], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Rows under a header, each column as wide as its widest cell, two spaces apart."""
    cells = [[column.title for column in columns]]
    cells += [[str(column.cell(row)) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        "  ".join(
            cell.rjust(width) if column.right else cell.ljust(width)
            for cell, width, column in zip(line, widths, columns, strict=True)
        ).rstrip()
        for line in cells
    ]


def _yes(flag: Any) -> str:
    return "-" if flag is None else ("yes" if flag else "no")


def _moment(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DIGITS = re.compile(r"^(.*?)(\d+)$")


def _natural(name: str) -> tuple[str, int]:
    """Sorts ``topic-2`` before ``topic-10`` (shard ids are zero-padded already)."""
    match = _DIGITS.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)
