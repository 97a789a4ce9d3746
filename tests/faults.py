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

Failures are real ``botocore.exceptions.ClientError`` objects (the client's modeled subclass for
the code when it has one), so sources classify them exactly as they would AWS's. Every call is
recorded, so tests can assert what was asked (``faults.calls_to("get_shard_iterator")``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

__all__ = ["Call", "FaultyClient", "arrived_at", "shard_end"]

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


@dataclass(slots=True)
class _Fault:
    code: str
    message: str
    remaining: int


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
                raise self._error(name, fault.code, fault.message)
            try:
                response = await target(**kwargs)
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code"))
                self.calls.append(Call(name, dict(kwargs), code, at))
                raise
            self.calls.append(Call(name, dict(kwargs), None, at))
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
