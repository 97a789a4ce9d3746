"""Put-to-handler latency per source: how long a record takes from its write to poller's handler.

Why: throughput says how fast a backlog drains; latency says how soon a caught-up mapping reacts
to one new record. That is bounded by how each source is read (the idle pace of a shard, a long
poll's wake-up, a broker's push, a batching window) more than by poller's own code, so every
poller row stands next to a hand-written consumer on the raw client, at the same pace, measured
in the same run.

What runs, in one process, against servers started for the run (moto; tansu for Kafka; RabbitMQ
and ActiveMQ), all stopped at the end:

* each record carries ``time.time()`` taken just before the call that writes it is made (so a
  latency includes that call's round trip, shown apart as "put p50"); the consumer notes
  ``time.time() - stamp`` for each record as its handler receives it (poller: a typed
  ``async def handle(batch)``; raw: the client loop). Same process, same clock;
* **caught up**: a fresh stream/queue/topic, the consumer started and fed warm-up records until
  one arrived (joined, reading from the tip), 0.3 s idle, then ``--rate`` records a second
  for ``--seconds`` in total, one write call each. Each variant runs ``--repeats`` times,
  alternating with the others of its source; the samples are pooled;
* **backlog**: ``--backlog`` records written in chunks before the consumer starts (from the
  start of the stream); the latency is then mostly time spent waiting in the source, so it comes
  with the seconds from the consumer's start to its first record ("1st s"), the drain rate
  (records a second from the first hand-over to the last; huge when one read brought them all)
  and the rate from the consumer's start to its last record.

Variants: Kinesis at Lambda's idle pace (one GetRecords a second per caught-up shard, poller's
default) and at the Kinesis limit (5 reads a second: ``[worker] idle_poll_seconds = 0.2``);
DynamoDB Streams at its default 4 reads a second; SQS with a 20 s long poll; Kafka and RabbitMQ
with MaximumBatchingWindowInSeconds 0 and at AWS's default 0.5 s; ActiveMQ with window 0;
Kinesis at 5 reads/s and SQS once more with a Lambda-style ``handler(event, context)``. The
raw loops: GetRecords paced as poller paces a shard; five SQS receive loops (poller's first five
pollers); aiokafka getmany with its default 500 ms fetch wait, and once more with 10 ms to show
what the broker's fetch wait costs; aio-pika and stompman consumers that the broker pushes to.
Aims, caught up: Kinesis p50 < 150 ms at 5 reads/s, SQS and Kafka p50 < 50 ms. Each row's
"bound" says what limits it, with the parts measured in the run: the put call's time, the time
from the put's return to the handler, the raw loop's read call time, poller minus raw.

Run ``python benchmarks/latency.py`` (about 4 minutes) or with ``--quick`` (under a minute on a
quiet machine); results also go to ``benchmarks/results/latency.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from _common import parse_args_quick, print_table, write_results
from _latency_kit import PhaseResult, Servers, backlog, caught_up, servers, summary
from _latency_plan import BACKLOG_CAP, SERVER_OF, SOURCES, Variant, plan

from poller.observability import configure_logging


@dataclass(slots=True)
class Measured:
    """What one variant gave in one regime, over its runs."""

    variant: Variant
    regime: str
    runs: list[PhaseResult] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        return [s for run in self.runs for s in run.samples_ms]


async def measure_source(name: str, running: Servers, args: argparse.Namespace) -> list[Measured]:
    opener, variants = plan()[name]
    chosen = [v for v in variants if v.quick or not args.quick]
    count = max(1, round(args.rate * args.seconds / args.repeats))
    found = {
        (v.pair, v.variant, v.pace, regime): Measured(v, regime)
        for v in chosen
        for regime in ("caught up", "backlog")
    }
    async with opener(running) as (new, read_ms):
        for repeat in range(args.repeats):  # alternate, so drift in load hits every variant
            for variant in chosen:
                what = f"{name} {variant.variant} ({variant.pace}), caught up"
                read_ms.clear()
                result = await caught_up(await new(False), variant.consumer, args.rate, count, what)
                entry = found[(variant.pair, variant.variant, variant.pace, "caught up")]
                entry.runs.append(result)
                entry.read_ms.extend(read_ms)
                _progress(what, repeat, args.repeats, result)
        for variant in chosen:
            what = f"{name} {variant.variant} ({variant.pace}), backlog"
            read_ms.clear()
            size = min(args.backlog, BACKLOG_CAP.get(name, args.backlog))
            result = await backlog(await new(True), variant.consumer, size, what)
            entry = found[(variant.pair, variant.variant, variant.pace, "backlog")]
            entry.runs.append(result)
            entry.read_ms.extend(read_ms)
            _progress(what, 0, 1, result)
    return list(found.values())


def _progress(what: str, repeat: int, repeats: int, result: PhaseResult) -> None:
    p50 = statistics.median(result.samples_ms)
    drain = f", drained at {result.drain_per_s:,.0f}/s" if result.drain_per_s else ""
    print(
        f"  {what} {repeat + 1}/{repeats}: p50 {p50:.1f} ms{drain} ({result.wall_s:.1f} s)",
        flush=True,
    )


def result_rows(measured: Sequence[Measured]) -> list[dict[str, Any]]:
    """The JSON rows, with each poller row's bound set against its raw loop's in this run."""
    raw_p50: dict[tuple[str, str], float] = {}
    raw_reads: dict[tuple[str, str], float] = {}
    for entry in measured:
        if entry.variant.variant == "raw loop":
            raw_p50[(entry.variant.pair, entry.regime)] = statistics.median(entry.samples)
            if entry.read_ms:
                raw_reads[(entry.variant.pair, entry.regime)] = statistics.median(entry.read_ms)
    rows = []
    for entry in measured:
        v = entry.variant
        samples = entry.samples
        stats = summary(samples)
        puts = [ms for run in entry.runs for ms in run.put_ms]
        put_p50 = statistics.median(puts)
        parts = [v.bound]
        if entry.regime == "backlog":
            parts = [
                "queueing: every record was written before the consumer started, so a record waits "
                "for the writes after it, the consumer's start and the records ahead of it"
            ]
            if v.variant == "poller":
                parts.append(
                    "poller's start is inside: the Worker builds its own clients, lists and "
                    "leases shards or joins the group, where the raw loop reuses the open client"
                )
        if entry.regime == "caught up":
            parts.append(f"put call p50 {put_p50:.1f} ms (inside the latency)")
        else:
            parts.append(f"write call p50 {put_p50:.1f} ms (one chunk of the backlog each)")
        after_put = [ms for run in entry.runs for ms in run.after_put_ms]
        if after_put:
            parts.append(f"from the put's return p50 {statistics.median(after_put):.1f} ms")
        reads = raw_reads.get((v.pair, entry.regime))
        if reads is not None:
            parts.append(f"read call p50 {reads:.1f} ms (raw loop)")
        baseline = raw_p50.get((v.pair, entry.regime))
        if v.variant == "poller" and baseline is not None:
            parts.append(
                f"raw loop at the same pace p50 {baseline:.1f} ms; poller "
                f"{stats['p50_ms'] - baseline:+.1f} ms"
            )
        aim = v.aim_ms if entry.regime == "caught up" else None
        drains = [run.drain_per_s for run in entry.runs if run.drain_per_s]
        firsts = [run.first_after_s for run in entry.runs if run.first_after_s is not None]
        starts = [run.from_start_per_s for run in entry.runs if run.from_start_per_s]
        rows.append(
            {
                "source": v.source,
                "variant": v.variant,
                "regime": entry.regime,
                "pace": v.pace,
                "handler": None
                if v.variant == "raw loop"
                else ("Lambda-style" if v.lambda_style else "typed"),
                "records": len(samples),
                **stats,
                "samples_ms": [round(s, 1) for s in samples],
                "aim_ms": aim,
                "meets_aim": None if aim is None else stats["p50_ms"] < aim,
                "bound": "; ".join(parts),
                "bound_short": v.short if entry.regime == "caught up" else "queueing",
                "runs_p50_ms": [round(statistics.median(r.samples_ms), 1) for r in entry.runs],
                "put_p50_ms": round(put_p50, 1),
                "after_put_p50_ms": round(statistics.median(after_put), 1) if after_put else None,
                "raw_loop_p50_ms": None if baseline is None else round(baseline, 1),
                "drain_records_per_s": round(drains[0], 1) if drains else None,
                "first_record_after_s": round(firsts[0], 3) if firsts else None,
                "records_per_s_from_start": round(starts[0], 1) if starts else None,
            }
        )
    return rows


async def measure(
    running: Servers, sources: Sequence[str], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every source in turn; one that fails (its server did not start, records never came) is
    reported and the others are still measured."""
    measured: list[Measured] = []
    failures: list[str] = []
    for name in sources:
        try:
            measured.extend(await measure_source(name, running, args))
        except (RuntimeError, ExceptionGroup) as error:
            failures.extend(f"{name}: {message}" for message in _failures(error))
    return result_rows(measured), failures


