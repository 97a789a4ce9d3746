"""`make demo`: run the orders mapping of poller.toml on the embedded endpoint and explain it.

What it does, in order:

1. starts a Worker for poller.toml, which starts an in-process AWS endpoint and creates the
   4-shard stream ``orders`` and the on-failure queue ``orders-dlq``;
2. writes 40 orders from 8 customers (the partition key), so each shard gets the orders of two
   customers; one order has a negative amount and one is not JSON at all;
3. waits until every shard's checkpoint has reached the last record written to it;
4. reads the on-failure records from the queue and prints, per shard, every handler call in the
   order it happened, the checkpoint and what went to the queue;
5. checks that every record was either processed or recorded in the queue, and exits 1 if not.

The handler is handlers.py next to this file, wrapped so that every call and its answer are
recorded. Run it from anywhere: ``python examples/demo/run_demo.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import handlers
from aiobotocore.session import get_session

from poller import PollerConfig, Worker, load_config
from poller.observability import configure_logging

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_sqs import SQSClient

HERE = Path(__file__).resolve().parent
MAPPING_ID = "orders"
STREAM = "orders"
DLQ = "orders-dlq"
SHARDS = 4
#: The partition keys. Kinesis hashes them onto shards: two customers land on each of the 4.
CUSTOMERS = (
    "customer-alice",
    "customer-bob",
    "customer-carol",
    "customer-dave",
    "customer-erin",
    "customer-frank",
    "customer-grace",
    "customer-heidi",
)
ORDER_COUNT = 40
#: A refund that slipped into the orders stream: the handler reports it in batchItemFailures.
POISON_ORDER = "o-1011"
#: Sent by an old producer that still writes XML: json.loads raises on it.
MALFORMED_ORDER = "o-1022"
#: Upper bound for the records to settle; the demo normally needs two or three seconds.
SETTLE_TIMEOUT = 15.0
#: How long the worker must stay idle, every checkpoint at its end, before the run counts as over.
QUIET_SECONDS = 0.3

#: A record's identity: (shard id, sequence number). Sequence numbers are unique within a shard.
Key = tuple[str, str]


# --- what is written -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    """One order as written to the stream."""

    order_id: str
    customer: str
    data: bytes


def make_orders() -> list[Order]:
    """40 orders, customers taking turns, with one poison and one malformed order among them."""
    orders = []
    for index in range(ORDER_COUNT):
        order_id = f"o-{1001 + index}"
        customer = CUSTOMERS[index % len(CUSTOMERS)]
        amount = round(5 + (index * 37) % 120 + 0.99, 2)
        if order_id == POISON_ORDER:
            amount = -amount
        if order_id == MALFORMED_ORDER:
            data = f'<order id="{order_id}" customer="{customer}" amount="{amount}"/>'.encode()
        else:
            body = {"order_id": order_id, "customer": customer, "amount": amount}
            data = json.dumps(body).encode()
        orders.append(Order(order_id, customer, data))
    return orders


@dataclass(frozen=True, slots=True)
class Written:
    """An order and where Kinesis put it."""

    order: Order
    shard: str
    sequence_number: str

    @property
    def key(self) -> Key:
        return (self.shard, self.sequence_number)


async def write_orders(kinesis: KinesisClient, orders: Sequence[Order]) -> list[Written]:
    """Write every order in one PutRecords call; fail if Kinesis refused any of them."""
    response = await kinesis.put_records(
        StreamName=STREAM,
        Records=[{"Data": order.data, "PartitionKey": order.customer} for order in orders],
    )
    refused = [entry for entry in response["Records"] if "ErrorCode" in entry]
    if refused:
        raise DemoFailed(f"Kinesis refused {len(refused)} records: {refused[0]['ErrorMessage']}")
    return [
        Written(order, entry["ShardId"], entry["SequenceNumber"])
        for order, entry in zip(orders, response["Records"], strict=True)
    ]


class DemoFailed(Exception):
    """Something the demo relies on did not hold."""


# --- what the handler saw ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One invocation of the handler: the records it got and what it answered."""

    shard: str
    sequence_numbers: tuple[str, ...]
    #: Item identifiers the handler returned in batchItemFailures.
    reported_failed: tuple[str, ...]
    #: The exception it raised, as "Type: message", or None when it returned.
    error: str | None

    @property
    def keys(self) -> tuple[Key, ...]:
        return tuple((self.shard, number) for number in self.sequence_numbers)

    @property
    def succeeded(self) -> tuple[Key, ...]:
        """What this call settled: the records before the first one reported (none on error)."""
        if self.error is not None:
            return ()
        done = []
        for key in self.keys:
            if key[1] in self.reported_failed:
                break
            done.append(key)
        return tuple(done)


