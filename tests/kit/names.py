"""Names and ids every suite uses: the moto account and region, unique ids, a logical clock."""

from __future__ import annotations

import itertools
import uuid

__all__ = ["ACCOUNT", "CREDENTIALS", "KINESIS_ARN", "REGION", "new_id", "tick"]

REGION = "us-east-1"
#: The account moto puts in every ARN.
ACCOUNT = "123456789012"
#: The stream of :func:`mapping`'s default Kinesis mapping (in-memory sources take any ARN).
KINESIS_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/harness"
#: Static dummy credentials for plain aiobotocore clients on moto (never real AWS).
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_clock = itertools.count()


def tick() -> int:
    """A strictly increasing logical time shared by every log of the kit."""
    return next(_clock)


def new_id() -> str:
    """A fresh mapping UUID, so tests sharing one server never meet."""
    return str(uuid.uuid4())
