"""How a batch reaches code: functions and their execution environments.

Three ways, one seam (:class:`~poller.functions.base.Function`: rendered event in, reply out):

* :mod:`~poller.functions.pool` and :mod:`~poller.functions.process`: environments as processes
  poller starts (a ``Handler`` with process isolation, run by poller's own Python client in
  :mod:`~poller.functions.bootstrap`, or any runtime client given as ``Command``);
* :mod:`~poller.functions.external`: environments that connect from elsewhere (``RuntimeApi``);
* :mod:`~poller.functions.http_app`: an HTTP application (``Url``).

They all speak through :mod:`~poller.functions.runtime_api` (the Lambda Runtime API server) or
HTTP, and answer a :mod:`~poller.functions.reply`. :mod:`~poller.functions.catalog` builds them from
``[[functions]]``; :mod:`~poller.functions.lambda_target` is a mapping's side of one.

Handlers that run inside the worker keep their own targets: :mod:`~poller.functions.typed`
(``f(batch)``) and :mod:`~poller.functions.in_thread` (``f(event, context)``), chosen by
:func:`target_for`.
"""

from poller.functions.base import Function
from poller.functions.catalog import FunctionSet
from poller.functions.context import LambdaContext
from poller.functions.in_thread import LambdaTarget
from poller.functions.lambda_target import FunctionTarget
from poller.functions.loader import load_handler
from poller.functions.reply import FunctionError, Reply, Response
from poller.functions.styles import is_typed, target_for
from poller.functions.typed import TypedTarget

__all__ = [
    "Function",
    "FunctionError",
    "FunctionSet",
    "FunctionTarget",
    "LambdaContext",
    "LambdaTarget",
    "Reply",
    "Response",
    "TypedTarget",
    "is_typed",
    "load_handler",
    "target_for",
]
