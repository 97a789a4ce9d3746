"""An SQS mapping's own fields (``ScalingConfig``, ``VisibilityHeartbeat``) and SQS's rules."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from poller.config.fields import ScalingConfig, SourceOptions
from poller.config.resolved import ResolvedMapping

if TYPE_CHECKING:
    from poller.config.mapping import MappingConfig

__all__ = ["SqsMappingOptions"]


class SqsMappingOptions(SourceOptions):
    """The fields only SQS mappings take."""

    scaling_config: ScalingConfig | None = None
    #: Extend the visibility of messages whose handler is still running, so they never
    #: reappear mid-processing. Off = AWS's behaviour (keep FunctionTimeout <= visibility timeout).
    visibility_heartbeat: bool = True

    def rules(self, mapping: MappingConfig) -> list[str]:
        problems: list[str] = []
        fifo = _fifo(mapping)
        batch_size = mapping.batch_size
        window = mapping.maximum_batching_window_in_seconds or 0
        if fifo:
            if batch_size is not None and batch_size > 10:
                problems.append(
                    f"BatchSize: {batch_size} is out of range for a FIFO queue (allowed 1..10)"
                )
            if window:
                problems.append(
                    "MaximumBatchingWindowInSeconds: not supported for FIFO queues (leave it unset)"
                )
        elif batch_size is not None and batch_size > 10 and window < 1:
            problems.append(
                f"MaximumBatchingWindowInSeconds: {window!r} is too small for BatchSize "
                f"{batch_size} (allowed 1..300): Maximum batch window in seconds must be "
                "greater than 0 if maximum batch size is greater than 10"
            )
        destination = mapping.on_failure_destination
        if mapping.maximum_retry_attempts != -1 and not destination:
            problems.append(
                "MaximumRetryAttempts: on an SQS mapping it needs DestinationConfig.OnFailure "
                "(without a destination the queue's redrive policy decides, as in AWS)"
            )
        if destination and mapping.maximum_retry_attempts == -1:
            problems.append(
                "MaximumRetryAttempts: an SQS on-failure destination needs it (0..10000): a "
                "message whose receive count passes it + 1 goes to the destination"
            )
        return problems

    def resolve(self, mapping: MappingConfig, resolved: ResolvedMapping) -> ResolvedMapping:
        return dataclasses.replace(
            resolved,
            maximum_concurrency=self.scaling_config.maximum_concurrency
            if self.scaling_config
            else None,
            visibility_heartbeat=self.visibility_heartbeat,
            fifo=_fifo(mapping),
        )


def _fifo(mapping: MappingConfig) -> bool:
    return (mapping.event_source_arn or "").endswith(".fifo")
