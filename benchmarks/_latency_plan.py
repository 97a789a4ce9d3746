"""What ``latency.py`` measures: each source's consumers (poller and raw loops), their paces,
aims and what bounds them, and how each source's clients and fresh resources are opened."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _latency_aws import (
    Aws,
    dynamo_table,
    kinesis_stream,
    poller_dynamodb,
    poller_kinesis,
    poller_sqs,
    raw_dynamodb,
    raw_kinesis,
    raw_sqs,
    sqs_queue,
)
from _latency_brokers import (
    active_queue,
    kafka_producer,
    kafka_topic,
    poller_kafka,
    poller_mq,
    rabbit_channel,
    rabbit_queue,
    raw_activemq,
    raw_kafka,
    raw_rabbitmq,
    stomp_client,
)
from _latency_kit import Consumer, Servers

SOURCES = ("kinesis", "dynamodb", "sqs", "kafka", "rabbitmq", "activemq")
#: Most records a backlog has per source: moto's SQS scans the whole queue, copying each message,
#: for every ReceiveMessage, so a larger backlog would measure moto rather than the consumers.
BACKLOG_CAP = {"sqs": 100}
SERVER_OF = {
    "kinesis": "moto",
    "dynamodb": "moto",
    "sqs": "moto",
    "kafka": "kafka",
    "rabbitmq": "rabbitmq",
    "activemq": "activemq",
}


@dataclass(frozen=True, slots=True)
class Variant:
    """One consumer of one source: what it is, how it paces, what bounds it, and its aim."""

    source: str
    variant: str
    pace: str
    consumer: Consumer
    #: Raw and poller variants that read at the same pace share a pair name.
    pair: str
    #: What bounds its latency when caught up (the measured parts are added to it).
    bound: str
    #: The same in a few words, for the printed table.
    short: str
    aim_ms: float | None = None
    #: A poller row at AWS's default batching window of 0.5 s (Kafka, MQ).
    default_window: bool = False
    #: A poller row whose handler is ``handler(event, context)`` rather than typed.
    lambda_style: bool = False

    @property
    def quick(self) -> bool:
        """Part of the ``--quick`` run: poller rows with a typed handler and without the
        default window (the full run has every row)."""
        return self.variant == "poller" and not (self.default_window or self.lambda_style)


#: Opens a source's clients for its whole run; yields a factory of fresh resources and the list
#: the raw loops add their read calls' durations to.
Opener = Callable[[Servers], contextlib.AbstractAsyncContextManager[tuple[Any, list[float]]]]


def plan() -> dict[str, tuple[Opener, list[Variant]]]:
    """Every source's opener and variants."""
    kinesis_1 = (
        "moto's GetRecords time, then the read pace: a caught-up shard is read once a second"
    )
    kinesis_5 = "moto's GetRecords time, then the read pace: a caught-up shard is read every 0.2 s"
    return {
        "kinesis": (
            _aws(kinesis_stream),
            [
                Variant(
                    "kinesis",
                    "raw loop",
                    "1 read/s per shard",
                    raw_kinesis(1.0),
                    "k1",
                    f"{kinesis_1} (a record waits 0.5 s on average)",
                    short="read pace 1 s + GetRecords",
                ),
                Variant(
                    "kinesis",
                    "poller",
                    "1 read/s per shard",
                    poller_kinesis(None),
                    "k1",
                    f"{kinesis_1} (Lambda's idle pace, poller's default)",
                    short="read pace 1 s + GetRecords",
                ),
                Variant(
                    "kinesis",
                    "raw loop",
                    "5 reads/s per shard",
                    raw_kinesis(0.2),
                    "k5",
                    f"{kinesis_5} (a record waits 0.1 s on average)",
                    short="read pace 0.2 s + GetRecords",
                ),
                Variant(
                    "kinesis",
                    "poller",
                    "5 reads/s per shard",
                    poller_kinesis(0.2),
                    "k5",
                    f"{kinesis_5} ([worker] idle_poll_seconds = 0.2, the Kinesis limit)",
                    aim_ms=150,
                    short="read pace 0.2 s + GetRecords",
                ),
                Variant(
                    "kinesis",
                    "poller",
                    "5 reads/s per shard, Lambda-style handler",
                    poller_kinesis(0.2, lambda_style=True),
                    "k5",
                    f"{kinesis_5}; the handler is handler(event, context) in a worker thread, "
                    "so the event is rendered as AWS's and the batch crosses to a thread",
                    aim_ms=150,
                    short="read pace 0.2 s + GetRecords",
                    lambda_style=True,
                ),
            ],
        ),
        "dynamodb": (
            _aws(dynamo_table),
            [
                Variant(
                    "dynamodb",
                    "raw loop",
                    "4 reads/s per shard",
                    raw_dynamodb(0.25),
                    "d",
                    "moto's GetRecords time, then a read every 0.25 s (0.125 s on average)",
                    short="read pace 0.25 s + GetRecords",
                ),
                Variant(
                    "dynamodb",
                    "poller",
                    "4 reads/s per shard",
                    poller_dynamodb(),
                    "d",
                    "moto's GetRecords time, then the default idle pace of 0.25 s between "
                    "reads (Lambda's 4 reads a second)",
                    short="read pace 0.25 s + GetRecords",
                ),
            ],
        ),
        "sqs": (
            _aws(sqs_queue),
            [
                Variant(
                    "sqs",
                    "raw loop",
                    "long poll",
                    raw_sqs(),
                    "s",
                    "moto's request handling: a waiting ReceiveMessage is woken as soon as a "
                    "message is added, so what is left is SendMessage's own time and the "
                    "receive's response",
                    short="moto's send/receive time",
                ),
                Variant(
                    "sqs",
                    "poller",
                    "long poll",
                    poller_sqs(),
                    "s",
                    "moto's request handling, as in the raw loop: five pollers each hold a "
                    "20 s long poll that moto wakes when a message is added; the batching "
                    "window is 0 (AWS's SQS default), so the receive is handed over at once",
                    aim_ms=50,
                    short="moto's send/receive time",
                ),
                Variant(
                    "sqs",
                    "poller",
                    "long poll, Lambda-style handler",
                    poller_sqs(lambda_style=True),
                    "s",
                    "moto's request handling, as above; the handler is handler(event, context) "
                    "in a worker thread, so the event is rendered as AWS's and the batch "
                    "crosses to a thread",
                    aim_ms=50,
                    short="moto's send/receive time",
                    lambda_style=True,
                ),
            ],
        ),
        "kafka": (
            _kafka,
            [
                Variant(
                    "kafka",
                    "raw loop",
                    "getmany, fetch wait 500 ms",
                    raw_kafka(),
                    "f",
                    "the broker's answer to a waiting fetch: tansu answers a fetch that found "
                    "nothing when its wait is over, not when a record lands, so a record waits "
                    "for the fetch in progress (bounded by fetch_max_wait, aiokafka's default "
                    "500 ms; compare the 10 ms row)",
                    short="tansu's fetch wait",
                ),
                Variant(
                    "kafka",
                    "raw loop",
                    "getmany, fetch wait 10 ms",
                    raw_kafka(fetch_wait_ms=10),
                    "f10",
                    "the consumer asks again every 10 ms: when this row is far below the one "
                    "with a 500 ms fetch wait, the broker holds an empty fetch instead of "
                    "answering it when a record lands",
                    short="fetch wait 10 ms",
                ),
                Variant(
                    "kafka",
                    "poller",
                    "window 0 s",
                    poller_kafka(0.0),
                    "f",
                    "the broker's answer to a waiting fetch, as in the raw loop: poller's consumer "
                    "keeps aiokafka's 500 ms fetch_max_wait and tansu answers an empty fetch "
                    "only when its wait is over (Apache Kafka answers a waiting fetch as soon as "
                    "a record lands); window 0 hands a record over as soon as it is read",
                    aim_ms=50,
                    short="tansu's fetch wait",
                ),
                Variant(
                    "kafka",
                    "poller",
                    "window 0.5 s (default)",
                    poller_kafka(None),
                    "f",
                    "MaximumBatchingWindowInSeconds 0.5 s (AWS's Kafka default): a batch "
                    "short of BatchSize waits 0.5 s from its first record",
                    aim_ms=50,
                    default_window=True,
                    short="batching window 0.5 s",
                ),
            ],
        ),
        "rabbitmq": (
            _rabbitmq,
            [
                Variant(
                    "rabbitmq",
                    "raw loop",
                    "push, prefetch 200",
                    raw_rabbitmq(),
                    "r",
                    "the broker pushes each message to the consumer (AMQP basic.deliver)",
                    short="broker push",
                ),
                Variant(
                    "rabbitmq",
                    "poller",
                    "push, window 0 s",
                    poller_mq(0.0),
                    "r",
                    "the broker's push; window 0 hands over what arrived at once",
                    short="broker push",
                ),
                Variant(
                    "rabbitmq",
                    "poller",
                    "push, window 0.5 s (default)",
                    poller_mq(None),
                    "r",
                    "MaximumBatchingWindowInSeconds 0.5 s (AWS's MQ default) from a batch's "
                    "first message",
                    default_window=True,
                    short="batching window 0.5 s",
                ),
            ],
        ),
        "activemq": (
            _activemq,
            [
                Variant(
                    "activemq",
                    "raw loop",
                    "push, prefetch 200",
                    raw_activemq(),
                    "a",
                    "the broker pushes each message to the subscription (STOMP MESSAGE)",
                    short="broker push",
                ),
                Variant(
                    "activemq",
                    "poller",
                    "push, window 0 s",
                    poller_mq(0.0),
                    "a",
                    "the broker's push; window 0 hands over what arrived at once",
                    short="broker push",
                ),
            ],
        ),
    }


