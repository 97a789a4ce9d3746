"""DynamoDB Streams: a table's change stream, Lambda's ``aws:dynamodb`` event, DynamoDB JSON.

The package: :mod:`.spec` (what the registry knows), :mod:`.records` (records and DynamoDB JSON
to Python values), :mod:`.codec` (AWS's shapes), :mod:`.source` (the reader, on the shared shard
core :mod:`poller.sources.shards`).
"""

from poller.sources.dynamodb_streams.codec import DynamoDBStreamsCodec
from poller.sources.dynamodb_streams.records import (
    DynamoDBRecord,
    from_attribute_value,
    from_dynamodb_json,
)
from poller.sources.dynamodb_streams.spec import SPEC

__all__ = [
    "SPEC",
    "DynamoDBRecord",
    "DynamoDBStreamsCodec",
    "from_attribute_value",
    "from_dynamodb_json",
]
