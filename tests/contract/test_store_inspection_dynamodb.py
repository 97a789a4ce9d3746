"""The DynamoDB store's inspection calls (``poller status``) on the moto server: checkpoints and
idempotency counts of one mapping only, read across pages, and a missing table said as such and
never created.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from poller.aws import AwsClients
from poller.config import AwsConfig
from poller.engine.leases import Lease
from poller.engine.state import Checkpoint
from poller.errors import StoreError
from poller.stores.dynamodb import DynamoDBStore
from poller.stores.inspection import InspectableStore, open_for_inspection
from tests.kit import REGION
from tests.kit.aws import poller_client

pytestmark = pytest.mark.integration

NOW = 1_700_000_000.0
BIG = 49590338271490256608559692538361571095921575989136588898


@pytest.fixture
async def client(moto_endpoint: str) -> AsyncIterator[Any]:
    async with poller_client(moto_endpoint, "dynamodb") as made:
        yield made


class SmallPages:
    """The client, with every Query and Scan asking for pages of two items (counted)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.pages: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in ("query", "scan"):
            return target

        async def paged(**kwargs: Any) -> Any:
            self.pages[name] += 1
            return await target(**kwargs, Limit=2)

        return paged


def table_store(client: Any, name: str | None = None, *, create: bool = True) -> DynamoDBStore:
    async def shared() -> Any:
        return client

    return DynamoDBStore(name or f"state-{uuid.uuid4().hex[:12]}", shared, create=create)


async def test_checkpoints_idempotency_counts_and_leases_of_one_mapping(client: Any) -> None:
    writer = table_store(client)
    await writer.open()
    await writer.put_checkpoint("m", "shard-0", Checkpoint(str(BIG), BIG))
    await writer.put_checkpoint("m", "shard-1", Checkpoint("7", 7, finished=True))
    await writer.put_checkpoint("m", "shard-2", Checkpoint("", 0, opened_at=NOW - 2.5))
    await writer.put_checkpoint("m#x", "shard-0", Checkpoint("1", 1))
    await writer.remember_succeeded("m", "shard-0", [str(n) for n in range(5)], NOW + 60)
    await writer.remember_succeeded("m", "shard-1", ["1"], NOW + 10)
    await writer.remember_succeeded("m", "shard-2", ["1"], NOW - 1)  # expired, TTL not yet run
    # Another mapping whose id starts the same: its records are not this mapping's.
    await writer.remember_succeeded("m#x", "shard-0", ["1", "2"], NOW + 60)
    await writer.create_leases("m", [("shard-0", ()), ("shard-1", ())])
    leases = {lease.partition: lease for lease in await writer.list_leases("m")}
    assert await writer.take_lease("m", leases["shard-0"], "host-a:1") is not None

    paging = SmallPages(client)
    store = table_store(paging, writer.table, create=False)
    assert isinstance(store, InspectableStore)
    await store.open_existing()
    assert await store.list_checkpoints("m") == {
        "shard-0": Checkpoint(str(BIG), BIG),
        "shard-1": Checkpoint("7", 7, finished=True),
        "shard-2": Checkpoint("", 0, opened_at=NOW - 2.5),
    }
    assert await store.count_idempotency_records("m", NOW) == {"shard-0": 5, "shard-1": 1}
    assert await store.count_idempotency_records("m", NOW + 10) == {"shard-0": 5}
    assert await store.count_idempotency_records("m#x", NOW) == {"shard-0": 2}
    assert sorted(await store.list_leases("m"), key=lambda lease: lease.partition) == [
        Lease("shard-0", "host-a:1", 1, 1),
        Lease("shard-1", None, 0, 0),
    ]
    # Every answer above took more than one page: nothing is read from the first page only.
    assert paging.pages["query"] >= 3 and paging.pages["scan"] >= 4 * 3


async def test_a_missing_table_is_said_and_not_created(client: Any) -> None:
    name = f"missing-{uuid.uuid4().hex[:12]}"
    store = table_store(client, name, create=False)
    with pytest.raises(StoreError) as error:
        await store.open_existing()
    assert str(error.value) == (
        f"dynamodb store: no table {name!r}: no worker has run with this config yet"
    )
    tables = (await client.list_tables())["TableNames"]
    assert name not in tables


async def test_open_for_inspection_reads_an_existing_table_by_url(
    client: Any, moto_endpoint: str
) -> None:
    writer = table_store(client)
    await writer.open()
    await writer.put_checkpoint("m", "shard-0", Checkpoint("3", 3))
    clients = AwsClients(AwsConfig(region=REGION, endpoint_url=moto_endpoint))
    try:
        store = await open_for_inspection(f"dynamodb://{writer.table}", clients=clients)
        assert await store.list_checkpoints("m") == {"shard-0": Checkpoint("3", 3)}
        missing = f"missing-{uuid.uuid4().hex[:12]}"
        with pytest.raises(StoreError, match=f"no table '{missing}'"):
            await open_for_inspection(f"dynamodb://{missing}", clients=clients)
        assert missing not in (await client.list_tables())["TableNames"]
    finally:
        await clients.aclose()
