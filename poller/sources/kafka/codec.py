"""Kafka records in AWS's shapes: the ``aws:kafka`` / ``SelfManagedKafka`` event, item
identifiers (``{"partition": "topic-N", "offset": N}``), ``KafkaBatchInfo``."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from poller.records import Record
from poller.sources.kafka.records import KafkaRecord
from poller.timestamps import iso_millis

__all__ = ["KafkaCodec"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class KafkaCodec:
    """Renders one topic's records as Lambda hands them to a function (an ``EventCodec``)."""

    def __init__(self, bootstrap_servers: tuple[str, ...], event_source_arn: str = "") -> None:
        self.event_source_arn = event_source_arn
        servers = ",".join(bootstrap_servers)
        self._event_head: dict[str, Any] = (
            {
                "eventSource": "aws:kafka",
                "eventSourceArn": event_source_arn,
                "bootstrapServers": servers,
            }
            if event_source_arn
            else {"eventSource": "SelfManagedKafka", "bootstrapServers": servers}
        )

    def _render_record(self, record: Record) -> dict[str, Any]:
        # Read straight from the client's record: this runs once per record per invocation.
        message = record.native
        rendered: dict[str, Any] = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": record.ordinal,
            "timestamp": message.timestamp,
            "timestampType": "LOG_APPEND_TIME" if message.timestamp_type == 1 else "CREATE_TIME",
        }
        key = message.key
        if key is not None:
            rendered["key"] = _b64(key)
        value = message.value
        rendered["value"] = None if value is None else _b64(value)
        headers = message.headers
        rendered["headers"] = [{str(n): list(v or b"")} for n, v in headers] if headers else []
        return rendered

    def render_event(self, records: Sequence[Record]) -> dict[str, Any]:
        """AWS's Kafka event: records grouped under ``topic-partition``."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            grouped.setdefault(record.partition, []).append(self._render_record(record))
        return {**self._event_head, "records": grouped}

    def item_identifier(self, record: Record) -> tuple[str, int]:
        """``{"partition": "topic-N", "offset": N}`` as the key the engine compares."""
        return (record.partition, record.ordinal)

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """``KafkaBatchInfo``: per partition the first and last offsets and timestamps."""
        infos: dict[str, dict[str, Any]] = {}
        for record in records:
            assert isinstance(record, KafkaRecord)
            info = infos.get(record.partition)
            if info is None:
                info = infos[record.partition] = {
                    "firstRecordOffset": str(record.ordinal),
                    "firstRecordTimestamp": iso_millis(record.timestamp_ms / 1000),
                }
            info["lastRecordOffset"] = str(record.ordinal)
            info["lastRecordTimestamp"] = iso_millis(record.timestamp_ms / 1000)
        body: dict[str, Any] = {"batchSize": len(records)}
        if self.event_source_arn:
            body["eventSourceArn"] = self.event_source_arn
        body["bootstrapServers"] = self._event_head["bootstrapServers"]
        body["payloadSize"] = len(json.dumps(self.render_event(records), separators=(",", ":")))
        body["recordsInfo"] = infos
        return "KafkaBatchInfo", body
