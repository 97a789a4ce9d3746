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
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from poller.aws import AwsClients
from poller.cli.loading import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load
from poller.cli.status_live import StatusFailed, StatusRefused, fetch, live, status_url
from poller.cli.tables import Column, field, moment, natural, table, yes
from poller.config import PollerConfig
from poller.config.redaction import redact_document, redact_text
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
                raise StatusRefused(
                    "give either CONFIG (read the store) or --url (ask a running worker), not both"
                )
            if not args.timeout > 0:
                raise StatusRefused(f"--timeout {args.timeout:g}: give a number of seconds above 0")
            document = anyio.run(fetch, status_url(args.url), args.timeout)
            lines = live(document, args.mapping, as_json=args.json)
        else:
            config = load(args)
            lines = anyio.run(_from_store, config, args.mapping, args.json)
    except ConfigError as error:
        problems = error.problems
        said = f"invalid config: {problems[0]}" if len(problems) == 1 else str(error)
        print(f"poller: {said}", file=sys.stderr)
        return EXIT_CONFIG
    except StatusRefused as error:
        print(f"poller: {redact_text(str(error))}", file=sys.stderr)  # --url may carry a login
        return EXIT_CONFIG
    except (StatusFailed, PollerError) as error:
        print(f"poller: {redact_text(str(error))}", file=sys.stderr)
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
        raise StatusRefused(
            "[store] url is memory://: its state lives only inside the worker's process; ask a "
            "running worker with --url http://HOST:PORT ([http] listen)"
        )
    clients: AwsClients | None = None
    if url.startswith("dynamodb://"):
        if config.aws.embedded:
            raise StatusRefused(
                '[aws] endpoint_url = "embedded": the DynamoDB table lives inside the worker\'s '
                "process; ask a running worker with --url http://HOST:PORT ([http] listen)"
            )
        clients = AwsClients(config.aws)
    try:
        store = await open_for_inspection(url, clients=clients)
        try:
            now = time.time()
            document = redact_document(
                {
                    "store": url,
                    "mappings": [await _mapping_state(store, mapping, now) for mapping in mappings],
                }
            )
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
        raise StatusRefused(
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
    partitions = sorted({*checkpoints, *records, *leases}, key=natural)
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
    return _pick(checkpoint, "position", "finished", "opened_at")


def _lease(lease: Lease | None) -> dict[str, Any] | None:
    return _pick(lease, "owner", "counter", "epoch", "finished")


def _pick(item: Any, *names: str) -> dict[str, Any] | None:
    """The named attributes of ``item`` as the JSON document's keys (None stays None)."""
    return None if item is None else {name: getattr(item, name) for name in names}


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
        lines.extend("  " + row for row in _storetable(mapping))
    return lines


def _storetable(mapping: Mapping[str, Any]) -> list[str]:
    partitions = mapping["partitions"]
    with_checkpoints = mapping["checkpoints"] == "store"
    opened = any((p["checkpoint"] or {}).get("opened_at") is not None for p in partitions)
    leased = any(p["lease"] is not None for p in partitions)
    columns = [
        Column("PARTITION", lambda p: p["partition"]),
        *(
            [
                Column("CHECKPOINT", lambda p: _position(p["checkpoint"])),
                Column("FINISHED", lambda p: yes((p["checkpoint"] or {}).get("finished"))),
            ]
            if with_checkpoints
            else []
        ),
        *(
            [Column("OPENED AT", lambda p: moment((p["checkpoint"] or {}).get("opened_at")))]
            if opened
            else []
        ),
        Column("IDEMPOTENCY", lambda p: str(p["idempotency_records"]), right=True),
        *(
            [
                Column("LEASE OWNER", lambda p: _owner(p["lease"])),
                Column("COUNTER", lambda p: field(p["lease"], "counter"), right=True),
                Column("EPOCH", lambda p: field(p["lease"], "epoch"), right=True),
            ]
            if leased
            else []
        ),
    ]
    return table(columns, partitions)


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
