"""The Worker that runs mappings, and the embedded AWS endpoint."""

from poller.runtime.worker import Worker

__all__ = ["Worker"]
