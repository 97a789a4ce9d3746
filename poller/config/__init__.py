"""The config: validated before anything starts, AWS field names and snake_case both accepted.

The package face re-exports what callers use. Inside:

* :mod:`poller.config.fields`: the model base, ARNs, ranges and the shared sub-tables (what the
  sources' own options models are built from);
* :mod:`poller.config.resolved`: :class:`ResolvedMapping`, a mapping with its defaults applied;
* :mod:`poller.config.mapping`: :class:`MappingConfig`, one ``[[mappings]]`` entry (the shared
  fields; each source's own fields through the source registry);
* :mod:`poller.config.settings`: ``[aws]``, ``[store]``, ``[worker]``, ``[logging]`` and the file;
* :mod:`poller.config.regions`: which AWS regions exist (botocore's partitions data);
* :mod:`poller.config.loading`: TOML, ``get-event-source-mapping`` JSON, readable problems.
"""

from poller.config.fields import (
    ARN,
    MAX_PAYLOAD_BYTES,
    DestinationConfig,
    OnFailure,
    ScalingConfig,
    SelfManagedEventSource,
    SourceAccess,
    SourceAccessConfiguration,
    SourceOptions,
    StartingPosition,
)
from poller.config.loading import (
    ESM_READ_ONLY_FIELDS,
    ConfigFileError,
    load_config,
    load_esm_json,
    parse_config,
    read_config_file,
    read_text_file,
)
from poller.config.mapping import MappingConfig
from poller.config.resolved import ResolvedMapping, SourceSettings
from poller.config.settings import (
    AwsConfig,
    HttpConfig,
    LoggingConfig,
    MetricsConfig,
    PollerConfig,
    StoreConfig,
    WorkerConfig,
)
from poller.errors import ConfigError

__all__ = [
    "ARN",
    "ESM_READ_ONLY_FIELDS",
    "MAX_PAYLOAD_BYTES",
    "AwsConfig",
    "ConfigError",
    "ConfigFileError",
    "DestinationConfig",
    "HttpConfig",
    "LoggingConfig",
    "MappingConfig",
    "MetricsConfig",
    "OnFailure",
    "PollerConfig",
    "ResolvedMapping",
    "ScalingConfig",
    "SelfManagedEventSource",
    "SourceAccess",
    "SourceAccessConfiguration",
    "SourceOptions",
    "SourceSettings",
    "StartingPosition",
    "StoreConfig",
    "WorkerConfig",
    "load_config",
    "load_esm_json",
    "parse_config",
    "read_config_file",
    "read_text_file",
]
