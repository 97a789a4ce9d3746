"""Cutting batches by BatchSize, batching window and the payload cap."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from poller.engine.batching import Batcher, StreamFeed
from poller.records import Record


def rec(i: int, size: int = 10) -> Record:
    return Record("s", str(i), i, "k", b"", 0.0, size)


async def test_batch_size_caps_a_batch_and_order_is_kept() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(i) for i in range(7)])
    await send.aclose()
    batcher = Batcher(StreamFeed(receive), batch_size=3, window=0, max_bytes=10**6)
    cuts = []
    while (cut := await batcher.next_batch()) is not None:
        cuts.append([r.ordinal for r in cut.records])
    assert cuts == [[0, 1, 2], [3, 4, 5], [6]]


async def test_window_zero_hands_over_what_is_ready() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(1)])
    batcher = Batcher(StreamFeed(receive), batch_size=100, window=0, max_bytes=10**6)
    with anyio.fail_after(1):
        cut = await batcher.next_batch()
    assert cut is not None and [r.ordinal for r in cut.records] == [1]


async def test_window_gathers_until_batch_size() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    batcher = Batcher(StreamFeed(receive), batch_size=3, window=30, max_bytes=10**6)

    async def feed() -> None:
        for i in range(3):
            await send.send([rec(i)])

    with anyio.fail_after(5):  # far below the 30 s window: size, not time, closed the batch
        async with anyio.create_task_group() as group:
            group.start_soon(feed)
            cut = await batcher.next_batch()
    assert cut is not None and [r.ordinal for r in cut.records] == [0, 1, 2]


async def test_window_expiry_sends_a_partial_batch() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(1)])
    batcher = Batcher(StreamFeed(receive), batch_size=100, window=0.05, max_bytes=10**6)
    with anyio.fail_after(2):
        cut = await batcher.next_batch()
    assert cut is not None and len(cut.records) == 1


async def test_payload_cap_splits_and_flags_oversized_records() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(1, 40), rec(2, 40), rec(3, 40), rec(4, 500), rec(5, 10)])
    await send.aclose()
    batcher = Batcher(StreamFeed(receive), batch_size=100, window=0, max_bytes=100)
    cuts = []
    while (cut := await batcher.next_batch()) is not None:
        cuts.append(([r.ordinal for r in cut.records], cut.oversized))
    assert cuts == [([1, 2], False), ([3], False), ([4], True), ([5], False)]


async def test_window_opens_with_the_first_record_when_asked() -> None:
    """Kafka and MQ (AWS): an idle partition's first record does not go alone; the window starts
    with it and gathers what follows."""
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    batcher = Batcher(
        StreamFeed(receive),
        batch_size=100,
        window=0.3,
        max_bytes=10**6,
        window_from_first_record=True,
    )

    async def feed() -> None:
        await anyio.sleep(0.4)  # idle for longer than the window: the source's own pace
        await send.send([rec(1)])
        await anyio.sleep(0.05)
        await send.send([rec(2)])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(feed)
            cut = await batcher.next_batch()
    assert cut is not None and [r.ordinal for r in cut.records] == [1, 2]


async def test_window_counted_from_the_previous_invocation_sends_a_late_first_record_alone() -> (
    None
):
    """Streams (AWS): the window ran out while the shard was idle, so the first record goes at once."""
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    batcher = Batcher(StreamFeed(receive), batch_size=100, window=0.1, max_bytes=10**6)

    async def feed() -> None:
        await anyio.sleep(0.3)
        await send.send([rec(1)])
        await anyio.sleep(0.2)
        await send.send([rec(2)])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(feed)
            cut = await batcher.next_batch()
            group.cancel_scope.cancel()
    assert cut is not None and [r.ordinal for r in cut.records] == [1]
