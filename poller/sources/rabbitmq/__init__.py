"""RabbitMQ (AMQP 0-9-1): an engine of the MQ family, Lambda's ``aws:rmq`` event.

The package: :mod:`.records`, :mod:`.codec` (AWS's shapes) and, needing the ``rabbitmq`` extra
(aio-pika): :mod:`.source` (connection, consumer, settling). Importing this package face does not
import aio-pika.
"""

from poller.sources.rabbitmq.codec import RabbitMqCodec
from poller.sources.rabbitmq.records import RabbitMqDelivery, RabbitMqRecord

__all__ = ["RabbitMqCodec", "RabbitMqDelivery", "RabbitMqRecord"]