def _aws(new: Callable[[Aws, bool], Awaitable[Any]]) -> Opener:
    @contextlib.asynccontextmanager
    async def opened(running: Servers) -> AsyncIterator[tuple[Any, list[float]]]:
        async with Aws.opened(await running.endpoint("moto")) as aws:
            yield (lambda from_start: new(aws, from_start)), aws.read_ms

    return opened


@contextlib.asynccontextmanager
async def _kafka(running: Servers) -> AsyncIterator[tuple[Any, list[float]]]:
    bootstrap = await running.endpoint("kafka")
    async with kafka_producer(bootstrap) as producer:
        yield (lambda from_start: kafka_topic(bootstrap, producer, from_start)), []


@contextlib.asynccontextmanager
async def _rabbitmq(running: Servers) -> AsyncIterator[tuple[Any, list[float]]]:
    url = await running.endpoint("rabbitmq")
    async with rabbit_channel(url) as channel:
        yield (lambda from_start: rabbit_queue(url, channel, from_start)), []


@contextlib.asynccontextmanager
async def _activemq(running: Servers) -> AsyncIterator[tuple[Any, list[float]]]:
    url = await running.endpoint("activemq")
    async with stomp_client(url) as client:

        async def new(from_start: bool) -> Any:
            return active_queue(url, client, from_start)

        yield new, []
