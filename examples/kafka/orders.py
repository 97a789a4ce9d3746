"""A typed Kafka handler: one partition's records, in offset order.

It books each order (a JSON value) and returns the records it could not parse. poller then retries
from the first of them (with bisection and up to 3 retries, per ``poller.toml``) and finally
produces them to the ``orders-dlt`` topic; the records before them are committed.
"""

from __future__ import annotations

import json
import logging

from poller import Batch, KafkaRecord

log = logging.getLogger("orders")


def handle(batch: Batch) -> list[KafkaRecord] | None:
    failed: list[KafkaRecord] = []
    for record in batch:
        assert isinstance(record, KafkaRecord)
        try:
            order = json.loads(record.data)
        except ValueError:
            failed.append(record)
            continue
        log.info("booked %s from %s offset %d", order.get("id"), record.partition, record.offset)
    return failed or None
