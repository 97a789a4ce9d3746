"""Kafka (Amazon MSK or self-managed): a consumer group's partitions, Lambda's Kafka event.

The package: :mod:`.spec` (what the registry knows), :mod:`.options` (``Topics``, the consumer
group, Kafka's rules), :mod:`.records`, :mod:`.codec` (AWS's shapes), :mod:`.connection`
(bootstrap servers, TLS, SASL), and, needing the ``kafka`` extra (aiokafka): :mod:`.source` (the
consumer), :mod:`.reader`, :mod:`.commits` (offsets to the group), :mod:`.offsets` (checkpoints
as committed offsets), :mod:`.destination` (``kafka://`` on-failure topics). Importing this
package face does not import aiokafka.
"""

from poller.sources.kafka.codec import KafkaCodec
from poller.sources.kafka.options import KafkaEventSourceConfig, KafkaMappingOptions, KafkaSettings
from poller.sources.kafka.records import KafkaRecord
from poller.sources.kafka.spec import SPEC

__all__ = [
    "SPEC",
    "KafkaCodec",
    "KafkaEventSourceConfig",
    "KafkaMappingOptions",
    "KafkaRecord",
    "KafkaSettings",
]
