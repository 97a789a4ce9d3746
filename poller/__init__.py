"""poller: AWS Lambda event source mappings, run anywhere.

The public API, re-exported from the modules that define it. Importing it imports no broker
client: a source's client library is imported when a mapping of its kind opens.
"""

from poller.config import (
    AwsConfig,
    DestinationConfig,
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
from poller.functions import LambdaContext
from poller.records import Batch, Record
from poller.runtime import Worker
from poller.sources.activemq.records import ActiveMqRecord
from poller.sources.dynamodb_streams.records import DynamoDBRecord, from_dynamodb_json
from poller.sources.kafka.options import KafkaEventSourceConfig
from poller.sources.kafka.records import KafkaRecord
from poller.sources.kinesis.records import KinesisRecord
from poller.sources.mq.records import BrokerRecord
from poller.sources.rabbitmq.records import RabbitMqRecord
from poller.sources.sqs.records import SqsRecord

__version__ = "0.1.0"

__all__ = [
    "ActiveMqRecord",
    "AwsConfig",
    "Batch",
    "BrokerRecord",
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
