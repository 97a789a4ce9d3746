"""The queue engine: pollers over SQS queues and broker queues, and the two ways they settle."""

from poller.engine.queues.mapping import QueueMappingRunner

__all__ = ["QueueMappingRunner"]
