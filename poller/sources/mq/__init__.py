"""Message brokers (Amazon MQ or self-managed): the family core RabbitMQ and ActiveMQ share.

The package: :mod:`.spec` (what the registry knows: one spec, two engines), :mod:`.options`
(``Queues``, ``MaximumRedeliveries`` and MQ's rules), :mod:`.records` (``BrokerRecord``),
:mod:`.endpoints` (URLs, Amazon MQ's DescribeBroker, logins, virtual hosts) and :mod:`.buffer`
(the consumer buffer and redelivery counts). The engines are :mod:`poller.sources.rabbitmq` and
:mod:`poller.sources.activemq`.
"""

from poller.sources.mq.options import MqMappingOptions, MqSettings
from poller.sources.mq.records import BrokerRecord
from poller.sources.mq.spec import SPEC

__all__ = ["SPEC", "BrokerRecord", "MqMappingOptions", "MqSettings"]
