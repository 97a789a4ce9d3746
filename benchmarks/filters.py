"""FilterCriteria matching: records per second of ``FilterSet.matches`` on SQS-like records.

Why: a mapping with filters tests every record it reads before anything else happens to it, so
the test must cost little next to what the engine does to a record anyway. The cheapest of those
things is decoding the message body from JSON, which filtering on ``body`` needs first; that
decode, measured in the same run, is the baseline.

What runs:

* 20,000 SQS-like records (``messageId``, ``attributes``, ``messageAttributes``, ...) whose
  bodies are JSON orders of about 300 bytes (status, amount, region, a customer object, a list
  of items, tags), with a seeded random mix of values so each pattern matches some records.
* Baselines: ``json.loads`` of each body (the stdlib), and ``decode_payload`` (orjson, the
  helper the engine will use).
* ``FilterSet.matches`` over the decoded records for: an exact value, a prefix, a numeric range,
  an ``$or`` across fields, an ``anything-but`` list, ``equals-ignore-case``, a field inside a
  list of objects, and five ORed filters of which most records fail all five (the worst case:
  every filter is tried).
* Every variant makes one pass over all records per repetition; the variants alternate within
  each repetition so a noisy machine slows them alike, and the table shows medians.

Run ``python benchmarks/filters.py`` (``--records``, ``--repeats``, ``--quick``). Results are also written to
``benchmarks/results/filters.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from _common import median, parse_args_quick, print_table, write_results

from poller.filtering import FilterSet, compile_filters, decode_payload

STATUSES = ("paid", "pending", "shipped", "cancelled", "failed", "refunded")
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1")
TIERS = ("bronze", "silver", "gold")
SKUS = ("A-100", "A-200", "B-300", "C-400")

PATTERNS: dict[str, list[dict[str, Any]]] = {
    "equals": [{"body": {"status": ["paid"]}}],
    "prefix": [{"body": {"region": [{"prefix": "eu-"}]}}],
    "numeric range": [{"body": {"amount": [{"numeric": [">", 100, "<=", 500]}]}}],
    "$or": [{"body": {"$or": [{"status": ["refunded"]}, {"customer": {"tier": ["gold"]}}]}}],
    "anything-but": [{"body": {"status": [{"anything-but": ["cancelled", "failed"]}]}}],
    "equals-ignore-case": [{"body": {"currency": [{"equals-ignore-case": "eur"}]}}],
    "list of objects": [
        {"body": {"items": {"sku": [{"prefix": "C-"}], "qty": [{"numeric": [">", 3]}]}}}
    ],
    "5 ORed filters": [
        {"body": {"status": ["lost"]}},
        {"body": {"region": [{"prefix": "sa-"}]}},
        {"body": {"amount": [{"numeric": [">", 990]}]}},
        {"body": {"customer": {"country": ["IS"]}}},
        {"body": {"status": ["refunded"], "customer": {"tier": ["gold"]}}},
    ],
}


def make_records(count: int, seed: int = 7) -> tuple[list[str], list[dict[str, Any]]]:
    """SQS-like records with JSON bodies: the raw bodies, and the records without bodies."""
    rng = random.Random(seed)
    bodies: list[str] = []
    records: list[dict[str, Any]] = []
    for n in range(count):
        body = {
            "orderId": f"o-{n:08d}",
            "status": rng.choice(STATUSES),
            "amount": round(rng.uniform(1, 1000), 2),
            "currency": rng.choice(("EUR", "eur", "USD", "GBP")),
            "region": rng.choice(REGIONS),
            "customer": {
                "id": f"c-{rng.randrange(10**6):06d}",
                "tier": rng.choice(TIERS),
                "country": rng.choice(("DE", "FR", "US", "IN", "IS")),
            },
            "items": [
                {"sku": rng.choice(SKUS), "qty": rng.randint(1, 5)}
                for _ in range(rng.randint(1, 3))
            ],
            "tags": rng.sample(("gift", "express", "b2b", "promo"), k=rng.randint(0, 2)),
        }
        bodies.append(json.dumps(body))
        records.append(
            {
                "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "receiptHandle": "AQEB" + "x" * 60,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185",
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
                "awsRegion": "us-east-1",
            }
        )
    return bodies, records


def timed_pass(work: Callable[[], int]) -> tuple[float, int]:
    """Seconds one pass takes, and the count it returns (records matched or decoded)."""
    started = time.perf_counter()
    count = work()
    return time.perf_counter() - started, count


def filter_pass(filters: FilterSet, documents: Sequence[dict[str, Any]]) -> Callable[[], int]:
    def work() -> int:
        matches = filters.matches
        matched = 0
        for document in documents:
            if matches(document):
                matched += 1
        return matched

    return work


def decode_pass(bodies: Sequence[str], decode: Callable[[str], Any]) -> Callable[[], int]:
    def work() -> int:
        decoded = 0
        for body in bodies:
            if decode(body) is not None:
                decoded += 1
        return decoded

    return work


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parse_args_quick(parser, argv, {"records": 5_000, "repeats": 3})

    bodies, records = make_records(args.records)
    documents = [
        {**record, "body": decode_payload(body, plain_text=True)}
        for record, body in zip(records, bodies, strict=True)
    ]
    mean_body = sum(len(b) for b in bodies) / len(bodies)
    print(f"{len(bodies):,} SQS-like records, bodies of {mean_body:.0f} bytes on average")

    variants: dict[str, Callable[[], int]] = {
        "json.loads(body)": decode_pass(bodies, json.loads),
        "decode_payload(body)": decode_pass(bodies, decode_payload),
    }
    for name, patterns in PATTERNS.items():
        filters = compile_filters([json.dumps(p) for p in patterns])
        variants[name] = filter_pass(filters, documents)

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    counts: dict[str, int] = {}
    names = list(variants)
    for _ in range(2):  # warm-up: caches, branch predictors, the allocator
        for name in names:
            variants[name]()
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed, count = timed_pass(variants[name])
            seconds[name].append(elapsed)
            counts[name] = count

    baseline_rate = len(bodies) / median(seconds["json.loads(body)"])
    rows: list[dict[str, Any]] = []
    for name in names:
        rate = len(bodies) / median(seconds[name])
        is_filter = name in PATTERNS
        rows.append(
            {
                "variant": name,
                "kind": "filter" if is_filter else "baseline",
                "filters": len(PATTERNS[name]) if is_filter else None,
                "records_per_s": rate,
                "ns_per_record": 1e9 / rate,
                "matched_fraction": counts[name] / len(bodies) if is_filter else None,
                "ratio_to_json_loads": rate / baseline_rate,
                "runs_records_per_s": [len(bodies) / s for s in seconds[name]],
            }
        )

    print_table(
        f"FilterSet.matches vs decoding the body (medians of {args.repeats} alternating runs)",
        ["variant", "filters", "records/s", "ns/record", "matched", "x json.loads"],
        [
            [
                r["variant"],
                r["filters"],
                r["records_per_s"],
                r["ns_per_record"],
                "-" if r["matched_fraction"] is None else f"{r['matched_fraction']:.1%}",
                r["ratio_to_json_loads"],
            ]
            for r in rows
        ],
    )
    path = write_results(
        "filters",
        {
            "records": len(bodies),
            "mean_body_bytes": mean_body,
            "repeats": args.repeats,
            "patterns": PATTERNS,
            "rows": rows,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
