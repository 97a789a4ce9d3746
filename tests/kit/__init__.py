"""The test kit shared by every suite: names, waits, builders, clients, recorders, runners.

User-facing doubles (in-memory sources, recording handlers, waits) live in :mod:`poller.testing`;
this package adds what only poller's own tests need, once, so that no source's tests import another
source's helpers. Tests import from the package face; the modules say where each thing lives:

* :mod:`.names`: the moto account and region, unique ids, a logical clock;
* :mod:`.waits`: waits that fail with a message naming what they waited for (:func:`wait_until`,
  re-exported from :mod:`poller.testing`, and the waits built on it or beside it);
* :mod:`.configs`: mappings and configs under AWS field names, with test-friendly defaults;
* :mod:`.aws`: clients and resources on the moto server, set up with plain aiobotocore clients
  (not poller's own), so the setup does not depend on the code under test;
* :mod:`.brokers`: RabbitMQ and ActiveMQ seen through their plain client libraries;
* :mod:`.recorders`: Lambda-style and typed handlers that keep what they were handed;
* :mod:`.engine`: runners built straight on the engine, and the sinks and stores that log what the
  engine did;
* :mod:`.processes`: ``poller run`` child processes;
* :mod:`.metrics`: a worker's ``/metrics``, scraped and parsed;
* :mod:`.functions`: handler modules on disk, ``[[functions]]`` configs and workers that run them;
  ``runtimes/`` holds runtime clients in other languages.
"""

from tests.kit.aws import *  # noqa: F403
from tests.kit.brokers import *  # noqa: F403
from tests.kit.configs import *  # noqa: F403
from tests.kit.engine import *  # noqa: F403
from tests.kit.functions import *  # noqa: F403
from tests.kit.metrics import *  # noqa: F403
from tests.kit.names import *  # noqa: F403
from tests.kit.processes import *  # noqa: F403
from tests.kit.recorders import *  # noqa: F403
from tests.kit.waits import *  # noqa: F403
