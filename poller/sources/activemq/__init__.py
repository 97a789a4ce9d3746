"""ActiveMQ (STOMP 1.2): an engine of the MQ family, Lambda's ``aws:mq`` event.

The package: :mod:`.records`, :mod:`.codec` (AWS's shapes) and, needing the ``activemq`` extra
(stompman): :mod:`.source` (connection, subscription, settling). Importing this package face does
not import stompman.
"""

from poller.sources.activemq.codec import ActiveMqCodec
from poller.sources.activemq.records import ActiveMqDelivery, ActiveMqRecord

__all__ = ["ActiveMqCodec", "ActiveMqDelivery", "ActiveMqRecord"]
