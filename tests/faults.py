"""A fault-injecting stand-in for an aiobotocore client, for the failures emulators never produce.

moto never expires a shard iterator, never throttles, and never ends a closed shard. Sources call
AWS only through the client they are handed, so a test hands them a :class:`FaultyClient` around
the real one: every call still reaches the real server, except the ones a test scripted to fail
or to come back rewritten::

    faults = FaultyClient(kinesis)
    faults.fail("get_records", code="ExpiredIteratorException", times=1)
    faults.fail("get_records", code="ProvisionedThroughputExceededException", times=3)
    faults.rewrite("get_records", shard_end([child]), times=1)
    faults.rewrite("get_records", arrived_at(old_timestamp))
    faults.fail_with("delete_message_batch", EndpointConnectionError(endpoint_url=url))
    faults.rewrite("delete_message_batch", entries_failed({"0"}, code="InternalError"))

For DynamoDB Streams, whose moto stream has a single shard that never rolls over, expires or is
trimmed, :class:`VirtualShards` cuts that shard into a lineage of shards (``roll_over``),
``created_at`` ages records and ``trimmed_before`` plays the 24-hour retention::

    lineage = VirtualShards(streams)
    lineage.roll_over(last_parent_sequence_number, "shardId-...-child")
    faults = FaultyClient(lineage)
    faults.fail("get_records", code="TrimmedDataAccessException", times=1)
    faults.rewrite("get_records", trimmed_before(oldest_kept), times=None)

Failures are real ``botocore.exceptions.ClientError`` objects (the client's modeled subclass for
the code when it has one), so sources classify them exactly as they would AWS's. Every call is
recorded, so tests can assert what was asked (``faults.calls_to("get_shard_iterator")``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import anyio
from botocore.exceptions import ClientError

__all__ = [
    "Call",
    "FaultyClient",
    "VirtualShard",
    "VirtualShards",
    "arrived_at",
    "created_at",
    "entries_failed",
    "shard_end",
    "trimmed_before",
]

#: Rewrites a response: gets the call's arguments and the real response, returns the new one.
Rewriter = Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Call:
    """One call that went through the wrapper."""

    method: str
    kwargs: dict[str, Any]
    #: The error code the call raised (scripted or real), None when it succeeded.
    error: str | None
    #: ``time.monotonic()`` when the call was made.
    at: float
    #: ``time.monotonic()`` when it returned or raised (the server's time is ``done - at``).
    done: float = 0.0


@dataclass(slots=True)
class _Fault:
    code: str
    message: str
    remaining: int
    #: Raised as is instead of a ClientError (network errors, timeouts).
    error: BaseException | None = None


@dataclass(slots=True)
class _Rewrite:
    rewriter: Rewriter
    #: How many more responses to rewrite; None for all of them.
    remaining: int | None


@dataclass(slots=True)
class _Script:
    faults: list[_Fault] = field(default_factory=list)
    rewrites: list[_Rewrite] = field(default_factory=list)


class FaultyClient:
    """Passes every call to ``client``, except the failures and rewrites a test scripted."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._scripts: dict[str, _Script] = {}
        self.calls: list[Call] = []

    def fail(self, method: str, *, code: str, times: int = 1, message: str | None = None) -> None:
        """Make the next ``times`` calls of ``method`` raise a ClientError with ``code``.

        Failing calls do not reach the server. Scripts queue up: a second ``fail`` applies once
        the first is used up.
        """
        script = self._scripts.setdefault(method, _Script())
        script.faults.append(_Fault(code, message or f"injected {code}", times))

    def fail_with(self, method: str, error: BaseException, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error`` (say, a lost connection).

        Queues up with :meth:`fail`; failing calls do not reach the server.
        """
        script = self._scripts.setdefault(method, _Script())
        script.faults.append(_Fault(type(error).__name__, str(error), times, error))

    def rewrite(self, method: str, rewriter: Rewriter, *, times: int | None = 1) -> None:
        """Pass the next ``times`` successful responses of ``method`` through ``rewriter``."""
        self._scripts.setdefault(method, _Script()).rewrites.append(_Rewrite(rewriter, times))

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of ``method``, oldest first."""
        return [call for call in self.calls if call.method == method]

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name.startswith("_") or not callable(target) or name not in _operations(self._client):
            return target

        async def call(**kwargs: Any) -> Any:
            script = self._scripts.get(name)
            at = time.monotonic()
            if script is not None and script.faults:
                fault = script.faults[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    script.faults.pop(0)
                self.calls.append(Call(name, dict(kwargs), fault.code, at))
                if fault.error is not None:
                    raise fault.error
                raise self._error(name, fault.code, fault.message)
            try:
                response = await target(**kwargs)
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code"))
                self.calls.append(Call(name, dict(kwargs), code, at, time.monotonic()))
                raise
            self.calls.append(Call(name, dict(kwargs), None, at, time.monotonic()))
            if script is not None and script.rewrites:
                rewrite = script.rewrites[0]
                if rewrite.remaining is not None:
                    rewrite.remaining -= 1
                    if rewrite.remaining <= 0:
                        script.rewrites.pop(0)
                response = rewrite.rewriter(kwargs, response)
            return response

        return call

    def _error(self, method: str, code: str, message: str) -> ClientError:
        operation = self._client.meta.method_to_api_mapping.get(method, method)
        response: Any = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400, "RetryAttempts": 0},
        }
        error_class = self._client.exceptions.from_code(code)
        error: ClientError = error_class(response, operation)
        return error


