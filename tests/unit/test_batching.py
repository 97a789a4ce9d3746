"""Cutting batches by BatchSize, batching window and the payload cap."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from poller.engine.batching import Batcher
from poller.records import Record


def rec(i: int, size: int = 10) -> Record:
    return Record("s", str(i), i, "k", b"", 0.0, size)


async def test_batch_size_caps_a_batch_and_order_is_kept() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(i) for i in range(7)])
    await send.aclose()
    batcher = Batcher(receive, batch_size=3, window=0, max_bytes=10**6)
    cuts = []
    while (cut := await batcher.next_batch()) is not None:
        cuts.append([r.ordinal for r in cut.records])
    assert cuts == [[0, 1, 2], [3, 4, 5], [6]]


async def test_window_zero_hands_over_what_is_ready() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(1)])
    batcher = Batcher(receive, batch_size=100, window=0, max_bytes=10**6)
    with anyio.fail_after(1):
        cut = await batcher.next_batch()
    assert cut is not None and [r.ordinal for r in cut.records] == [1]


async def test_window_gathers_until_batch_size() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    batcher = Batcher(receive, batch_size=3, window=30, max_bytes=10**6)

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
    batcher = Batcher(receive, batch_size=100, window=0.05, max_bytes=10**6)
    with anyio.fail_after(2):
        cut = await batcher.next_batch()
    assert cut is not None and len(cut.records) == 1


async def test_payload_cap_splits_and_flags_oversized_records() -> None:
    send, receive = anyio.create_memory_object_stream[Sequence[Record]](1)
    await send.send([rec(1, 40), rec(2, 40), rec(3, 40), rec(4, 500), rec(5, 10)])
    await send.aclose()
    batcher = Batcher(receive, batch_size=100, window=0, max_bytes=100)
    cuts = []
    while (cut := await batcher.next_batch()) is not None:
        cuts.append(([r.ordinal for r in cut.records], cut.oversized))
    assert cuts == [([1, 2], False), ([3], False), ([4], True), ([5], False)]
