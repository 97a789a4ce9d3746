"""poller reading a DynamoDB stream (moto over HTTP) next to the plainest aiobotocore loop that reads it.

Why: against a real endpoint the engine should cost next to nothing: the time goes to HTTP and the
server. The aim is poller within 10% of a hand-written reader, i.e. a poller/raw ratio >= 0.9.

What runs, in one process, against one moto server started for the run and stopped at the end:

* a table with a NEW_AND_OLD_IMAGES stream and 5,000 items of about 100 bytes, written with
  BatchWriteItem in chunks of 25 (each write is one INSERT record on the stream; moto keeps one
  shard per stream);
* (a) raw: create a client, DescribeStream, GetShardIterator TRIM_HORIZON and GetRecords
  (Limit 1000, the most AWS allows) until the shard has handed over every record, touching each
  record with a no-op;
* (b) poller: a :class:`poller.runtime.Worker` built from ``parse_config`` (endpoint = the moto
  server, store ``memory://``, StartingPosition TRIM_HORIZON, BatchSize 100 or 1000) with a typed
  no-op handler that only counts, from ``start()`` until the handler has seen every record; then
  it is stopped (not timed). poller does what the raw loop skips: each record becomes a
  :class:`~poller.DynamoDBRecord` (its ``dynamodb`` block kept as the JSON text a
  Lambda-style event would carry, its key canonicalised for lanes), batches are cut and
  checkpoints written.

Both sides build their own client inside the timed part and use the same client settings
(``poller.aws.AwsClients``). Each measurement runs 3 times, alternating, and the medians are
reported; the ratio is taken within this run, so the machine's load cancels out as far as it can.

Run ``python benchmarks/dynamodb_streams.py`` (``--quick``: 500 changes, one run); results go to
``benchmarks/results/dynamodb_streams.json``.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
from _common import (
    Timing,
    aws_config,
    moto_server,
    parse_args_quick,
    print_rows_against_raw,
    read_poller,
    rows_against_raw,
    timed,
    write_results,
)

from poller.aws import AwsClients
from poller.observability import configure_logging

ITEM_BYTES = 100
WRITE_CHUNK = 25
READ_LIMIT = 1000
#: Aim: poller's records/s at least this share of the raw loop's.
AIM_RATIO = 0.9
#: A measurement that has not seen every record after this long has failed.
READ_TIMEOUT = 300.0


async def create_table(endpoint: str, name: str) -> str:
    """Create ``name`` with a NEW_AND_OLD_IMAGES stream; return the stream's ARN."""
    clients = AwsClients(aws_config(endpoint))
    try:
        dynamodb = await clients.client("dynamodb")
        response = await dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        return str(response["TableDescription"]["LatestStreamArn"])
    finally:
        await clients.aclose()


async def fill_table(endpoint: str, name: str, count: int) -> Timing:
    """Write ``count`` new items of about ITEM_BYTES each (one INSERT record apiece)."""
    clients = AwsClients(aws_config(endpoint))
    try:
        dynamodb = await clients.client("dynamodb")
        with timed() as timing:
            for first in range(0, count, WRITE_CHUNK):
                requests = [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": f"item-{n:010d}"},
                                "n": {"N": str(n)},
                                "body": {"S": f"{n:010d}:".ljust(ITEM_BYTES - 30, "x")},
                            }
                        }
                    }
                    for n in range(first, min(first + WRITE_CHUNK, count))
                ]
                pending: dict[str, Any] = {name: requests}
                while pending:
                    response = await dynamodb.batch_write_item(RequestItems=pending)
                    pending = response.get("UnprocessedItems") or {}
    finally:
        await clients.aclose()
    return timing


def consume(record: Any) -> None:
    """The raw loop's per-record work: none."""


async def read_raw(endpoint: str, arn: str, expected: int) -> Timing:
    """The stream's shard read from TRIM_HORIZON until it gave every record."""
    seen = 0
    with timed() as timing:
        clients = AwsClients(aws_config(endpoint))
        try:
            streams = await clients.client("dynamodbstreams")
            description = (await streams.describe_stream(StreamArn=arn))["StreamDescription"]
            (shard,) = description["Shards"]
            response = await streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
            iterator = response["ShardIterator"]
            with anyio.fail_after(READ_TIMEOUT):
                while seen < expected:
                    page = await streams.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
                    records = page["Records"]
                    for record in records:
                        consume(record)
                    seen += len(records)
                    iterator = page["NextShardIterator"]
        finally:
            await clients.aclose()
    if seen != expected:
        raise RuntimeError(f"raw loop read {seen} records, expected {expected}")
    return timing


async def measure(
    endpoint: str, count: int, repeats: int, batch_sizes: Sequence[int]
) -> dict[str, Any]:
    name = f"benchmark-{uuid.uuid4().hex[:12]}"
    arn = await create_table(endpoint, name)
    writing = await fill_table(endpoint, name, count)
    print(
        f"table {name}: {count:,} items of ~{ITEM_BYTES} B written in {writing.wall:.1f} s "
        f"({count / writing.wall:,.0f} items/s via BatchWriteItem x{WRITE_CHUNK}); "
        "one stream shard (moto)"
    )
    samples: dict[str, list[Timing]] = {}
    for _ in range(repeats):  # alternate, so drift in machine load hits every variant
        samples.setdefault("raw", []).append(await read_raw(endpoint, arn, count))
        for batch in batch_sizes:
            timing = await read_poller(
                endpoint, arn, count, batch, label="dynamodb", time_limit=READ_TIMEOUT
            )
            samples.setdefault(f"poller-{batch}", []).append(timing)

    rows = rows_against_raw(samples, count, AIM_RATIO)
    return {
        "table": name,
        "stream": arn,
        "records": count,
        "item_bytes": ITEM_BYTES,
        "write_items_per_s": count / writing.wall,
        "repeats": repeats,
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parse_args_quick(parser, argv, {"records": 500, "repeats": 1})
    configure_logging(level="warning", stream=sys.stderr)

    with moto_server() as endpoint:
        report = anyio.run(measure, endpoint, args.records, args.repeats, args.batch_sizes)

    rows = report["results"]
    print(
        f"Median of {args.repeats} alternating runs; 'vs raw' = records/s over the raw loop's in "
        f"this run (aim >= {AIM_RATIO}). CPU us/rec counts this process only (moto runs in its "
        "own), client creation and start-up included; 'CPU vs raw' is that over the raw loop's."
    )
    print_rows_against_raw("Reading a DynamoDB stream from moto over HTTP", rows)
    path = write_results("dynamodb_streams", {**report, "aim_ratio": AIM_RATIO})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
