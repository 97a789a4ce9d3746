"""``poller replay``: move a stream mapping's checkpoints so the next worker reads again from there.

Kinesis and DynamoDB Streams (checkpoints in the store), per partition (every one, or one):

1. the shards are listed, and each chosen partition's new checkpoint is found
   (:mod:`poller.recovery.replay_positions`: "resume at record P" is written as P - 1);
2. leases (:mod:`poller.recovery.replay_leases`): refused while any worker holds a lease of the
   mapping, unless ``force``, which waits (bounded) for them to be released or to expire; then
   replay takes each chosen partition's lease under an owner id of its own;
3. each checkpoint is rewritten under that lease (a fenced write, as a worker's; the store's
   rewrite operation, the only one that moves a checkpoint backwards), and the partition's
   idempotency records are forgotten, so replayed records that succeeded before reach the
   function again instead of being skipped as done;
4. the leases are released; the next worker takes them as free and resumes from the new
   checkpoints.

Only partitions that are not finished are replayed. A finished partition (a closed shard read to
its end) stays finished, and so its children go on from their own checkpoints: replaying into a
parent whose children already started would hand the children's records over out of order.
``--partition`` naming a finished one is refused.

Kafka (checkpoints are the consumer group's committed offsets) is :mod:`poller.recovery.replay_kafka`.
``dry_run`` finds and reports every move without taking a lease or writing anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poller.engine.protocols import PartitionInfo
from poller.engine.state import Checkpoint
from poller.errors import PollerError
from poller.recovery.replay_leases import ReplayLeases, ReplayStore, replay_owner
from poller.recovery.replay_positions import ReplayTarget, replay_checkpoint
from poller.sources.shards.source import ShardStreamSource

__all__ = ["Move", "ReplayRefused", "ReplayReport", "replay_shards"]


class ReplayRefused(PollerError):
    """The replay asked for cannot be done as given (a partition unknown or finished)."""


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's checkpoint (or offset) before and after the replay."""

    partition: str
    #: As stored before (None: none); the JSON fields of the checkpoint or offset.
    before: dict[str, Any] | None
    #: As written (None: left alone, see ``note``).
    after: dict[str, Any] | None
    #: What the partition resumes at, or why it was left alone.
    note: str = ""
    #: Idempotency records of the partition forgotten (None: none were looked at).
    forgotten: int | None = None
    #: The write was refused (the lease moved to a worker meanwhile).
    failed: bool = False


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay moved (or would move, with ``dry_run``)."""

    mapping_id: str
    kind: str
    target: str
    dry_run: bool
    moves: tuple[Move, ...]

    @property
    def failed(self) -> bool:
        """Whether any partition's move was refused."""
        return any(move.failed for move in self.moves)


def checkpoint_fields(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    """A checkpoint as ``poller status`` shows it."""
    if checkpoint is None:
        return None
    return {
        "position": checkpoint.position,
        "finished": checkpoint.finished,
        "opened_at": checkpoint.opened_at,
    }


async def replay_shards(
    store: ReplayStore,
    source: ShardStreamSource[Any],
    mapping_id: str,
    target: ReplayTarget,
    *,
    partition: str | None,
    force: bool,
    wait: float,
    dry_run: bool,
    lease_duration: float,
    progress: Callable[[str], None],
    clock: Callable[[], float] = time.time,
) -> ReplayReport:
    """Replay a Kinesis or DynamoDB Streams mapping (see the module docstring)."""
    listed = await source.list_partitions()
    if partition is not None:
        listed = [p for p in listed if p.id == partition]
        if not listed:
            known = ", ".join(p.id for p in await source.list_partitions())
            raise ReplayRefused(
                f"--partition {partition!r}: {source.stream_arn} has no such shard "
                f"(its shards: {known or 'none'})"
            )
    leases = {lease.partition: lease for lease in await store.list_leases(mapping_id)}
    moves: dict[str, Move] = {}
    chosen: list[tuple[PartitionInfo, Checkpoint | None]] = []
    for info in listed:
        before = await store.get_checkpoint(mapping_id, info.id)
        lease = leases.get(info.id)
        if (before is not None and before.finished) or (lease is not None and lease.finished):
            if partition is not None:
                raise ReplayRefused(
                    f"--partition {partition!r} is finished (read to its end; its children go "
                    "on from their own checkpoints): only open partitions are replayed"
                )
            moves[info.id] = Move(info.id, checkpoint_fields(before), None, "finished: left alone")
            continue
        chosen.append((info, before))
    # Found before any lease is taken: reading a shard may take a while, and holds nothing.
    found: dict[str, tuple[Checkpoint, str]] = {}
    for info, _ in chosen:
        checkpoint, _ = await replay_checkpoint(source, info, target, clock())
        found[info.id] = (checkpoint, _resumes(checkpoint))
    if dry_run:
        for info, before in chosen:
            checkpoint, note = found[info.id]
            moves[info.id] = Move(
                info.id, checkpoint_fields(before), checkpoint_fields(checkpoint), note
            )
        return _report(mapping_id, source.kind, target, True, moves, listed)
    hold = ReplayLeases(store, mapping_id, replay_owner(), lease_duration, progress)
    if not force:
        await hold.refuse_if_held()
    try:
        await hold.take([info for info, _ in chosen], wait=wait if force else 0.0)
        for info, _ in chosen:
            before = await store.get_checkpoint(mapping_id, info.id)  # as of holding the lease
            checkpoint, note = found[info.id]
            if target.kind == "latest":  # the moment the lease is held, not when it was asked
                checkpoint, _ = await replay_checkpoint(source, info, target, clock())
            lease = hold.held[info.id]
            written = await store.rewrite_checkpoint_fenced(
                mapping_id, info.id, checkpoint, hold.owner, lease.epoch
            )
            if not written:
                note = "not written: a worker took the lease meanwhile"
                moves[info.id] = Move(info.id, checkpoint_fields(before), None, note, failed=True)
                continue
            forgotten = await store.forget_succeeded(mapping_id, info.id)
            moves[info.id] = Move(
                info.id, checkpoint_fields(before), checkpoint_fields(checkpoint), note, forgotten
            )
    finally:
        await hold.release()
    return _report(mapping_id, source.kind, target, False, moves, listed)


def _resumes(checkpoint: Checkpoint) -> str:
    """Where the partition resumes, in words."""
    if checkpoint.position:
        return f"resumes at {int(checkpoint.position) + 1}"
    if checkpoint.opened_at == 0.0:
        return "resumes at the oldest record (none now)"
    return "resumes at the moment (no record at or after it now)"


def _report(
    mapping_id: str,
    kind: str,
    target: ReplayTarget,
    dry_run: bool,
    moves: dict[str, Move],
    listed: list[PartitionInfo],
) -> ReplayReport:
    ordered = tuple(moves[info.id] for info in listed if info.id in moves)
    return ReplayReport(mapping_id, kind, target.describe(), dry_run, ordered)
