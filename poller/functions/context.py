"""The context object a Lambda-style handler receives, shaped like Lambda's."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

__all__ = ["LambdaContext"]


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """What ``handler(event, context)`` sees as ``context``: Lambda's attributes and method."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    #: Monotonic deadline on anyio's clock (``anyio.current_time()``), or ``time.monotonic()``.
    deadline: float
    memory_limit_in_mb: str = "128"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/poller"
    log_stream_name: str = "poller"
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out (FunctionTimeout)."""
        try:
            now = anyio.current_time()
        except Exception:  # called from a worker thread: no running event loop there
            import time

            now = time.monotonic()
        return max(0, int((self.deadline - now) * 1000))
