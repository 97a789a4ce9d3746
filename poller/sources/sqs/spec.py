"""Amazon SQS as the registry knows it: recognition, defaults, rules, opening, embedded set-up."""

from __future__ import annotations

from poller.sources.spec import STREAM_ONLY_FIELDS, ArnPattern, SourceDefaults, SourceSpec
from poller.sources.sqs.options import SqsMappingOptions
from poller.sources.sqs.records import SqsRecord

__all__ = ["QUEUE_ARN", "SPEC"]

#: ``arn:aws:sqs:REGION:ACCOUNT:NAME``
QUEUE_ARN = ArnPattern(
    "sqs", "SQS queue", lambda resource: "/" not in resource and ":" not in resource, "an"
)


SPEC = SourceSpec(
    kind="sqs",
    title="SQS",
    family="queue",
    options=SqsMappingOptions,
    defaults=SourceDefaults(batch_size=10, batching_window=0.0, retry_backoff=0.0),
    record_type=SqsRecord,
    opener="poller.sources.sqs.source:SqsSource.opened",
    arn=QUEUE_ARN,
    unsupported=STREAM_ONLY_FIELDS,
    embedded="poller.sources.sqs.source:create_queue",
)
