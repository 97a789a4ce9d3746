"""In-process handlers: which style a Python callable is, and the target that calls it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import anyio

from poller.engine.invocation import Target
from poller.engine.metrics import MappingCounters
from poller.engine.protocols import EventCodec
from poller.errors import HandlerImportError
from poller.functions.in_thread import LambdaTarget
from poller.functions.typed import TypedTarget

__all__ = ["is_typed", "target_for"]


def _positional_arity(handler: Callable[..., Any]) -> int | None:
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in signature.parameters.values() if p.kind in kinds]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        return None
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if len(required) in (1, 2):
        return len(required)
    return len(params) if len(params) in (1, 2) else None


def is_typed(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` is written ``f(batch)`` (typed) rather than ``f(event, context)``."""
    return _positional_arity(handler) == 1


def target_for(
    handler: Callable[..., Any] | Target,
    codec: EventCodec,
    *,
    report_batch_item_failures: bool,
    limiter: anyio.CapacityLimiter | None = None,
    name: str = "handler",
    environments: anyio.CapacityLimiter | None = None,
    counters: MappingCounters | None = None,
) -> Target:
    """Wrap a handler in the right target: ``f(batch)`` is typed, ``f(event, context)`` Lambda-style.

    An object that already has an ``invoke(batch, invocation)`` coroutine is used as it is.
    """
    if inspect.iscoroutinefunction(getattr(handler, "invoke", None)):
        return cast(Target, handler)
    if not callable(handler):
        raise HandlerImportError(f"{name}: {handler!r} is not callable")
    arity = _positional_arity(handler)
    if arity == 1:
        return TypedTarget(handler, codec, limiter=limiter)
    if arity == 2:
        return LambdaTarget(
            handler,
            codec,
            report_batch_item_failures=report_batch_item_failures,
            limiter=limiter,
            environments=environments,
            counters=counters,
        )
    raise HandlerImportError(
        f"{name}: cannot tell the handler's style from its signature; write it as "
        "handler(event, context) (Lambda style) or handler(batch) (typed)"
    )
