"""Kafka topic on-failure destination (``kafka://TOPIC``): the failed records themselves.

As AWS does for a Kafka topic destination, each discarded record is produced again, to the
destination topic on the source's cluster: same key, value and headers, so a consumer of the
dead-letter topic can process it like the original. One header is added,
``poller-on-failure``, holding the on-failure record (``requestContext``, ``responseContext``,
``KafkaBatchInfo``) as JSON, so the failure context travels with every record.

Records of one discard are sent in order and acknowledged by all in-sync replicas before the
source commits past them; a failure raises DestinationError and the engine retries, so a record
reaches the topic at least once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from poller.destinations.base import DestinationBase
from poller.destinations.record import encode_record
from poller.engine.discard import Discard
from poller.errors import DestinationError
from poller.sources.kafka.records import KafkaRecord

__all__ = ["FAILURE_HEADER", "KafkaTopicDestination"]

log = structlog.get_logger(__name__)

#: The header that carries the on-failure record on each re-produced record.
FAILURE_HEADER = "poller-on-failure"


class KafkaTopicDestination(DestinationBase):
    """Produces discarded Kafka records to a topic of the same cluster (the records themselves,
    not the invocation event)."""

    __slots__ = ("_producer", "_topic")

    def __init__(self, uri: str, producer: Callable[[], Awaitable[AIOKafkaProducer]]) -> None:
        super().__init__(uri)
        self._topic = uri.removeprefix("kafka://")
        self._producer = producer

    async def send(self, record: Mapping[str, Any], *, discard: Discard) -> None:
        """Produce every discarded record with the failure header; DestinationError on failure."""
        failure = encode_record(record).encode()
        try:
            producer = await self._producer()
            for item in discard.records:
                if not isinstance(item, KafkaRecord):
                    raise DestinationError(
                        f"on-failure destination {self._arn} takes Kafka records only"
                    )
                headers = [(name, value or b"") for name, value in item.headers]
                headers.append((FAILURE_HEADER, failure))
                await producer.send_and_wait(
                    self._topic, value=item.value, key=item.record_key, headers=headers
                )
        except KafkaError as error:
            raise DestinationError(f"on-failure destination {self._arn}: {error}") from error
        self._sent(
            "failed records produced to the on-failure topic", discard, records=len(discard.records)
        )
