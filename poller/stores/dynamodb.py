"""The DynamoDB store (``[store] url = "dynamodb://TABLE"``): checkpoints, leases and idempotency
records in one table, so that workers on many hosts share a stream's shards.

Item layout (partition key ``pk``, sort key ``sk``, both strings), readable with the AWS CLI::

    pk = "checkpoint#MAPPING"  sk = PARTITION   position, ordinal (129-digit text), finished,
                                                opened_at, updated_at, window_start and
                                                window_state (while a tumbling window is open)
    pk = "lease#MAPPING"       sk = PARTITION   owner, counter, epoch, parents, finished
    pk = "done#MAPPING#PARTITION"  sk = POSITION   expires_at (the table's TTL attribute)

Every change is a conditional write: a checkpoint only moves forward (the condition compares the
fixed-width ordinal text), a lease changes only if it is still as the caller saw it, and a fenced
checkpoint is a transaction of a condition check on the lease and the checkpoint write. DynamoDB's
TTL deletes expired idempotency records on its own (within a couple of days); reads ignore expired
ones meanwhile, and ``purge_expired`` is not needed.

IAM actions: ``dynamodb:DescribeTable``, ``CreateTable`` and ``UpdateTimeToLive`` (only when poller
creates the table), ``GetItem``, ``PutItem``, ``UpdateItem``, ``DeleteItem``, ``Query``,
``BatchWriteItem`` and ``ConditionCheckItem``/``TransactWriteItems`` (the fenced checkpoint);
``Scan`` for ``poller status`` only (:mod:`poller.stores.dynamodb_inspection`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from poller.aws_calls import call_with_backoff, error_code, error_codes
from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.base import ClosingStore
from poller.stores.dynamodb_inspection import DynamoDBInspection, checkpoint_from_item
from poller.stores.dynamodb_rewrites import DynamoDBRewrites
from poller.stores.dynamodb_windows import window_attributes, with_window
from poller.stores.sqlite import ordinal_key

__all__ = ["DynamoDBStore"]

#: What DynamoDB answers when a write's condition did not hold (alone, or in a transaction).
_CONDITION_CODES = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})
_CHECKPOINT_MOVES_FORWARD = (  # as Checkpoint.replaces
    "attribute_not_exists(pk) OR (finished = :false AND (ordinal < :ordinal OR (ordinal = "
    ":ordinal AND (:finished = :true OR :windowed = :true OR attribute_exists(window_start)))))"
)
_BATCH = 25
_KEYS = (("pk", "HASH"), ("sk", "RANGE"))


class DynamoDBStore(DynamoDBInspection, DynamoDBRewrites, ClosingStore):
    """A :class:`~poller.engine.state.Store`, :class:`~poller.engine.leases.LeaseStore` and
    :class:`~poller.stores.inspection.InspectableStore` in one DynamoDB table."""

    def __init__(
        self,
        table: str,
        client: Callable[[], Awaitable[Any]],
        *,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``client()`` returns the shared aiobotocore DynamoDB client (made on first use)."""
        self.table = table
        self._client_factory = client
        self._client: Any = None
        self._create = create
        self._clock = clock

    def __repr__(self) -> str:
        return f"DynamoDBStore({self.table!r})"

    # --- set-up ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the table exists (creating it, on-demand, with TTL, unless ``create`` is off)."""
        client = await self._dynamodb()
        try:
            await client.describe_table(TableName=self.table)
            return
        except Exception as error:
            if error_code(error) != "ResourceNotFoundException":
                raise self._error("describe the table", error) from None
        if not self._create:
            raise StoreError(
                f"dynamodb store: table {self.table!r} does not exist (create it, or leave "
                "[store] create unset so poller creates it)"
            )
        try:
            await client.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in _KEYS],
                KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in _KEYS],
            )
        except Exception as error:
            if error_code(error) != "ResourceInUseException":  # another worker created it
                raise self._error("create the table", error) from None
        waiter = client.get_waiter("table_exists")
        await waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        try:
            await client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        except Exception as error:
            if "already enabled" not in str(error).lower():
                raise self._error("enable TTL", error) from None

    async def _dynamodb(self) -> Any:
        if self._client is None:
            self._client = await self._client_factory()
        return self._client

    async def _call(self, action: str, operation: str, **kwargs: Any) -> Any:
        client = await self._dynamodb()
        method = getattr(client, operation)
        try:
            return await call_with_backoff(
                lambda: method(**kwargs), operation=operation, table=self.table
            )
        except Exception as error:
            if not _CONDITION_CODES.isdisjoint(error_codes(error)):
                raise  # the caller asked for a condition; _conditional reads the answer
            raise self._error(action, error) from None

    def _error(self, action: str, error: BaseException) -> StoreError:
        """Names the table, what poller was doing, the DynamoDB action (the one an IAM policy
        must allow) and AWS's own error code and message."""
        operation = getattr(error, "operation_name", None)
        code = error_code(error)
        response = getattr(error, "response", None)
        if code and isinstance(response, dict):
            cause = f"{code}: {response.get('Error', {}).get('Message') or code}"
        else:
            cause = f"{type(error).__name__}: {error}"
        called = f" (dynamodb:{operation})" if operation else ""
        return StoreError(f"dynamodb store {self.table!r}: cannot {action}{called}: {cause}")

    async def _conditional(self, action: str, operation: str, **kwargs: Any) -> bool:
        """A conditional write: True when it landed, False when its condition did not hold."""
        try:
            await self._call(action, operation, **kwargs)
        except Exception as error:
            if _CONDITION_CODES.isdisjoint(error_codes(error)):
                raise
            return False
        return True

    # --- checkpoints -------------------------------------------------------------------------------

    async def get_checkpoint(self, mapping_id: str, partition: str) -> Checkpoint | None:
        """The stored checkpoint, or None."""
        response = await self._call(
            "read a checkpoint",
            "get_item",
            TableName=self.table,
            Key=_key(f"checkpoint#{mapping_id}", partition),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else with_window(checkpoint_from_item(item), item)

    def _checkpoint_put(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint
    ) -> dict[str, Any]:
        item = {
            **_key(f"checkpoint#{mapping_id}", partition),
            "position": {"S": checkpoint.position},
            "ordinal": {"S": ordinal_key(checkpoint.ordinal)},
            "finished": {"BOOL": checkpoint.finished},
            "updated_at": {"N": repr(self._clock())},
        }
        if checkpoint.opened_at is not None:
            item["opened_at"] = {"N": repr(checkpoint.opened_at)}
        item.update(window_attributes(checkpoint))
        return {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": _CHECKPOINT_MOVES_FORWARD,
            "ExpressionAttributeValues": {
                ":ordinal": item["ordinal"],
                ":finished": {"BOOL": checkpoint.finished},
                ":windowed": {"BOOL": checkpoint.window_start is not None},
                ":true": {"BOOL": True},
                ":false": {"BOOL": False},
            },
        }

    async def put_checkpoint(self, mapping_id: str, partition: str, checkpoint: Checkpoint) -> None:
        """Store the checkpoint unless the stored one is further or finished."""
        await self._conditional(
            "write a checkpoint",
            "put_item",
            **self._checkpoint_put(mapping_id, partition, checkpoint),
        )

    # --- leases ------------------------------------------------------------------------------------

    async def list_leases(self, mapping_id: str) -> list[Lease]:
        """Every lease of the mapping (strongly consistent)."""
        leases: list[Lease] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"lease#{mapping_id}"}},
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = await self._call("read leases", "query", **kwargs)
            leases.extend(_lease(item) for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                return leases

    async def create_leases(
        self, mapping_id: str, partitions: Sequence[tuple[str, tuple[str, ...]]]
    ) -> None:
        """Create a free lease for each partition that has none."""
        existing = {lease.partition for lease in await self.list_leases(mapping_id)}
        for partition, parents in partitions:
            if partition in existing:
                continue
            item = {
                **_key(f"lease#{mapping_id}", partition),
                "counter": {"N": "0"},
                "epoch": {"N": "0"},
                "finished": {"BOOL": False},
                "parents": {"L": [{"S": p} for p in parents]},
            }
            await self._conditional(
                "create a lease",
                "put_item",
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )

    async def take_lease(self, mapping_id: str, seen: Lease, owner: str) -> Lease | None:
        """Become the owner if the lease is still exactly as ``seen``."""
        owner_condition = "attribute_not_exists(#owner)" if seen.owner is None else "#owner = :seen"
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":one": {"N": "1"},
            ":counter": {"N": str(seen.counter)},
            ":epoch": {"N": str(seen.epoch)},
            ":false": {"BOOL": False},
        }
        if seen.owner is not None:
            values[":seen"] = {"S": seen.owner}
        landed = await self._conditional(
            "take a lease",
            "update_item",
            TableName=self.table,
            Key=_key(f"lease#{mapping_id}", seen.partition),
            UpdateExpression="SET #owner = :me, #counter = #counter + :one, epoch = epoch + :one",
            ConditionExpression=(
                f"{owner_condition} AND #counter = :counter AND epoch = :epoch "
                "AND finished = :false"
            ),
            ExpressionAttributeNames={"#owner": "owner", "#counter": "counter"},
            ExpressionAttributeValues=values,
        )
        if not landed:
            return None
        return Lease(seen.partition, owner, seen.counter + 1, seen.epoch + 1, seen.parents)

    async def renew_lease(self, mapping_id: str, held: Lease) -> Lease | None:
        """Bump the counter while still held as ``held``."""
        if not await self._as_holder(
            "renew a lease", mapping_id, held, "SET #counter = #counter + :one"
        ):
            return None
        return Lease(held.partition, held.owner, held.counter + 1, held.epoch, held.parents)

    async def release_lease(self, mapping_id: str, held: Lease) -> bool:
        """Give the lease up while still held as ``held``."""
        return await self._as_holder(
            "release a lease", mapping_id, held, "REMOVE #owner SET epoch = epoch + :one"
        )

    async def _as_holder(self, action: str, mapping_id: str, held: Lease, update: str) -> bool:
        """An update of the lease that lands only while ``held`` still holds it (DynamoDB refuses
        attribute names an expression does not use, so ``#counter`` is named only when used)."""
        names = {"#owner": "owner"} | ({"#counter": "counter"} if "#counter" in update else {})
        return await self._conditional(
            action,
            "update_item",
            TableName=self.table,
            Key=_key(f"lease#{mapping_id}", held.partition),
            UpdateExpression=update,
            ConditionExpression="#owner = :me AND epoch = :epoch",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_held_values(held) | {":one": {"N": "1"}},
        )

    async def finish_lease(self, mapping_id: str, partition: str) -> None:
        """Mark the partition finished (if its lease exists)."""
        await self._conditional(
            "finish a lease",
            "update_item",
            TableName=self.table,
            Key=_key(f"lease#{mapping_id}", partition),
            UpdateExpression="REMOVE #owner SET finished = :true",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )

    async def delete_leases(self, mapping_id: str, partitions: Sequence[str]) -> None:
        """Forget these leases."""
        for partition in partitions:
            await self._call(
                "delete a lease",
                "delete_item",
                TableName=self.table,
                Key=_key(f"lease#{mapping_id}", partition),
            )

    async def put_checkpoint_fenced(
        self, mapping_id: str, partition: str, checkpoint: Checkpoint, owner: str, epoch: int
    ) -> bool:
        """One transaction: the lease is still ``owner``'s at ``epoch``, and the checkpoint moves
        forward. False when the lease moved (nothing written)."""
        held = Lease(partition, owner, 0, epoch)
        put = self._checkpoint_put(mapping_id, partition, checkpoint)
        try:
            await self._call(
                "write a checkpoint (fenced)",
                "transact_write_items",
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": _key(f"lease#{mapping_id}", partition),
                            "ConditionExpression": "#owner = :me AND epoch = :epoch",
                            "ExpressionAttributeNames": {"#owner": "owner"},
                            "ExpressionAttributeValues": _held_values(held),
                        }
                    },
                    {"Put": put},
                ],
            )
        except Exception as error:
            if "TransactionCanceledException" not in error_codes(error):
                raise
            reasons = getattr(error, "response", {}).get("CancellationReasons", [])
            codes = [reason.get("Code") for reason in reasons]
            # The lease check passed and only the checkpoint's own condition failed: the stored
            # checkpoint is already further (a write that changes nothing, as put_checkpoint).
            lease_held = len(codes) > 1 and codes[0] in (None, "None")
            return lease_held
        return True

    # --- idempotency -------------------------------------------------------------------------------

    async def remember_succeeded(
        self, mapping_id: str, partition: str, positions: Sequence[str], expires_at: float
    ) -> None:
        """Record the positions, each expiring at ``expires_at`` (DynamoDB's TTL deletes them)."""
        pk = f"done#{mapping_id}#{partition}"
        for start in range(0, len(positions), _BATCH):
            requests = [
                {
                    "PutRequest": {
                        "Item": {**_key(pk, position), "expires_at": {"N": repr(expires_at)}}
                    }
                }
                for position in positions[start : start + _BATCH]
            ]
            await self._batch_write(requests)

    async def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = requests
        attempt = 0
        while pending:
            response = await self._call(
                "write idempotency records",
                "batch_write_item",
                RequestItems={self.table: pending},
            )
            pending = response.get("UnprocessedItems", {}).get(self.table, [])
            if pending:
                attempt += 1
                await anyio.sleep(min(2.0, 0.05 * 2**attempt))

    async def succeeded_among(
        self, mapping_id: str, partition: str, positions: Sequence[str]
    ) -> frozenset[str]:
        """Which positions are recorded and not expired."""
        if not positions:
            return frozenset()
        wanted = set(positions)
        now = self._clock()
        found: set[str] = set()
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": {
                    ":pk": {"S": f"done#{mapping_id}#{partition}"},
                    ":low": {"S": min(wanted)},
                    ":high": {"S": max(wanted)},
                },
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = await self._call("read idempotency records", "query", **kwargs)
            for item in response.get("Items", []):
                position = item["sk"]["S"]
                if position in wanted and float(item["expires_at"]["N"]) > now:
                    found.add(position)
            start = response.get("LastEvaluatedKey")
            if not start:
                return frozenset(found)

    async def purge_expired(self, now: float) -> int:
        """Nothing to do: DynamoDB's TTL deletes expired records, and reads skip them."""
        return 0

    async def aclose(self) -> None:
        """The client belongs to the worker's AWS clients; nothing to close here."""
        self._client = None


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _held_values(held: Lease) -> dict[str, Any]:
    return {":me": {"S": held.owner or ""}, ":epoch": {"N": str(held.epoch)}}


def _lease(item: dict[str, Any]) -> Lease:
    return Lease(
        partition=item["sk"]["S"],
        owner=item["owner"]["S"] if "owner" in item else None,
        counter=int(item["counter"]["N"]),
        epoch=int(item["epoch"]["N"]),
        parents=tuple(p["S"] for p in item.get("parents", {}).get("L", [])),
        finished=item.get("finished", {}).get("BOOL", False),
    )
