"""``endpoint_url = "embedded"``: an in-process AWS endpoint (moto) with the config's resources.

For local development and the demo: poller starts moto's threaded server on a free loopback port,
then creates the Kinesis streams, SQS queues, SNS topics and S3 buckets the config names, so a config
file is all it takes to see a mapping run. moto ships in the ``embedded`` extra.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
import structlog

from poller.aws import AwsClients
from poller.config import ARN, PollerConfig
from poller.errors import ConfigError

__all__ = ["EmbeddedAws", "create_resources"]

_log = structlog.get_logger("poller.runtime")


class EmbeddedAws:
    """An in-process moto server on 127.0.0.1; :attr:`endpoint_url` once started."""

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint_url: str | None = None

    def start(self) -> str:
        """Start the server and return its endpoint URL."""
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigError(
                "aws.endpoint_url: 'embedded' needs moto; install poller with the embedded "
                "extra (pip install 'poller[embedded]')"
            ) from None
        # The embedded server's HTTP access log would drown poller's own lines.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        _log.info("embedded AWS endpoint started", endpoint=self.endpoint_url)
        return self.endpoint_url

    def stop(self) -> None:
        """Stop the server (its state is lost)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


async def create_resources(config: PollerConfig, clients: AwsClients, *, shards: int = 1) -> None:
    """Create every stream and destination the config names that does not exist yet."""
    for mapping in config.mappings:
        # Kafka clusters and message brokers are not AWS APIs moto serves: they run on their own.
        source = ARN.parse(mapping.event_source_arn) if mapping.event_source_arn else None
        if source is None or source.service in ("kafka", "mq"):
            pass
        elif source.service == "kinesis":
            await _ensure_stream(clients, source.resource.removeprefix("stream/"), shards)
        elif source.service == "sqs":
            await _ensure_queue(clients, source.resource)
        elif source.service == "dynamodb":
            _log.warning(
                "embedded endpoint: create the DynamoDB table and its stream yourself (its key "
                "schema is not in the stream ARN); the mapping waits until the stream exists",
                stream=mapping.event_source_arn,
            )
        resolved = mapping.resolved()
        if resolved.on_failure_destination and not resolved.on_failure_destination.startswith(
            "kafka://"
        ):
            await ensure_destination(clients, resolved.on_failure_destination)


async def _ensure_stream(clients: AwsClients, name: str, shards: int) -> None:
    kinesis = await clients.client("kinesis")
    try:
        await kinesis.describe_stream_summary(StreamName=name)
        return
    except kinesis.exceptions.ResourceNotFoundException:
        pass
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    with anyio.fail_after(30):
        while True:
            summary = await kinesis.describe_stream_summary(StreamName=name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                break
            await anyio.sleep(0.05)
    _log.info("embedded stream created", stream=name, shards=shards)


async def _ensure_queue(clients: AwsClients, name: str) -> None:
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    await (await clients.client("sqs")).create_queue(QueueName=name, Attributes=attributes)
    _log.info("embedded queue created", queue=name)


async def ensure_destination(clients: AwsClients, arn_text: str) -> None:
    """Create the SQS queue, SNS topic or S3 bucket an on-failure ARN names."""
    arn = ARN.parse(arn_text)
    if arn.service == "sqs":
        await (await clients.client("sqs")).create_queue(QueueName=arn.resource)
    elif arn.service == "sns":
        await (await clients.client("sns")).create_topic(Name=arn.resource)
    elif arn.service == "s3":
        s3 = await clients.client("s3")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            await s3.create_bucket(Bucket=arn.resource)
