"""What a function answered to one invocation, before the mapping reads it as an outcome.

Every way of reaching code (an environment over the Runtime API, an HTTP application) answers
with a :class:`Reply`: the response payload as bytes, or a :class:`FunctionError` named as Lambda
names it (``Runtime.ExitError``, ``Task timed out after 3.00 seconds``, ...). The mapping's side
(:mod:`poller.functions.lambda_target`) parses the payload by AWS's ``batchItemFailures`` rules.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_RESPONSE_BYTES",
    "FunctionError",
    "Reply",
    "Response",
    "exit_error",
    "response_too_large",
    "timed_out",
]

#: Lambda's largest synchronous response: bigger ones are a function error.
MAX_RESPONSE_BYTES = 6_291_556


@dataclass(frozen=True, slots=True)
class Response:
    """The function returned: its response payload (JSON text; empty means null)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class FunctionError:
    """The invocation failed: Lambda's error type and message."""

    error_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}" if self.message else self.error_type


Reply = Response | FunctionError


def timed_out(timeout: float) -> FunctionError:
    """Lambda's timeout error, word for word."""
    return FunctionError("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")


def exit_error(returncode: int | None, *, out_of_memory: bool = False) -> FunctionError:
    """The environment's process ended during the invocation (``Runtime.ExitError``)."""
    if out_of_memory:
        return FunctionError(
            "Runtime.OutOfMemory",
            "Runtime exited with error: signal: killed (the environment went over MemorySize)",
        )
    if returncode is None:
        how = "the environment went away"
    elif returncode < 0:
        how = f"signal: {_signal_name(-returncode)}"
    else:
        how = f"exit status {returncode}"
    return FunctionError("Runtime.ExitError", f"Runtime exited with error: {how}")


def response_too_large(size: int) -> FunctionError:
    """A response over Lambda's 6 MB limit."""
    return FunctionError(
        "Function.ResponseSizeTooLarge",
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({MAX_RESPONSE_BYTES} bytes).",
    )


def _signal_name(number: int) -> str:
    import signal

    try:
        return {"SIGKILL": "killed", "SIGSEGV": "segmentation fault", "SIGABRT": "aborted"}.get(
            signal.Signals(number).name, signal.Signals(number).name.lower()
        )
    except ValueError:
        return str(number)