def _failures(error: BaseException) -> list[str]:
    """The messages of the RuntimeErrors in ``error`` (task groups wrap them); anything else is
    a bug in this script and is raised again with its traceback."""
    if isinstance(error, BaseExceptionGroup):
        return [message for inner in error.exceptions for message in _failures(inner)]
    if isinstance(error, RuntimeError):
        return [str(error)]
    raise error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Sizes: full run 20 records/s for 6 s per variant in 2 alternating repeats of "
        "3 s, backlog 500 (SQS 100), every row (about 4 minutes); --quick: poller rows only "
        "(typed handler, window 0, no ActiveMQ), 20 records/s for 1.5 s, 1 repeat, backlog 50.",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="records/s, caught up (20)")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="caught-up seconds per variant (6)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats (2)")
    parser.add_argument(
        "--backlog", type=int, default=500, help="records written before the start (500)"
    )
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    quick_sources = [s for s in SOURCES if s != "activemq"]
    args = parse_args_quick(
        parser, argv, {"seconds": 1.5, "repeats": 1, "backlog": 50, "sources": quick_sources}
    )
    sources = args.sources
    if args.rate <= 0 or args.seconds <= 0 or args.repeats < 1 or args.backlog < 1:
        parser.error("--rate, --seconds, --repeats and --backlog must be positive")
    configure_logging(level="warning", stream=sys.stderr)

    with servers({SERVER_OF[s] for s in sources}, overlap=args.quick) as running:
        rows, failures = anyio.run(measure, running, sources, args)
    for failure in failures:
        print(f"latency: {failure}", file=sys.stderr)
    if not rows:
        return 1

    print(
        f"\nput -> handler latency, ms. Caught up: {args.rate:g} records/s for {args.seconds:g} s "
        f"per variant ({args.repeats} alternating repeats, pooled); backlog: {args.backlog:,} "
        "records written before the consumer started ('1st s': seconds from its start to the "
        "first record; 'drain/s': records/s from the first hand-over to the last). The stamp is "
        "taken just before the put call, so the put's own time is inside every number."
    )
    print_table(
        "put -> handler latency",
        [
            "source",
            "variant",
            "regime",
            "pace",
            "n",
            "p50",
            "p90",
            "p99",
            "max",
            "aim",
            "met",
            "bound",
            "1st s",
            "drain/s",
        ],
        [
            [
                r["source"],
                r["variant"],
                r["regime"],
                r["pace"],
                r["records"],
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["aim_ms"],
                r["meets_aim"],
                r["bound_short"],
                r["first_record_after_s"],
                r["drain_records_per_s"],
            ]
            for r in rows
        ],
    )
    print("\nWhat bounds each row (caught up):")
    for r in rows:
        if r["regime"] == "caught up":
            print(f"- {r['source']} {r['variant']} ({r['pace']}): {r['bound']}")
    parameters = {
        "rate_per_s": args.rate,
        "seconds_per_variant": args.seconds,
        "repeats": args.repeats,
        "backlog": args.backlog,
        "backlog_cap": BACKLOG_CAP,
        "sources": sources,
        "stamp": "time.time() taken just before the write call is made",
    }
    path = write_results("latency", {**parameters, "failures": failures, "results": rows})
    print(f"\nwritten: {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
