"""The DynamoDB store on the moto server: the checkpoint and idempotency rules of every store, its
table made on first use, errors that name the table, and two workers on one table sharing a
stream's shards (as two hosts would).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from poller import Worker, parse_config
from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.dynamodb import DynamoDBStore
from tests.faults import FaultyClient
from tests.kit import REGION, TypedRecorder, wait_until
from tests.kit.aws import create_stream, poller_client

pytestmark = pytest.mark.integration

M = "mapping-1"


@pytest.fixture
async def client(moto_endpoint: str) -> AsyncIterator[Any]:
    async with poller_client(moto_endpoint, "dynamodb") as made:
        yield made


def worker_config(endpoint: str, table: str, mapping: dict[str, Any], **worker: Any) -> Any:
    """One mapping on the moto server, its state in DynamoDB table ``table``."""
    return parse_config(
        {
            "aws": {
                "region": REGION,
                "endpoint_url": endpoint,
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
            "store": {"url": f"dynamodb://{table}"},
            "worker": {"idle_poll_seconds": 0.05, **worker},
            "mappings": [mapping],
        }
    )


def table_store(client: Any, *, create: bool = True, name: str | None = None) -> DynamoDBStore:
    async def shared() -> Any:
        return client

    return DynamoDBStore(name or f"state-{uuid.uuid4().hex[:12]}", shared, create=create)


async def test_the_table_is_made_on_first_use_with_ttl(client: Any) -> None:
    store = table_store(client)
    await store.open()
    await store.open()  # a second worker finds it there
    described = await client.describe_table(TableName=store.table)
    assert described["Table"]["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = await client.describe_time_to_live(TableName=store.table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


async def test_a_missing_table_without_create_is_an_error_naming_it(client: Any) -> None:
    store = table_store(client, create=False, name="no-such-table")
    with pytest.raises(StoreError, match="'no-such-table' does not exist"):
        await store.open()


async def test_access_denied_is_an_error_naming_the_table_and_the_action(client: Any) -> None:
    faulty = FaultyClient(client)
    store = table_store(faulty)
    await store.open()
    faulty.fail("put_item", code="AccessDeniedException", message="not authorized: PutItem")
    with pytest.raises(StoreError) as error:
        await store.put_checkpoint(M, "shard-0", Checkpoint("1", 1))
    assert str(error.value) == (
        f"dynamodb store {store.table!r}: cannot write a checkpoint (dynamodb:PutItem): "
        "AccessDeniedException: not authorized: PutItem"
    )
    faulty.fail("query", code="AccessDeniedException")
    with pytest.raises(StoreError, match=r"cannot read leases \(dynamodb:Query\): AccessDenied"):
        await store.list_leases(M)


async def test_throttling_is_retried_not_an_error(client: Any) -> None:
    faulty = FaultyClient(client)
    store = table_store(faulty)
    await store.open()
    await store.put_checkpoint(M, "shard-0", Checkpoint("1", 1))
    faulty.fail("get_item", code="ProvisionedThroughputExceededException", times=2)
    assert await store.get_checkpoint(M, "shard-0") == Checkpoint("1", 1)
    assert [call.error for call in faulty.calls_to("get_item")] == [
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceededException",
        None,
    ]


async def test_checkpoints_only_move_forward_and_finished_stays(client: Any) -> None:
    store = table_store(client)
    await store.open()
    assert await store.get_checkpoint(M, "s") is None
    await store.put_checkpoint(M, "s", Checkpoint("", 0, opened_at=12.5))
    assert await store.get_checkpoint(M, "s") == Checkpoint("", 0, opened_at=12.5)
    await store.put_checkpoint(M, "s", Checkpoint("9" * 60, 10**59 + 7))
    await store.put_checkpoint(M, "s", Checkpoint("3", 3))  # behind: ignored
    assert (await store.get_checkpoint(M, "s")) == Checkpoint("9" * 60, 10**59 + 7)
    await store.put_checkpoint(M, "s", Checkpoint("9" * 60, 10**59 + 7, finished=True))
    await store.put_checkpoint(M, "s", Checkpoint("x", 10**60))  # after finished: ignored
    assert (await store.get_checkpoint(M, "s")) == Checkpoint("9" * 60, 10**59 + 7, finished=True)


async def test_a_tumbling_windows_state_is_kept_with_the_checkpoint(client: Any) -> None:
    """The window's start and state round-trip (a large state too: it is stored compressed),
    a checkpoint at the same position replaces a windowed one, and never goes backwards."""
    store = table_store(client)
    await store.open()
    big = json.dumps({"seen": ["x" * 100] * 5000})  # 0.5 MB of JSON, over DynamoDB's 400 KB item
    opened = Checkpoint("5", 5, window_start=60, window_state=big)
    await store.put_checkpoint(M, "s", opened)
    assert await store.get_checkpoint(M, "s") == opened
    fenced = Checkpoint("6", 6, window_start=60, window_state='{"n":2}')
    assert await store.put_checkpoint_fenced(M, "s", fenced, "nobody", 1) is False
    closed = Checkpoint("5", 5)  # the window closed at the same position
    await store.put_checkpoint(M, "s", closed)
    assert await store.get_checkpoint(M, "s") == closed
    await store.put_checkpoint(M, "s", Checkpoint("4", 4, window_start=0, window_state="{}"))
    assert await store.get_checkpoint(M, "s") == closed  # behind: ignored


async def test_idempotency_records_are_read_back_until_they_expire(client: Any) -> None:
    clock = [1000.0]

    async def shared() -> Any:
        return client

    store = DynamoDBStore(f"state-{uuid.uuid4().hex[:12]}", shared, clock=lambda: clock[0])
    await store.open()
    positions = [str(n) for n in range(1, 40)]
    await store.remember_succeeded(M, "s", positions[:30], expires_at=2000.0)
    assert await store.succeeded_among(M, "s", positions) == frozenset(positions[:30])
    assert await store.succeeded_among(M, "other", positions) == frozenset()
    clock[0] = 2500.0
    assert await store.succeeded_among(M, "s", positions) == frozenset()


async def test_two_workers_on_one_table_split_a_streams_shards(
    moto_endpoint: str, unique_name: str
) -> None:
    table = f"state-{uuid.uuid4().hex[:12]}"
    async with poller_client(moto_endpoint, "kinesis") as kinesis:
        arn = await create_stream(kinesis, unique_name, shards=4)

        def config(worker_id: str) -> Any:
            return worker_config(
                moto_endpoint,
                table,
                {"UUID": "m", "EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON"},
                worker_id=worker_id,
                lease_duration_seconds=2,
                shutdown_grace_seconds=5,
            )

        first, second = TypedRecorder(), TypedRecorder()
        async with (
            Worker(config("host-a"), handlers={"m": first}) as a,
            Worker(config("host-b"), handlers={"m": second}) as b,
        ):

            def owned() -> Counter[str]:
                return Counter(
                    {
                        "a": len(a.status()["m"]["leases"]["owned"]),
                        "b": len(b.status()["m"]["leases"]["owned"]),
                    }
                )

            await wait_until(lambda: owned() == Counter(a=2, b=2), within=20, what="2 + 2 leases")
            await kinesis.put_records(
                StreamName=unique_name,
                Records=[{"PartitionKey": f"k{n}", "Data": f"r{n}".encode()} for n in range(40)],
            )
            await wait_until(
                lambda: first.count() + second.count() >= 40, within=20, what="40 records"
            )
            seen_a = {r.partition for batch in first.batches for r in batch}
            seen_b = {r.partition for batch in second.batches for r in batch}
            assert seen_a and seen_b and not seen_a & seen_b
            await b.stop_and_wait()  # b releases its leases: a takes them at once
            await wait_until(
                lambda: len(a.status()["m"]["leases"]["owned"]) == 4,
                within=5,
                what="a holding all four leases after b stopped",
            )


class CheckpointsLost:
    """The DynamoDB store, except that no checkpoint lands: a worker that crashed after each
    success was remembered and before its checkpoint moved."""

    def __init__(self, inner: DynamoDBStore) -> None:
        self.inner = inner

    async def put_checkpoint(self, *args: Any) -> None:
        return None

    async def put_checkpoint_fenced(self, *args: Any) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_worker_taking_over_skips_what_another_worker_saw_succeed(
    moto_endpoint: str, client: Any, unique_name: str
) -> None:
    """Idempotency across workers: with the shared table, records that succeeded on one worker
    are not handed over again by the worker that takes its shards, even without checkpoints."""
    async with poller_client(moto_endpoint, "kinesis") as kinesis:
        arn = await create_stream(kinesis, unique_name, shards=2)
        await kinesis.put_records(
            StreamName=unique_name,
            Records=[{"PartitionKey": f"k{n}", "Data": f"r{n}".encode()} for n in range(12)],
        )
        shared = table_store(client)
        await shared.open()

        def config(worker_id: str) -> Any:
            mapping = {
                "UUID": "m",
                "EventSourceArn": arn,
                "StartingPosition": "TRIM_HORIZON",
                "Idempotency": True,
            }
            return worker_config(moto_endpoint, shared.table, mapping, worker_id=worker_id)

        first = TypedRecorder()
        lossy: Any = CheckpointsLost(shared)
        async with Worker(config("host-a"), handlers={"m": first}, store=lossy) as a:
            await wait_until(lambda: first.count() >= 12 and a.idle, within=20, what="12 records")
        assert await shared.get_checkpoint("m", "shardId-000000000000") is None

        second = TypedRecorder()
        async with Worker(config("host-b"), handlers={"m": second}, store=shared) as b:
            await wait_until(lambda: b.idle, within=20, what="host-b caught up")
            owned = b.status()["m"]["leases"]["owned"]
        assert len(owned) == 2, "host-a released its leases; host-b took both"
        assert second.batches == [], "records that succeeded on host-a were handed over again"
