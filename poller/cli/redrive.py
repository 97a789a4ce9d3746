"""``poller redrive``: hand a mapping's discarded records to its function again.

::

    poller redrive CONFIG --mapping UUID [--from DESTINATION] [--prefix P] [--dry-run] [--json]
    poller redrive CONFIG --mapping UUID [--from DLQ] [--rate N] [--max-messages N] [--dry-run]

A stream mapping (Kinesis, DynamoDB Streams, Kafka) reads its on-failure records back, fetches
the records they describe from the source and runs them through its function again
(:mod:`poller.recovery.stream_setup`); the output is a table with one row per on-failure record
and its fate, or the same as JSON. A queue mapping (SQS, RabbitMQ, ActiveMQ) moves its dead
letters back to its source queue (:mod:`poller.recovery.dead_letters`).

Exit codes: 0 when everything was redriven (or, with ``--dry-run``, can be); 1 when something
failed again, is no longer retained, is malformed, or could not be read or removed; 2 when the
arguments or the config are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

import anyio

from poller.cli.loading import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from poller.cli.tables import Column, table
from poller.config import MappingConfig, PollerConfig
from poller.errors import ConfigError, PollerError
from poller.observability import configure_logging

__all__ = ["add_redrive_arguments", "redrive_command", "render_report"]

#: Dead letters moved per second when ``--rate`` is not given.
DEFAULT_RATE = 50.0


def add_redrive_arguments(command: argparse.ArgumentParser) -> None:
    """The options of ``poller redrive``."""
    command.add_argument("--mapping", required=True, metavar="UUID", help="the mapping to redrive")
    command.add_argument(
        "--from",
        dest="source",
        metavar="DESTINATION",
        help="where to read from: streams, the on-failure destination (default: the mapping's "
        "own; for an SNS topic, the SQS queue subscribed to it); queues, the dead-letter queue "
        "(default: found from the source queue)",
    )
    command.add_argument(
        "--prefix", help="streams, S3 destination: the key prefix (default aws/lambda/UUID/)"
    )
    command.add_argument(
        "--dry-run", action="store_true", help="list what would be redriven; change nothing"
    )
    command.add_argument("--json", action="store_true", help="streams: print the result as JSON")
    command.add_argument(
        "--rate",
        type=float,
        metavar="MESSAGES_PER_SECOND",
        help=f"queues: dead letters moved per second (default {DEFAULT_RATE:g})",
    )
    command.add_argument(
        "--max-messages", type=int, metavar="N", help="queues: move at most N dead letters"
    )


def redrive_command(config: PollerConfig, args: argparse.Namespace) -> int:
    """Run the redrive ``args`` ask for; the exit code."""
    # The output is the table (or JSON): only warnings are logged, and to stderr.
    configure_logging(level="warning", format="console", stream=sys.stderr)
    try:
        mapping = _mapping(config, args.mapping)
        if mapping.spec.family == "queue":
            return _redrive_queue(config, mapping, args)
        return _redrive_stream(config, mapping, args)
    except ConfigError as error:
        print(f"poller: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except PollerError as error:
        print(f"poller: redrive failed: {error}", file=sys.stderr)
        return EXIT_FAILED


def _mapping(config: PollerConfig, uuid: str) -> MappingConfig:
    for mapping in config.mappings:
        if mapping.mapping_id == uuid:
            return mapping
    known = ", ".join(m.mapping_id for m in config.mappings) or "none"
    raise ConfigError(f"--mapping {uuid!r}: no such mapping in the config (mappings: {known})")


def _redrive_queue(config: PollerConfig, mapping: MappingConfig, args: argparse.Namespace) -> int:
    from poller.recovery.dead_letters import redrive_dead_letters

    for given, option in ((args.prefix, "--prefix"), (args.json or None, "--json")):
        if given is not None:
            raise ConfigError(
                f"{option} goes with stream mappings; {mapping.mapping_id} is a queue"
            )
    rate = DEFAULT_RATE if args.rate is None else args.rate
    if not rate > 0:
        raise ConfigError(f"--rate {args.rate!r}: must be a number of messages per second > 0")
    if args.max_messages is not None and args.max_messages < 1:
        raise ConfigError(f"--max-messages {args.max_messages!r}: must be 1 or more")
    return anyio.run(
        lambda: redrive_dead_letters(
            config,
            mapping,
            dead_letter_queue=args.source,
            rate_per_second=rate,
            max_messages=args.max_messages,
            dry_run=args.dry_run,
            out=sys.stdout,
        )
    )


def _redrive_stream(config: PollerConfig, mapping: MappingConfig, args: argparse.Namespace) -> int:
    from poller.recovery.stream_setup import redrive_stream_mapping

    for given, option in ((args.rate, "--rate"), (args.max_messages, "--max-messages")):
        if given is not None:
            raise ConfigError(
                f"{option} goes with queue mappings; {mapping.mapping_id} is a stream mapping"
            )
    report = anyio.run(
        lambda: redrive_stream_mapping(
            config, mapping, source=args.source, prefix=args.prefix, dry_run=args.dry_run
        )
    )
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        render_report(report.as_json(), sys.stdout)
    return EXIT_OK if report.succeeded else EXIT_FAILED


_COLUMNS = (
    Column("ON-FAILURE RECORD", lambda r: r["record"]),
    Column("PARTITION", lambda r: r["partition"] or "-"),
    Column("RANGE", lambda r: f"{r['first']}..{r['last']}" if r["first"] is not None else "-"),
    Column("SIZE", lambda r: "-" if r["batch_size"] is None else r["batch_size"], right=True),
    Column("RETAINED", lambda r: "-" if r["retained"] is None else r["retained"], right=True),
    Column("FATE", lambda r: r["fate"]),
    Column("REMOVED", lambda r: "yes" if r["removed"] else "no"),
    Column("DETAIL", lambda r: r["detail"]),
)


def render_report(report: dict[str, Any], out: TextIO) -> None:
    """The report as the plain table ``poller redrive`` prints for a stream mapping."""
    heading = "dry run: nothing invoked, nothing removed; " if report["dry_run"] else ""
    print(
        f"{heading}mapping {report['mapping']}, on-failure records from {report['from']}", file=out
    )
    if not report["records"]:
        print("no on-failure records found", file=out)
    else:
        for line in table(_COLUMNS, report["records"]):
            print(line, file=out)
    for problem in report["problems"]:
        print(f"problem: {problem}", file=out)
