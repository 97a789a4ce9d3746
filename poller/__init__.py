"""poller: AWS Lambda event source mappings, run anywhere.

The public API, re-exported from the modules that define it.
"""

from poller.config import (
    AwsConfig,
    DestinationConfig,
    KafkaEventSourceConfig,
    MappingConfig,
    OnFailure,
    PollerConfig,
    SelfManagedEventSource,
    SourceAccessConfiguration,
    StoreConfig,
    WorkerConfig,
    load_config,
    load_esm_json,
    parse_config,
)
from poller.engine.outcome import Failed, PartiallyFailed, Succeeded
from poller.errors import (
    ConfigError,
    DestinationError,
    HandlerImportError,
    PollerError,
    SourceError,
    SourceNotFoundError,
    StoreError,
)
from poller.records import (
    ActiveMqRecord,
    Batch,
    DynamoDBRecord,
    KafkaRecord,
    KinesisRecord,
    RabbitMqRecord,
    Record,
    SqsRecord,
    from_dynamodb_json,
)
from poller.runtime import Worker
from poller.targets import LambdaContext

__version__ = "0.1.0"

__all__ = [
    "ActiveMqRecord",
    "AwsConfig",
    "Batch",
    "ConfigError",
    "DestinationConfig",
    "DestinationError",
    "DynamoDBRecord",
    "Failed",
    "HandlerImportError",
    "KafkaEventSourceConfig",
    "KafkaRecord",
    "KinesisRecord",
    "LambdaContext",
    "MappingConfig",
    "OnFailure",
    "PartiallyFailed",
    "PollerConfig",
    "PollerError",
    "RabbitMqRecord",
    "Record",
    "SelfManagedEventSource",
    "SourceAccessConfiguration",
    "SourceError",
    "SourceNotFoundError",
    "SqsRecord",
    "StoreConfig",
    "StoreError",
    "Succeeded",
    "Worker",
    "WorkerConfig",
    "__version__",
    "from_dynamodb_json",
    "load_config",
    "load_esm_json",
    "parse_config",
]
