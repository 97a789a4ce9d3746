"""The records of a Kafka topic, as typed handlers receive them."""

from __future__ import annotations

from dataclasses import dataclass

from poller.records import Record

__all__ = ["KafkaRecord"]


@dataclass(frozen=True, slots=True)
class KafkaRecord(Record):
    """A Kafka record, as typed handlers receive it.

    ``partition`` is ``topic-N`` (AWS's key for a topic partition), ``position`` the offset as text
    and ``ordinal`` the offset; ``data`` is the value (``b""`` for a null value, see ``value``);
    ``arrival`` is the record's timestamp in epoch seconds. The Kafka fields come from ``native``,
    the client's record (anything with ``topic``, ``partition``, ``key``, ``value``, ``headers``,
    ``timestamp`` and ``timestamp_type``): reading a topic is millions of records a minute, and
    copying each field into the record cost more than everything else poller does with it.
    """

    @property
    def topic(self) -> str:
        """The topic the record was read from."""
        return str(self.native.topic)

    @property
    def partition_number(self) -> int:
        """The partition number within the topic."""
        return int(self.native.partition)

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        return self.ordinal

    @property
    def record_key(self) -> bytes | None:
        """The record key, or None when the producer gave none."""
        key: bytes | None = self.native.key
        return key

    @property
    def value(self) -> bytes | None:
        """The value, or None for a tombstone."""
        value: bytes | None = self.native.value
        return value

    @property
    def headers(self) -> tuple[tuple[str, bytes | None], ...]:
        """The headers in order, as (name, value) pairs; a value may be None."""
        return tuple((str(name), raw) for name, raw in (self.native.headers or ()))

    @property
    def timestamp_ms(self) -> int:
        """The record's timestamp in epoch milliseconds, as the broker returned it."""
        return int(self.native.timestamp)

    @property
    def timestamp_type(self) -> str:
        """``CREATE_TIME`` (the producer's clock) or ``LOG_APPEND_TIME`` (the broker's)."""
        return "LOG_APPEND_TIME" if self.native.timestamp_type == 1 else "CREATE_TIME"
