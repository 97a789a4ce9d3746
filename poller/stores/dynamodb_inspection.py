"""Reading the DynamoDB store without changing it: what ``poller status`` shows.

Checkpoints are one strongly consistent Query (``pk = "checkpoint#MAPPING"``). Idempotency records
sit under one partition key per (mapping, partition), and a Kafka or queue mapping's partitions
are not listed anywhere in the table, so counting them is a Scan of the whole table, filtered to
the mapping's records that have not expired: it reads (and is billed for) every item, which is
fine for an operator's look and not for a loop. It needs ``dynamodb:Scan`` besides the actions
a worker needs. :meth:`DynamoDBInspection.open_existing` checks the table is there and never
creates it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from poller.aws_calls import error_code
from poller.engine.state import Checkpoint
from poller.errors import StoreError

__all__ = ["DynamoDBInspection", "checkpoint_from_item"]


def checkpoint_from_item(item: dict[str, Any]) -> Checkpoint:
    """The checkpoint a ``checkpoint#MAPPING`` item holds."""
    return Checkpoint(
        position=item["position"]["S"],
        ordinal=int(item["ordinal"]["S"]),
        finished=item["finished"]["BOOL"],
        opened_at=float(item["opened_at"]["N"]) if "opened_at" in item else None,
    )


class DynamoDBInspection:
    """The read-only half of :class:`~poller.stores.dynamodb.DynamoDBStore`'s
    :class:`~poller.stores.inspection.InspectableStore`."""

    table: str
    _call: Callable[..., Awaitable[Any]]
    _dynamodb: Callable[[], Awaitable[Any]]
    _error: Callable[[str, BaseException], StoreError]

    async def open_existing(self) -> None:
        """Check the table exists; a missing one is a :class:`~poller.errors.StoreError` saying
        so (nothing is created)."""
        client = await self._dynamodb()
        try:
            await client.describe_table(TableName=self.table)
        except Exception as error:
            if error_code(error) == "ResourceNotFoundException":
                raise StoreError(
                    f"dynamodb store: no table {self.table!r}: no worker has run with this config"
                    " yet"
                ) from None
            raise self._error("describe the table", error) from None

    async def list_checkpoints(self, mapping_id: str) -> dict[str, Checkpoint]:
        """Every checkpoint of the mapping, by partition (strongly consistent)."""
        found: dict[str, Checkpoint] = {}
        async for item in self._items(
            "read checkpoints",
            "query",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"checkpoint#{mapping_id}"}},
            ConsistentRead=True,
        ):
            found[item["sk"]["S"]] = checkpoint_from_item(item)
        return found

    async def count_idempotency_records(self, mapping_id: str, now: float) -> dict[str, int]:
        """How many idempotency records of the mapping expire after ``now``, by partition (a
        Scan of the table: see the module docstring)."""
        prefix = f"done#{mapping_id}#"
        counts: dict[str, int] = {}
        async for item in self._items(
            "count idempotency records",
            "scan",
            FilterExpression="begins_with(pk, :prefix) AND expires_at > :now",
            ProjectionExpression="pk",
            ExpressionAttributeValues={":prefix": {"S": prefix}, ":now": {"N": repr(now)}},
            ConsistentRead=True,
        ):
            # Partition names hold no '#', mapping ids may: "done#a#b#P" is mapping "a#b".
            owner, _, partition = item["pk"]["S"].rpartition("#")
            if owner == prefix[:-1]:
                counts[partition] = counts.get(partition, 0) + 1
        return counts

    async def _items(
        self, action: str, operation: str, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a Query or Scan, page after page."""
        start: dict[str, Any] | None = None
        while True:
            page = dict(kwargs, TableName=self.table)
            if start:
                page["ExclusiveStartKey"] = start
            response = await self._call(action, operation, **page)
            for item in response.get("Items", []):
                yield item
            start = response.get("LastEvaluatedKey")
            if not start:
                return
