"""AWS clients for sources and destinations: one aiobotocore session per worker.

Clients are created lazily per service, share the ``[aws]`` settings (region, endpoint, static
credentials for emulators) and are closed together by :meth:`AwsClients.aclose`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.utils import parse_timestamp

from poller.config.settings import AwsConfig

__all__ = ["AwsClients", "epoch_seconds"]

#: Services whose clients return timestamps as epoch seconds (floats), not datetimes. Stream
#: records carry one timestamp each, and botocore's timezone-aware datetime parsing of it was the
#: largest single cost of reading a stream; the sources accept floats.
RAW_TIMESTAMP_SERVICES = frozenset({"kinesis", "dynamodbstreams"})


def epoch_seconds(value: Any) -> float:
    """botocore timestamp parser returning epoch seconds, for numbers and ISO strings alike."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(parse_timestamp(value).timestamp())


class AwsClients:
    """Creates and caches aiobotocore clients for the services a worker uses."""

    def __init__(
        self,
        aws: AwsConfig,
        *,
        endpoint_url: str | None = None,
        wrap: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self._aws = aws
        # The client-call seam: ``wrap(service, client)`` may return a wrapper (fault injection in
        # tests, instrumentation in a host service) that every source and destination then uses.
        self._wrap = wrap
        # "embedded" is resolved by the runtime into a real URL before clients are created.
        self._endpoint_url = endpoint_url if endpoint_url is not None else aws.endpoint_url
        if self._endpoint_url == "embedded":
            raise ValueError("the embedded endpoint must be started before clients are created")
        self._session = get_session()
        self._raw_timestamp_session = get_session()
        self._raw_timestamp_session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=epoch_seconds
        )
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = anyio.Lock()

    @property
    def region(self) -> str:
        """The region clients talk to."""
        return self._aws.region

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint clients talk to; None for real AWS."""
        return self._endpoint_url

    async def client(self, service: str) -> Any:
        """The shared client for ``service`` ("kinesis", "sqs", "sns", "s3", ...)."""
        async with self._lock:
            existing = self._clients.get(service)
            if existing is not None:
                return existing
            kwargs: dict[str, Any] = {
                "region_name": self._aws.region,
                "config": AioConfig(
                    retries={"max_attempts": 2, "mode": "standard"},
                    max_pool_connections=64,
                    connect_timeout=5,
                    read_timeout=30,
                ),
            }
            if self._endpoint_url:
                kwargs["endpoint_url"] = self._endpoint_url
            if self._aws.access_key_id and self._aws.secret_access_key:
                kwargs["aws_access_key_id"] = self._aws.access_key_id
                kwargs["aws_secret_access_key"] = self._aws.secret_access_key
            elif self._aws.embedded:
                # The in-process server takes any signature; needing real credentials for it
                # would make the quick start fail on a machine that has none.
                kwargs["aws_access_key_id"] = "embedded"
                kwargs["aws_secret_access_key"] = "embedded"
            session = (
                self._raw_timestamp_session if service in RAW_TIMESTAMP_SERVICES else self._session
            )
            create_client: Any = session.create_client
            client = await self._stack.enter_async_context(create_client(service, **kwargs))
            if self._wrap is not None:
                client = self._wrap(service, client)
            self._clients[service] = client
            return client

    async def aclose(self) -> None:
        """Close every client created so far."""
        self._clients.clear()
        await self._stack.aclose()
