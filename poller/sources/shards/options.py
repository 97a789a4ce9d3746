"""A Kinesis or DynamoDB Streams mapping's own resolution: ``TumblingWindowInSeconds`` travels to
the engine in the mapping's settings (the engine's
:class:`~poller.engine.windows.WindowedSettings`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from poller.config.fields import SourceOptions
from poller.config.resolved import ResolvedMapping
from poller.engine.windows import WindowedSettings

if TYPE_CHECKING:
    from poller.config.mapping import MappingConfig

__all__ = ["ShardMappingOptions"]


class ShardMappingOptions(SourceOptions):
    """Kinesis and DynamoDB Streams mappings take no fields of their own; they resolve the
    tumbling window."""

    def resolve(self, mapping: MappingConfig, resolved: ResolvedMapping) -> ResolvedMapping:
        seconds = mapping.tumbling_window_in_seconds
        if not seconds:
            return resolved
        return dataclasses.replace(resolved, settings=WindowedSettings(tumbling_window=seconds))