class RecordingHandler:
    """A Lambda-style handler that calls handlers.handle and records every call.

    poller runs synchronous handlers in worker threads (one call per shard at a time, shards in
    parallel), so the list is guarded by a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        records = event["Records"]
        shard = records[0]["eventID"].partition(":")[0]  # "shardId-000000000001:<sequence>"
        numbers = tuple(record["kinesis"]["sequenceNumber"] for record in records)
        try:
            response = handlers.handle(event, context)
        except Exception as error:
            self._add(Call(shard, numbers, (), f"{type(error).__name__}: {error}"))
            raise
        failures = (response or {}).get("batchItemFailures") or ()
        self._add(Call(shard, numbers, tuple(f["itemIdentifier"] for f in failures), None))
        return response

    def _add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


# --- waiting, and reading the queue --------------------------------------------------------------


async def wait_until_settled(
    worker: Worker, last_written: Mapping[str, str], within: float
) -> tuple[dict[str, Any], str | None]:
    """Wait until each shard's checkpoint is its last record and the worker stays idle.

    A checkpoint only moves past records that are done (processed or sent to the on-failure
    queue), so a checkpoint at the last record written means the whole shard is settled.
    Returns the mapping's status, and what was still missing if ``within`` seconds ran out first.
    """
    deadline = time.monotonic() + within
    quiet_since: float | None = None
    while True:
        status: dict[str, Any] = worker.status()[MAPPING_ID]
        partitions = status["partitions"]
        lagging = {
            shard: partitions.get(shard, {})
            for shard, last in last_written.items()
            if partitions.get(shard, {}).get("checkpoint") != last
        }
        now = time.monotonic()
        if not lagging and worker.idle:
            quiet_since = now if quiet_since is None else quiet_since
            if now - quiet_since >= QUIET_SECONDS:
                return status, None
        else:
            quiet_since = None
        if now >= deadline:
            details = "; ".join(
                f"{shard} checkpoint {p.get('checkpoint')} (last written {last_written[shard]}, "
                f"retrying: {p.get('blocked')})"
                for shard, p in sorted(lagging.items())
            )
            return status, (
                f"records not settled within {within:.0f} s: "
                + (details or "checkpoints at the end but the worker is not idle")
            )
        await asyncio.sleep(0.05)


async def read_on_failure_records(sqs: SQSClient, expected_records: int) -> list[dict[str, Any]]:
    """The on-failure records in the queue, read until they cover ``expected_records`` records."""
    queue_url = (await sqs.get_queue_url(QueueName=DLQ))["QueueUrl"]
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while sum(r["KinesisBatchInfo"]["batchSize"] for r in found) < expected_records:
        if time.monotonic() >= deadline:
            break
        response = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=1
        )
        found.extend(json.loads(message["Body"]) for message in response.get("Messages", ()))
    return found


# --- the report ----------------------------------------------------------------------------------

LEGEND = """\
How to read it. "why": a new batch; a retry of records that failed (MaximumRetryAttempts = 2
allows two); or one half of a batch that raised (BisectBatchOnFunctionError; no retry used).
"reported": named in batchItemFailures; the records before it are done. "-> DLQ": retries used
up, the records went to the on-failure queue. The checkpoint covers every record up to it."""


def describe_calls(
    calls: Sequence[Call], names: Mapping[Key, str], discarded: set[Key]
) -> list[str]:
    """One line per call of one shard: what it got, why it got it, and what it answered."""
    lines = [f"  {'call':>4}  {'records handed over':<30}{'why':<21}result"]
    retries: list[int] = []  # how many retries each call's records had used, as the engine counts
    for index, call in enumerate(calls):
        keys = set(call.keys)
        # The latest earlier call that had any of these records is the one this call follows up.
        previous = next((i for i in range(index - 1, -1, -1) if keys & set(calls[i].keys)), None)
        if previous is None:
            retries.append(0)
            why = "new batch"
        elif calls[previous].error is not None and keys < set(calls[previous].keys):
            retries.append(retries[previous])
            why = f"half of call {previous + 1}"
        else:
            retries.append(retries[previous] + 1)
            why = f"retry {retries[-1]}"
            if keys != set(calls[previous].keys):
                why += f" from {names.get(call.keys[0], call.keys[0][1])}"
        if call.error is not None:
            result = f"raised {call.error.partition(':')[0]}"
        elif call.reported_failed:
            reported = " ".join(names.get((call.shard, n), n) for n in call.reported_failed)
            result = f"reported {reported}"
        else:
            result = "ok"
        if keys & discarded and not any(keys & set(c.keys) for c in calls[index + 1 :]):
            result += " -> DLQ"
        orders = " ".join(names.get(key, key[1]) for key in call.keys)
        lines.append(f"  {index + 1:>4}  {orders:<30}{why:<21}{result}")
    return lines


def describe_on_failure(record: Mapping[str, Any], names: Mapping[Key, str]) -> list[str]:
    """The fields of an on-failure record that say what was given up and why."""
    context = record["requestContext"]
    info = record["KinesisBatchInfo"]
    shard = info["shardId"]
    first = names.get((shard, info["startSequenceNumber"]), "?")
    last = names.get((shard, info["endSequenceNumber"]), "?")
    return [
        f"    {first if first == last else f'{first} .. {last}'}: condition {context['condition']},"
        f" approximateInvokeCount {context['approximateInvokeCount']},"
        f" batchSize {info['batchSize']}",
        f"      shardId {shard}",
        f"      startSequenceNumber {info['startSequenceNumber']}",
        f"      endSequenceNumber {info['endSequenceNumber']}",
    ]


def check_order(
    shard: str, records: Sequence[Written], calls: Sequence[Call], discarded: set[Key]
) -> list[str]:
    """A shard's records reach the handler in stream order, and never ahead of an unsettled one."""
    first_seen: list[Key] = []
    for call in calls:
        first_seen += [key for key in call.keys if key not in first_seen]
    if first_seen != [w.key for w in records][: len(first_seen)]:
        return [f"{shard}: records were handed over out of order"]
    # The call that settled each record: the first that processed it, or the last that had it
    # before it went to the DLQ.
    settled_by: dict[Key, int] = {}
    for index, call in enumerate(calls):
        for key in call.succeeded:
            settled_by.setdefault(key, index)
        for key in call.keys:
            if key in discarded:
                settled_by[key] = index
    names = {w.key: w.order.order_id for w in records}
    for index, call in enumerate(calls):
        start = int(call.sequence_numbers[0])
        for w in records:
            if int(w.sequence_number) < start and settled_by.get(w.key, index) >= index:
                return [
                    f"{shard}: call {index + 1} got {names[call.keys[0]]} while "
                    f"{w.order.order_id}, earlier in the shard, was not settled"
                ]
    return []


