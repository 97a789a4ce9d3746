"""Logging setup and metrics exposition."""

from poller.observability.logging import configure_logging, redact_payloads

__all__ = ["configure_logging", "redact_payloads"]
