"""``endpoint_url = "embedded"``: an in-process AWS endpoint (moto) with the config's resources.

For local development and the demo: poller starts moto's threaded server on a free loopback port,
then creates the Kinesis streams, SQS queues, SNS topics and S3 buckets the config names, so a config
file is all it takes to see a mapping run. moto ships in the ``embedded`` extra.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import structlog

from poller.aws import AwsClients
from poller.config.fields import ARN
from poller.config.settings import PollerConfig
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
    """Create every source and destination the config names that does not exist yet.

    Each source's spec says what it creates (a Kinesis stream with ``shards`` shards, an SQS
    queue); Kafka clusters and message brokers are not AWS APIs moto serves: they run on their own.
    """
    for mapping in config.mappings:
        resolved = mapping.resolved()
        if resolved.event_source_arn:
            await mapping.spec.set_up_embedded(resolved, clients, shards)
        destination = resolved.on_failure_destination
        if destination and "://" not in destination:
            await ensure_destination(clients, destination)


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
