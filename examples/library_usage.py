"""poller as a library: a typed async handler inside your own asyncio program.

The config is built in Python instead of read from TOML, and the handler is an ``async def`` that
takes a :class:`poller.Batch` (records of one shard, in order) and returns the records it could not
process, or None. ``async with Worker(...)`` starts the mapping on the running event loop, next to
whatever else the program does, and stops it gracefully on the way out.

This example books payments into an in-memory ledger. One payment is malformed; the handler
returns it as failed. With ``idempotency`` on, poller remembers the payments of that batch that
did succeed, so the retry hands over only the failed one and nothing is booked twice.

Run it (it needs the ``embedded`` extra, for the in-process AWS endpoint)::

    python examples/library_usage.py
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from decimal import Decimal

from aiobotocore.session import get_session

from poller import (
    AwsConfig,
    Batch,
    MappingConfig,
    PollerConfig,
    Record,
    StoreConfig,
    Worker,
    WorkerConfig,
)
from poller.config import StartingPosition
from poller.observability import configure_logging

STREAM = "payments"
MAPPING_ID = "payments"

#: What the handler books: account -> balance. A real service would use its database.
ledger: defaultdict[str, Decimal] = defaultdict(Decimal)


async def handle(batch: Batch) -> list[Record] | None:
    """Book every payment of the batch; return those that could not be booked."""
    failed: list[Record] = []
    for record in batch:
        payment = json.loads(record.data)
        try:
            amount = Decimal(str(payment["amount"]))
        except (KeyError, ArithmeticError):
            failed.append(record)
            continue
        await asyncio.sleep(0)  # stands in for an awaited database write
        ledger[payment["account"]] += amount
    return failed or None


def build_config() -> PollerConfig:
    """The same settings a TOML file would hold, as Python objects (snake_case field names)."""
    return PollerConfig(
        aws=AwsConfig(
            region="us-east-1",
            endpoint_url="embedded",
            access_key_id="testing",
            secret_access_key="testing",
        ),
        store=StoreConfig(url="memory://"),
        worker=WorkerConfig(idle_poll_seconds=0.2),
        mappings=(
            MappingConfig(
                uuid=MAPPING_ID,
                event_source_arn=f"arn:aws:kinesis:us-east-1:123456789012:stream/{STREAM}",
                starting_position=StartingPosition.TRIM_HORIZON,
                batch_size=10,
                maximum_retry_attempts=1,
                retry_backoff_seconds=0.05,
                idempotency=True,
                # No destination_config: records given up on are logged and dropped, as on AWS.
            ),
        ),
    )


async def publish(endpoint_url: str, payments: list[dict[str, str]]) -> None:
    """Write the payments to the stream, keyed by account so each account's stay in order."""
    session = get_session()
    async with session.create_client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as kinesis:
        await kinesis.put_records(
            StreamName=STREAM,
            Records=[
                {"Data": json.dumps(p).encode(), "PartitionKey": p["account"]} for p in payments
            ],
        )


async def until_caught_up(worker: Worker, records: int) -> None:
    """Return once the worker has read ``records`` records and has nothing left in flight."""
    while True:
        metrics = worker.status()[MAPPING_ID]["metrics"]
        if metrics["PolledEventCount"] >= records and worker.idle:
            return
        await asyncio.sleep(0.1)


async def main() -> None:
    # The host decides how poller logs (a library never does); warnings show what was given up.
    configure_logging(level="warning")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the embedded endpoint's request log
    payments = [{"account": f"acct-{n % 3}", "amount": f"{10 + n}.50"} for n in range(11)]
    payments.insert(5, {"account": "acct-1", "amount": "twelve"})  # malformed: never books

    async with Worker(build_config(), handlers={MAPPING_ID: handle}) as worker:
        assert worker.endpoint_url is not None
        await publish(worker.endpoint_url, payments)
        # A service would keep running here; this example stops once everything is handled.
        try:
            async with asyncio.timeout(20):
                await until_caught_up(worker, len(payments))
        except TimeoutError:
            raise SystemExit(f"not caught up after 20 s: {worker.status()[MAPPING_ID]}") from None
        metrics = worker.status()[MAPPING_ID]["metrics"]

    expected = sum(Decimal(p["amount"]) for p in payments if p["amount"] != "twelve")
    booked = sum(ledger.values())
    print(
        "ledger:", ", ".join(f"{account} {balance}" for account, balance in sorted(ledger.items()))
    )
    print(
        f"booked {booked} (expected {expected}); {len(payments)} payments were handed over "
        f"{metrics['InvokedEventCount']} times in {metrics['Invocations']} handler calls"
    )
    if booked != expected:
        raise SystemExit("a payment was lost or booked twice")


if __name__ == "__main__":
    asyncio.run(main())