def report(
    written: Sequence[Written],
    calls: Sequence[Call],
    status: Mapping[str, Any],
    on_failure: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Print the per-shard report and the summary; return the inconsistencies found."""
    problems: list[str] = []
    names = {w.key: w.order.order_id for w in written}
    by_shard: dict[str, list[Written]] = {}
    for w in sorted(written, key=lambda w: int(w.sequence_number)):
        by_shard.setdefault(w.shard, []).append(w)

    handed_over = {key for call in calls for key in call.keys}
    succeeded = {key for call in calls for key in call.succeeded}
    discarded: set[Key] = set()
    for record in on_failure:
        info = record["KinesisBatchInfo"]
        low, high = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
        covered = [
            w.key
            for w in by_shard.get(info["shardId"], [])
            if low <= int(w.sequence_number) <= high
        ]
        if len(covered) != info["batchSize"]:
            problems.append(
                f"an on-failure record for {info['shardId']} says batchSize {info['batchSize']} "
                f"but its sequence number range holds {len(covered)} of the records written"
            )
        discarded.update(covered)

    print(LEGEND)
    for shard, records in sorted(by_shard.items()):
        customers = ", ".join(sorted({w.order.customer for w in records}))
        shard_calls = [call for call in calls if call.shard == shard]
        print(f"\n{shard}: {len(records)} orders from {customers}")
        for line in describe_calls(shard_calls, names, discarded):
            print(line)

        last = records[-1]
        checkpoint = status["partitions"].get(shard, {}).get("checkpoint")
        if checkpoint == last.sequence_number:
            print(
                f"  checkpoint: sequence number {checkpoint}, the last record ({last.order.order_id})"
            )
        else:
            print(f"  checkpoint: {checkpoint}, NOT the last record ({last.sequence_number})")
            problems.append(f"{shard}: the checkpoint did not reach the last record written")
        mine = [r for r in on_failure if r["KinesisBatchInfo"]["shardId"] == shard]
        print(f"  sent to {DLQ}: {len(mine) or 'nothing'}")
        for record in mine:
            for line in describe_on_failure(record, names):
                print(line)

        problems += check_order(shard, records, shard_calls, discarded)

    for w in written:
        where = f"{w.order.order_id} ({w.shard}, sequence number {w.sequence_number})"
        if w.key not in handed_over:
            problems.append(f"{where} was never handed to the handler")
        if w.key in succeeded and w.key in discarded:
            problems.append(f"{where} was processed and also sent to the DLQ")
        if w.key not in succeeded and w.key not in discarded:
            problems.append(f"{where} was neither processed nor sent to the DLQ")
    in_queue = sum(r["KinesisBatchInfo"]["batchSize"] for r in on_failure)
    delivered = status["metrics"]["OnFailureDestinationDeliveredEventCount"]
    if in_queue != delivered:
        problems.append(f"the worker sent {delivered} records to {DLQ}; the queue has {in_queue}")

    print(
        f"\nSummary: {len(written)} orders written to {len(by_shard)} shards, "
        f"{len(handed_over)} handed to the handler in {len(calls)} calls:\n"
        f"         {len(succeeded)} processed, {len(discarded)} sent to {DLQ} "
        f"({len(on_failure)} on-failure record{'' if len(on_failure) == 1 else 's'})."
    )
    return problems


# --- main ----------------------------------------------------------------------------------------


async def run(config: PollerConfig) -> list[str]:
    """Run the demo; return the inconsistencies found (empty when all is well)."""
    recorder = RecordingHandler()
    # A handler registered under the mapping's UUID takes the place of its Handler setting.
    async with Worker(config, handlers={MAPPING_ID: recorder}, embedded_shards=SHARDS) as worker:
        print(f"Embedded AWS endpoint at {worker.endpoint_url}")
        client_settings: dict[str, Any] = {
            "region_name": config.aws.region,
            "endpoint_url": worker.endpoint_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        session = get_session()
        async with (
            session.create_client("kinesis", **client_settings) as kinesis,
            session.create_client("sqs", **client_settings) as sqs,
        ):
            started = time.monotonic()
            written = await write_orders(kinesis, make_orders())
            last_written: dict[str, str] = {}
            for w in sorted(written, key=lambda w: int(w.sequence_number)):
                last_written[w.shard] = w.sequence_number
            print(
                f"Wrote {len(written)} orders to {len(last_written)} shards of stream {STREAM!r}. "
                "poller's warnings while it works:\n"
            )
            status, not_settled = await wait_until_settled(worker, last_written, SETTLE_TIMEOUT)
            elapsed = time.monotonic() - started
            delivered = status["metrics"]["OnFailureDestinationDeliveredEventCount"]
            on_failure = await read_on_failure_records(sqs, delivered)
        # Leaving the block stops the worker gracefully, and the embedded endpoint with it.
    if not_settled:
        print(f"\nStopped after {elapsed:.1f} s: {not_settled}")
    else:
        print(
            f"\nEvery record settled after {elapsed:.1f} s. What the handler saw, shard by shard:"
        )
    problems = report(written, recorder.calls, status, on_failure)
    return ([not_settled] if not_settled else []) + problems


def main() -> int:
    configure_logging(level="warning")  # poller's own log lines: warnings and errors only
    # The handler logs with the standard library; show its warnings, keep the embedded
    # endpoint's per-request lines out.
    logging.basicConfig(level=logging.WARNING, format="handler: %(message)s", stream=sys.stdout)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    config = load_config(HERE / "poller.toml")
    try:
        problems = asyncio.run(run(config))
    except DemoFailed as error:
        print(f"\ndemo FAILED: {error}", file=sys.stderr)
        return 1
    if problems:
        print(f"\ndemo FAILED: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("OK: every record was either processed or recorded in the DLQ.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
