"""How a batch reaches user code: typed Python callables and Lambda-style handlers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import anyio

from poller.engine.invocation import Target
from poller.engine.protocols import EventCodec
from poller.errors import HandlerImportError
from poller.targets.context import LambdaContext
from poller.targets.lambda_style import LambdaTarget
from poller.targets.loader import load_handler
from poller.targets.python import TypedTarget

__all__ = ["LambdaContext", "LambdaTarget", "TypedTarget", "load_handler", "target_for"]


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


def target_for(
    handler: Callable[..., Any] | Target,
    codec: EventCodec,
    *,
    report_batch_item_failures: bool,
    limiter: anyio.CapacityLimiter | None = None,
    name: str = "handler",
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
        )
    raise HandlerImportError(
        f"{name}: cannot tell the handler's style from its signature; write it as "
        "handler(event, context) (Lambda style) or handler(batch) (typed)"
    )
