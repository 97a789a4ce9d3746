"""The demo's order handler: an ordinary Lambda function for a Kinesis event source mapping.

Nothing here is specific to poller: the same file deploys to AWS Lambda unchanged. Each Kinesis
record carries one order as JSON, for example ``{"order_id": "o-1001", "customer": "customer-alice",
"amount": 42.5}``. Two kinds of bad input show the two ways a batch can fail:

* An order with a negative amount is *poison*: it will never succeed, however often it is retried.
  The handler reports it in ``batchItemFailures`` (the mapping has ``ReportBatchItemFailures``), so
  the records before it are done and only the rest is retried.
* A record that is not JSON at all makes ``json.loads`` raise. An unhandled exception fails the
  whole batch; with ``BisectBatchOnFunctionError`` the batch is split in halves until the bad
  record is alone, so the good records around it still get through.

Either way, once ``MaximumRetryAttempts`` is spent the remaining records go to the on-failure
destination and the shard moves on.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def handle(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Process a batch of orders from one shard, in order; report the first one that fails."""
    for record in event["Records"]:
        kinesis = record["kinesis"]
        # Kinesis data arrives base64-encoded. A payload that is not JSON raises here, on purpose:
        # the batch fails as a whole and bisection isolates the record.
        order = json.loads(base64.b64decode(kinesis["data"]))
        if order["amount"] < 0:
            logger.warning("order %s has a negative amount; rejecting it", order["order_id"])
            # A shard is processed in order and the retry starts at the lowest failed record, so
            # there is no point going on past it: report it and stop here.
            return {"batchItemFailures": [{"itemIdentifier": kinesis["sequenceNumber"]}]}
        _process(order)
    return {"batchItemFailures": []}


def _process(order: dict[str, Any]) -> None:
    """Stand-in for the real work (charging a card, writing to a database)."""
    logger.info(
        "order %s: charged %.2f to %s", order["order_id"], order["amount"], order["customer"]
    )
