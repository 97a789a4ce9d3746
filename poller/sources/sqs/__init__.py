"""Amazon SQS, standard and FIFO: a visibility-timeout queue, Lambda's ``aws:sqs`` event.

The package: :mod:`.spec` (what the registry knows), :mod:`.options` (``ScalingConfig``,
``VisibilityHeartbeat`` and SQS's rules), :mod:`.records`, :mod:`.codec` (AWS's shapes),
:mod:`.source` (receiving and settling through the SQS API).
"""

from poller.sources.sqs.codec import SqsCodec
from poller.sources.sqs.options import SqsMappingOptions
from poller.sources.sqs.records import SqsRecord
from poller.sources.sqs.spec import SPEC

__all__ = ["SPEC", "SqsCodec", "SqsMappingOptions", "SqsRecord"]
