"""Logging setup and metrics exposition.

A program that sets up structlog itself (instead of :func:`configure_logging`) adds
:func:`redact_payloads` (unless it wants records' payloads in its log) and :func:`redact_secrets`
(always, last before rendering) to its processors, so poller's lines carry no payload and no
credential.
"""

from poller.observability.logging import configure_logging, redact_payloads, redact_secrets

__all__ = ["configure_logging", "redact_payloads", "redact_secrets"]
