"""What ``poller replay`` changes in a DynamoDB store: a checkpoint rewritten under a lease the
replay holds (backwards too, finished or not), and a partition's idempotency records forgotten.

Kept out of :class:`~poller.stores.dynamodb.DynamoDBStore`'s worker-facing methods: nothing on the
worker's path calls these (see :class:`~poller.engine.state.CheckpointRewrites`). IAM actions:
``TransactWriteItems``/``ConditionCheckItem``/``PutItem`` (the rewrite), ``Query`` and
``BatchWriteItem`` (forgetting).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from poller.aws_calls import error_codes
from poller.engine.state import Checkpoint

__all__ = ["DynamoDBRewrites"]


class DynamoDBRewrites:
    """The replay half of :class:`~poller.stores.dynamodb.DynamoDBStore`."""

    table: str
    _call: Callable[..., Awaitable[Any]]
    _checkpoint_put: Callable[[str, str, Checkpoint], dict[str, Any]]
    _batch_write: Callable[[list[dict[str, Any]]], Awaitable[None]]

    async def rewrite_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """One transaction: the lease is ``owner``'s at ``epoch``, and the checkpoint is replaced
        whatever it held. False when the lease moved (nothing written)."""
        put = self._checkpoint_put(mapping_id, partition, checkpoint)
        put = {key: value for key, value in put.items() if key == "TableName" or key == "Item"}
        try:
            await self._call(
                "rewrite a checkpoint (replay)",
                "transact_write_items",
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": {
                                "pk": {"S": f"lease#{mapping_id}"},
                                "sk": {"S": partition},
                            },
                            "ConditionExpression": "#owner = :me AND epoch = :epoch",
                            "ExpressionAttributeNames": {"#owner": "owner"},
                            "ExpressionAttributeValues": {
                                ":me": {"S": owner},
                                ":epoch": {"N": str(epoch)},
                            },
                        }
                    },
                    {"Put": put},
                ],
            )
        except Exception as error:
            if "TransactionCanceledException" not in error_codes(error):
                raise
            return False
        return True

    async def forget_succeeded(self, mapping_id: str, partition: str) -> int:
        """Delete every idempotency record of the partition; how many there were."""
        pk = f"done#{mapping_id}#{partition}"
        keys: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": pk}},
                "ProjectionExpression": "pk, sk",
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = await self._call("read idempotency records", "query", **kwargs)
            keys.extend({"pk": item["pk"], "sk": item["sk"]} for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        for first in range(0, len(keys), 25):
            await self._batch_write(
                [{"DeleteRequest": {"Key": key}} for key in keys[first : first + 25]]
            )
        return len(keys)
