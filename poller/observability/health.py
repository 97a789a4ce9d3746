"""Liveness and readiness of a worker, as ``/healthz`` and ``/readyz`` answer them.

*Live* means the event loop answers (it serves the probe) and nothing failed for good: a
mapping that ended with an error, or a worker that failed to start. A live worker that is not
*ready* is still starting: a mapping whose source has not answered yet, a store not yet
checked, a function whose first environment is still initialising (or failed to). Kubernetes
restarts what is not live and sends no traffic to what is not ready; a sidecar's app waits for
ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from poller.engine.protocols import MappingRunner

__all__ = ["Health", "Probe"]

Phase = Literal["starting", "running", "stopping", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe's answer: whether it passes and a short JSON-able reason."""

    ok: bool
    body: dict[str, Any]


@dataclass
class Health:
    """What the worker reports of itself as it starts, runs and stops."""

    phase: Phase = "starting"
    #: Why the worker (or a mapping) failed for good, once it did.
    failure: str | None = None
    #: The store: None until checked, then "ok" or what went wrong.
    store: str | None = None
    #: Per function with process environments: "initialising", "ready" or the init error.
    functions: dict[str, str] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.phase = "failed"
        self.failure = reason

    def liveness(self) -> Probe:
        if self.phase == "failed":
            return Probe(False, {"live": False, "reason": self.failure or "the worker failed"})
        return Probe(True, {"live": True, "phase": self.phase})

    def readiness(self, runners: Sequence[MappingRunner]) -> Probe:
        waiting: list[str] = []
        if self.phase != "running":
            waiting.append(f"the worker is {self.phase}")
        if self.store != "ok":
            waiting.append(f"store: {self.store or 'not checked yet'}")
        mappings = {
            runner.mapping.mapping_id: "ready" if runner.ready else "its source has not answered"
            for runner in runners
        }
        waiting += [f"mapping {m}: {state}" for m, state in mappings.items() if state != "ready"]
        waiting += [
            f"function {name}: {state}"
            for name, state in self.functions.items()
            if state != "ready"
        ]
        body: dict[str, Any] = {
            "ready": not waiting,
            "phase": self.phase,
            "store": self.store,
            "mappings": mappings,
            "functions": dict(self.functions),
        }
        if waiting:
            body["reason"] = "; ".join(waiting)
        return Probe(not waiting, body)