def _operations(client: Any) -> Mapping[str, str]:
    mapping: Mapping[str, str] = client.meta.method_to_api_mapping
    return mapping


def shard_end(children: list[dict[str, Any]]) -> Rewriter:
    """A rewriter that makes a GetRecords response the shard's last: null iterator, ChildShards.

    ``children`` are ChildShards entries: ``{"ShardId": ..., "ParentShards": [...],
    "HashKeyRange": {...}}``.
    """

    def rewrite(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        return {**response, "NextShardIterator": None, "ChildShards": children}

    return rewrite


def arrived_at(moment: datetime) -> Rewriter:
    """A rewriter that stamps every record of a GetRecords response as arrived at ``moment``."""

    def rewrite(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        records = [
            {**record, "ApproximateArrivalTimestamp": moment}
            for record in response.get("Records", [])
        ]
        return {**response, "Records": records}

    return rewrite


def entries_failed(ids: Collection[str], *, code: str, sender_fault: bool = False) -> Rewriter:
    """A rewriter that reports the batch entries with these ``Id``s as ``Failed`` with ``code``.

    For SQS batch calls (DeleteMessageBatch, ChangeMessageVisibilityBatch ...): the entries named
    move from ``Successful`` to ``Failed``. The server did act on them; only the answer changes.
    """

    def rewrite(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        successful = [e for e in response.get("Successful", []) if e["Id"] not in ids]
        failed = list(response.get("Failed", []))
        for entry in response.get("Successful", []):
            if entry["Id"] in ids:
                failed.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": sender_fault,
                        "Code": code,
                        "Message": f"injected {code}",
                    }
                )
        return {**response, "Successful": successful, "Failed": failed}

    return rewrite


# --- DynamoDB Streams ----------------------------------------------------------------------------


def created_at(moment: datetime, sequence_numbers: Collection[str] | None = None) -> Rewriter:
    """A DynamoDB GetRecords rewriter: the records were created at ``moment``.

    Sets ``dynamodb.ApproximateCreationDateTime`` of every record, or only of the records named in
    ``sequence_numbers``.
    """

    def rewrite(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        records = [
            {**record, "dynamodb": {**record["dynamodb"], "ApproximateCreationDateTime": moment}}
            if sequence_numbers is None or record["dynamodb"]["SequenceNumber"] in sequence_numbers
            else record
            for record in response.get("Records", [])
        ]
        return {**response, "Records": records}

    return rewrite


def trimmed_before(sequence_number: str) -> Rewriter:
    """A DynamoDB GetRecords rewriter: records before ``sequence_number`` are past retention.

    Together with a scripted ``TrimmedDataAccessException`` it plays the stream's trimming: the
    oldest record a reader can still get is the one named.
    """
    oldest = int(sequence_number)

    def rewrite(_kwargs: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        records = [
            record
            for record in response.get("Records", [])
            if int(record["dynamodb"]["SequenceNumber"]) >= oldest
        ]
        return {**response, "Records": records}

    return rewrite


@dataclass(frozen=True, slots=True)
class VirtualShard:
    """One shard of a :class:`VirtualShards` lineage."""

    id: str
    parent: str | None = None
    #: The shard holds the real shard's records after this sequence number (None: from its start).
    after: int | None = None
    #: The last sequence number of a closed shard; None while the shard is open.
    ending: int | None = None


class VirtualShards:
    """A DynamoDB Streams client on which moto's one shard per stream appears as a lineage.

    moto keeps one shard per stream and never rolls it over. This wrapper cuts that shard's
    records into consecutive virtual shards, each holding the records after its ``after`` up to
    its ``ending`` and naming the one before it as parent:

    - DescribeStream lists the virtual shards, a page of ``Limit`` at a time with
      ``LastEvaluatedShardId``/``ExclusiveStartShardId``, as AWS pages them;
    - GetShardIterator on a virtual shard positions an iterator on the real one;
    - GetRecords on a closed virtual shard stops at its ending and then returns a null
      NextShardIterator, as AWS does at a shard's end.

    Every other call and attribute passes through, so a :class:`FaultyClient` can wrap this one.
    :meth:`roll_over` closes the open shard and opens its child, at any time.
    """

    def __init__(self, client: Any, first: str = "shardId-00000001000000000000-0000aaaa") -> None:
        self._client = client
        self.shards: list[VirtualShard] = [VirtualShard(first)]
        #: Iterator -> (virtual shard, sequence number it reads after; None: the shard's start).
        self._iterators: dict[str, tuple[str, int | None]] = {}
        self._real: str | None = None

    def roll_over(self, ending: int | str, child: str) -> None:
        """Close the open shard at sequence number ``ending``; ``child`` holds what follows."""
        last = int(ending)
        parent = self.shards[-1]
        self.shards[-1] = replace(parent, ending=last)
        self.shards.append(VirtualShard(child, parent=parent.id, after=last))

    def _shard(self, shard_id: str) -> VirtualShard:
        for shard in self.shards:
            if shard.id == shard_id:
                return shard
        raise KeyError(f"no virtual shard {shard_id}")

    async def _real_shard(self, stream_arn: str) -> str:
        if self._real is None:
            described = await self._client.describe_stream(StreamArn=stream_arn)
            self._real = str(described["StreamDescription"]["Shards"][0]["ShardId"])
        return self._real

    async def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        response = await self._client.describe_stream(StreamArn=kwargs["StreamArn"])
        description = dict(response["StreamDescription"])
        real = description["Shards"][0]
        self._real = str(real["ShardId"])
        listed: list[dict[str, Any]] = []
        for shard in self.shards:
            numbers = {
                "StartingSequenceNumber": str(shard.after + 1)
                if shard.after is not None
                else real["SequenceNumberRange"]["StartingSequenceNumber"]
            }
            if shard.ending is not None:
                numbers["EndingSequenceNumber"] = str(shard.ending)
            entry: dict[str, Any] = {"ShardId": shard.id, "SequenceNumberRange": numbers}
            if shard.parent is not None:
                entry["ParentShardId"] = shard.parent
            listed.append(entry)
        start = 0
        if kwargs.get("ExclusiveStartShardId"):
            ids = [entry["ShardId"] for entry in listed]
            start = ids.index(kwargs["ExclusiveStartShardId"]) + 1
        limit = int(kwargs.get("Limit") or 100)
        description["Shards"] = listed[start : start + limit]
        description.pop("LastEvaluatedShardId", None)
        if start + limit < len(listed):
            description["LastEvaluatedShardId"] = description["Shards"][-1]["ShardId"]
        return {**response, "StreamDescription": description}

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        shard = self._shard(kwargs["ShardId"])
        request: dict[str, Any] = {
            "StreamArn": kwargs["StreamArn"],
            "ShardId": await self._real_shard(kwargs["StreamArn"]),
        }
        kind = kwargs["ShardIteratorType"]
        position: int | None = None
        if kind == "TRIM_HORIZON" and shard.after is not None:
            position = shard.after
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["SequenceNumber"] = str(shard.after)
        elif kind in {"AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER"}:
            number = int(kwargs["SequenceNumber"])
            position = number if kind == "AFTER_SEQUENCE_NUMBER" else number - 1
            request["ShardIteratorType"] = kind
            request["SequenceNumber"] = kwargs["SequenceNumber"]
        else:
            request["ShardIteratorType"] = kind
        response: dict[str, Any] = await self._client.get_shard_iterator(**request)
        self._iterators[response["ShardIterator"]] = (shard.id, position)
        return response

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = await self._client.get_records(**kwargs)
        known = self._iterators.get(kwargs["ShardIterator"])
        if known is None:
            return response
        shard_id, position = known
        shard = self._shard(shard_id)
        records = response.get("Records") or []
        kept = records
        if shard.ending is not None:
            kept = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) <= shard.ending]
        if kept:
            position = int(kept[-1]["dynamodb"]["SequenceNumber"])
        if shard.ending is not None and (
            len(kept) < len(records) or (position is not None and position >= shard.ending)
        ):
            return {**response, "Records": kept, "NextShardIterator": None}
        self._iterators[response["NextShardIterator"]] = (shard_id, position)
        return {**response, "Records": kept}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class OneCallAtATime:
    """The worker's SQS client with its calls made one at a time: a workaround for moto.

    moto's SQS backend is not thread-safe. Two receives running at once can both take a message,
    and on a FIFO queue a receive may take messages of a group that another receive took a moment
    before (moto notes the busy groups when a receive starts). Two deletes running at once can undo
    one another, so a deleted message comes back. Real SQS does none of this. Tests that count
    deliveries exactly, or check FIFO order, send the worker's SQS calls through here: each waits
    for the one before it, and a long poll becomes short polls 0.1 s apart until a message comes
    or its wait is over, so no call holds the others up. The engine still runs its pollers and
    batches concurrently; only the server sees one request at a time.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = anyio.Lock()

    async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        wait = float(kwargs.pop("WaitTimeSeconds", 0) or 0)
        deadline = anyio.current_time() + wait
        while True:
            async with self._lock:
                response: dict[str, Any] = await self._client.receive_message(
                    WaitTimeSeconds=0, **kwargs
                )
            if response.get("Messages") or anyio.current_time() >= deadline:
                return response
            await anyio.sleep(0.1)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in self._client.meta.method_to_api_mapping:
            return target

        async def call(**kwargs: Any) -> Any:
            async with self._lock:
                return await target(**kwargs)

        return call


def one_call_at_a_time(service: str, client: Any) -> Any:
    """A ``wrap_client`` that puts the worker's SQS client in :class:`OneCallAtATime`."""
    return OneCallAtATime(client) if service == "sqs" else client
