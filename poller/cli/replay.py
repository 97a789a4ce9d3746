"""``poller replay``: move a stream mapping's checkpoints (or a Kafka group's offsets) so the next
worker reads again from there.

::

    poller replay CONFIG.toml --mapping UUID (--at-timestamp T | --at-sequence P --partition ID
                  | --trim-horizon | --latest) [--partition ID] [--force [--wait SECONDS]]
                  [--dry-run] [--json]

``T`` is ISO 8601 (``2026-11-30T08:00:00Z``; without an offset it is UTC) or epoch seconds.
``--partition`` limits the replay to one shard (``shardId-...``) or topic partition
(``topic-N``); ``--at-sequence`` needs it. Prints each partition's checkpoint (offset) before and
after, and how many idempotency records were forgotten; ``--json`` prints the same as a document.
What replay does and refuses: :mod:`poller.recovery.replay`.

Exit codes: 0 moved (or shown, with ``--dry-run``); 2 refused (bad arguments, a queue mapping,
leases or group members held, a finished or unknown partition); 1 the store, the stream or the
broker failed, or a partition's write was refused because a worker took its lease meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from poller.aws import AwsClients
from poller.cli.loading import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from poller.cli.tables import Column, table
from poller.config import PollerConfig
from poller.config.resolved import ResolvedMapping
from poller.errors import PollerError
from poller.observability import configure_logging
from poller.recovery.replay import ReplayRefused, ReplayReport, replay_shards
from poller.recovery.replay_leases import LeasesHeld, ReplayStore
from poller.recovery.replay_positions import ReplayTarget
from poller.runtime.wiring import open_source
from poller.sources import registry
from poller.sources.kafka.options import KafkaSettings
from poller.sources.shards.source import ShardStreamSource
from poller.stores.dynamodb import DynamoDBStore
from poller.stores.factory import open_store
from poller.stores.sqlite import SqliteStore

__all__ = ["add_replay_arguments", "parse_moment", "replay_command"]

#: How long ``--force`` waits for leases or group members by default (seconds).
_DEFAULT_WAIT = 120.0


def add_replay_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--mapping", required=True, metavar="UUID", help="the mapping to replay")
    where = command.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--at-timestamp",
        metavar="T",
        help="from the first record at or after T (ISO 8601 or epoch)",
    )
    where.add_argument(
        "--at-sequence", metavar="P", help="from record P inclusive (needs --partition)"
    )
    where.add_argument("--trim-horizon", action="store_true", help="from the oldest record kept")
    where.add_argument("--latest", action="store_true", help="skip to now")
    command.add_argument("--partition", metavar="ID", help="only this shard or topic partition")
    command.add_argument(
        "--force",
        action="store_true",
        help="wait for workers' leases (Kafka: group members) to go instead of refusing",
    )
    command.add_argument(
        "--wait",
        type=float,
        default=_DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"how long --force waits (default {_DEFAULT_WAIT:g})",
    )
    command.add_argument("--dry-run", action="store_true", help="show the moves, write nothing")
    command.add_argument("--json", action="store_true", help="print a JSON document")


def parse_moment(text: str) -> float:
    """Epoch seconds from ISO 8601 (UTC when it names no offset) or a number of epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReplayRefused(
            f"--at-timestamp {text!r}: give ISO 8601 (2026-11-30T08:00:00Z) or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _target(args: argparse.Namespace) -> ReplayTarget:
    if args.at_timestamp is not None:
        return ReplayTarget("at-timestamp", timestamp=parse_moment(args.at_timestamp))
    if args.at_sequence is not None:
        if not args.partition:
            raise ReplayRefused("--at-sequence needs --partition (a position names one partition)")
        if not args.at_sequence.isdigit():
            raise ReplayRefused(
                f"--at-sequence {args.at_sequence!r}: give a sequence number or offset "
                "(decimal digits)"
            )
        return ReplayTarget("at-sequence", position=args.at_sequence)
    return ReplayTarget("trim-horizon" if args.trim_horizon else "latest")


def replay_command(config: PollerConfig, args: argparse.Namespace) -> int:
    """Run the replay; the exit code says whether it moved what it was asked to."""
    configure_logging(level="warning", format="console", stream=sys.stderr)
    try:
        if not args.wait > 0:
            raise ReplayRefused(f"--wait {args.wait:g}: give a number of seconds above 0")
        report = anyio.run(_replay, config, args, _target(args))
    except (ReplayRefused, LeasesHeld) as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except ClientError as error:
        print(f"poller: {_aws_failure(error)}", file=sys.stderr)
        return EXIT_FAILED
    except (PollerError, BotoCoreError, OSError) as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # the Kafka client's errors (an optional dependency)
        if type(error).__module__.startswith("aiokafka"):
            print(f"poller: kafka: {type(error).__name__}: {error}", file=sys.stderr)
            return EXIT_FAILED
        raise
    print("\n".join(render_json(report) if args.json else render(report)))
    return EXIT_FAILED if report.failed else EXIT_OK


def _aws_failure(error: ClientError) -> str:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    if "AccessDenied" in code or "Unauthorized" in code:
        return f"access denied to {error.operation_name}: {message}"
    return f"{error.operation_name} failed: {code}: {message}"


def _progress(line: str) -> None:
    print(f"poller: {line}", file=sys.stderr, flush=True)


async def _replay(
    config: PollerConfig, args: argparse.Namespace, target: ReplayTarget
) -> ReplayReport:
    by_id = {mapping.mapping_id: mapping for mapping in config.mappings}
    mapping = by_id.get(args.mapping)
    if mapping is None:
        raise ReplayRefused(
            f"--mapping {args.mapping!r}: no such mapping in the config "
            f"(its mappings: {', '.join(by_id) or 'none'})"
        )
    resolved = mapping.resolved()
    if registry.spec_for_kind(resolved.source_kind).family == "queue":
        raise ReplayRefused(
            f"mapping {args.mapping!r} reads a queue ({resolved.source_kind}): queues keep no "
            "checkpoints to move; `poller redrive` moves dead letters back instead"
        )
    url = config.store.url
    if url == "memory://" and not isinstance(resolved.settings, KafkaSettings):
        raise ReplayRefused(
            "[store] url is memory://: its checkpoints live only inside the worker's process"
        )
    if config.aws.embedded:
        raise ReplayRefused(
            '[aws] endpoint_url = "embedded": the streams live inside the worker\'s process'
        )
    clients = AwsClients(config.aws)
    try:
        store = None if url == "memory://" else open_store(url, clients=clients, create=False)
        try:
            if isinstance(store, DynamoDBStore):
                await store.open()  # the table must exist (create=False)
            if isinstance(resolved.settings, KafkaSettings):
                return await _replay_kafka(resolved, clients, store, args, target)
            opened = await open_source(mapping, resolved, clients, config.worker)
            source = opened.source
            try:
                if not isinstance(source, ShardStreamSource):
                    raise ReplayRefused(
                        f"mapping {args.mapping!r} ({resolved.source_kind}) has no checkpoints "
                        "to move"
                    )
                assert store is not None
                return await replay_shards(
                    _as_replay_store(store),
                    source,
                    resolved.mapping_id,
                    target,
                    partition=args.partition,
                    force=args.force,
                    wait=args.wait,
                    dry_run=args.dry_run,
                    lease_duration=config.worker.lease_duration_seconds,
                    progress=_progress,
                )
            finally:
                await source.aclose()
        finally:
            if store is not None:
                await store.aclose()
    finally:
        await clients.aclose()


def _as_replay_store(store: object) -> ReplayStore:
    """The store as replay uses it (every durable store implements the rewrite operations)."""
    if not isinstance(store, SqliteStore | DynamoDBStore):
        raise ReplayRefused(f"the store {store!r} cannot rewrite checkpoints")
    return store


async def _replay_kafka(
    resolved: ResolvedMapping,
    clients: AwsClients,
    store: object,
    args: argparse.Namespace,
    target: ReplayTarget,
) -> ReplayReport:
    from poller.recovery.replay_kafka import replay_kafka
    from poller.sources.kafka.connection import kafka_connection

    settings = resolved.settings
    assert isinstance(settings, KafkaSettings)
    return await replay_kafka(
        await kafka_connection(resolved, clients),
        mapping_id=resolved.mapping_id,
        topic=settings.topic,
        group=settings.consumer_group_id,
        target=target,
        partition=args.partition,
        force=args.force,
        wait=args.wait,
        dry_run=args.dry_run,
        store=None if store is None else _as_replay_store(store),
        progress=_progress,
    )


# --- output ------------------------------------------------------------------------------------------


def _cell(fields: dict[str, Any] | None) -> str:
    if fields is None:
        return "-"
    if "offset" in fields:
        return str(fields["offset"])
    if fields.get("finished"):
        return f"{fields['position'] or '-'} (finished)"
    if fields.get("position"):
        return str(fields["position"])
    opened = fields.get("opened_at")
    if opened is None:
        return "-"
    return f"at {datetime.fromtimestamp(opened, UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def render(report: ReplayReport) -> list[str]:
    """The report as a table under a one-line summary."""
    verb = "would move (dry run, nothing written)" if report.dry_run else "moved"
    lines = [f"{report.mapping_id}  {report.kind}  {report.target}: {verb}"]
    if not report.moves:
        return [*lines, "  no partitions"]
    columns = [
        Column("PARTITION", lambda row: row["partition"]),
        Column("BEFORE", lambda row: _cell(row["before"])),
        Column("AFTER", lambda row: _cell(row["after"]) if row["after"] else "(unchanged)"),
        Column(
            "FORGOTTEN",
            lambda row: "-" if row["forgotten"] is None else str(row["forgotten"]),
            right=True,
        ),
        Column("NOTE", lambda row: row["note"]),
    ]
    return [*lines, *table(columns, _rows(report))]


def render_json(report: ReplayReport) -> list[str]:
    """The report as a JSON document: mapping, kind, target, dry_run and one entry per partition
    (partition, before, after, note, idempotency_records_forgotten, failed)."""
    document = {
        "mapping": report.mapping_id,
        "kind": report.kind,
        "target": report.target,
        "dry_run": report.dry_run,
        "partitions": [
            {
                "partition": row["partition"],
                "before": row["before"],
                "after": row["after"],
                "note": row["note"],
                "idempotency_records_forgotten": row["forgotten"],
                "failed": row["failed"],
            }
            for row in _rows(report)
        ],
    }
    return [json.dumps(document, indent=2)]


def _rows(report: ReplayReport) -> list[dict[str, Any]]:
    return [
        {
            "partition": move.partition,
            "before": move.before,
            "after": move.after,
            "note": move.note,
            "forgotten": move.forgotten,
            "failed": move.failed,
        }
        for move in report.moves
    ]
