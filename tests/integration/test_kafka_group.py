"""Several poller processes in one consumer group, against the real broker: the group splits the
topic's partitions between them, and when one is killed (``kill -9``) the others take its
partitions over from the last committed offsets, losing nothing.

The processes are real ``poller run`` children with a handler module that logs every batch
(fsynced) before it returns, so the log shows what each process was handed even after a kill.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from tests.integration.kafka_helpers import create_topic, produce, wait_committed
from tests.kit import handler_module, json_lines, start_poller, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
PER_PARTITION = 100

HANDLER_MODULE = handler_module(
    "Logs each batch (process id, partition, offsets) to SEEN_LOG, fsynced, then works a little.",
    """
    def handle(batch):
        _log({"pid": os.getpid(), "partition": batch.partition,
              "offsets": [record.offset for record in batch]})
        time.sleep(_DELAY)
    """,
)


@dataclass
class Group:
    """A directory with config.toml and the handler, and the poller processes started from it."""

    root: Path
    log: Path
    processes: list[Process] = field(default_factory=list)

    async def start(self, delay: float) -> Process:
        output = self.root / f"poller-{len(self.processes) + 1}.log"
        process = await start_poller(self.root, seen_log=self.log, delay=delay, output=output)
        self.processes.append(process)
        return process

    def batches(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def pids_seen(self) -> set[int]:
        return {batch["pid"] for batch in self.batches()}

    def handled(self) -> set[tuple[str, int]]:
        return {(b["partition"], o) for b in self.batches() for o in b["offsets"]}

    def output(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-2000:]
            for path in sorted(self.root.glob("poller-*.log"))
        )


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[Group]:
    made = Group(tmp_path, tmp_path / "seen.jsonl")
    (tmp_path / "group_handler.py").write_text(HANDLER_MODULE)
    try:
        yield made
    finally:
        for process in made.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_two_processes_share_the_partitions_and_one_takes_over_after_kill_9(
    kafka_bootstrap: str, unique_name: str, group: Group
) -> None:
    topic = await create_topic(kafka_bootstrap, unique_name, PARTITIONS)
    (group.root / "config.toml").write_text(
        f"""
[store]
url = "sqlite:///{group.root / "state.db"}"

[worker]
shutdown_grace_seconds = 5
kafka_session_timeout_seconds = 2
kafka_revoke_grace_seconds = 3

[[mappings]]
UUID = "{unique_name}"
Handler = "group_handler:handle"
Topics = ["{topic}"]
StartingPosition = "TRIM_HORIZON"
BatchSize = 5
MaximumBatchingWindowInSeconds = 0.05
SelfManagedEventSource = {{ Endpoints = {{ KAFKA_BOOTSTRAP_SERVERS = ["{kafka_bootstrap}"] }} }}
SelfManagedKafkaEventSourceConfig = {{ ConsumerGroupId = "{unique_name}" }}
"""
    )
    records = [(i % PARTITIONS, f"v{i}".encode(), None) for i in range(PARTITIONS * PER_PARTITION)]
    await produce(kafka_bootstrap, topic, records)
    first = await group.start(delay=0.1)
    second = await group.start(delay=0.1)
    try:
        await wait_until(
            lambda: group.pids_seen() == {first.pid, second.pid},
            within=30,
            what="both processes handed batches",
        )
    except AssertionError as error:  # the processes' output as it is now, not before the wait
        raise AssertionError(f"{error}; output:\n{group.output()[-6000:]}") from None
    everything = {(f"{topic}-{p}", o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    owned_by_first = {b["partition"] for b in group.batches() if b["pid"] == first.pid}
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert len(group.handled()) < len(everything), "the kill came too late to test a takeover"
    await wait_until(
        lambda: group.handled() >= everything,
        within=60,
        what=f"every record handled after the kill; output:\n{group.output()}",
    )
    wanted = {p: PER_PARTITION for p in range(PARTITIONS)}
    offsets = await wait_committed(
        kafka_bootstrap, unique_name, topic, wanted, partitions=PARTITIONS, within=20
    )
    assert offsets == wanted
    # The survivor took over what the killed process had.
    after_kill = {b["partition"] for b in group.batches() if b["pid"] == second.pid}
    assert owned_by_first <= after_kill
    # Within each process and partition, batches never went backwards except to re-read
    # from a committed offset after a takeover; within a batch offsets are contiguous.
    for batch in group.batches():
        offsets_in_batch = batch["offsets"]
        assert offsets_in_batch == list(range(offsets_in_batch[0], offsets_in_batch[-1] + 1))
    second.send_signal(signal.SIGTERM)
    with anyio.fail_after(20):
        assert await second.wait() == 0
