"""How poller spells instants in AWS's documents: ISO 8601 in UTC, as the on-failure records do."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["instant", "iso_millis", "iso_seconds"]


def instant(epoch_seconds: float) -> datetime:
    """The UTC moment of ``epoch_seconds``, rounded to whole milliseconds first.

    Rounding first means one instant always prints the same way (1.345 stored as 1.34499... does
    not lose a millisecond), in a record's timestamp and an S3 key alike.
    """
    millis = round(epoch_seconds * 1000)
    seconds, remainder = divmod(millis, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=remainder * 1000)


def iso_millis(epoch_seconds: float) -> str:
    """``2019-11-14T00:38:04.835Z``: milliseconds and a ``Z``, as most AWS records spell times."""
    moment = instant(epoch_seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def iso_seconds(epoch_seconds: float) -> str:
    """``2019-11-14T00:13:19Z``: whole seconds (cut, not rounded), as DynamoDB's records do."""
    return f"{datetime.fromtimestamp(int(epoch_seconds // 1), UTC):%Y-%m-%dT%H:%M:%SZ}"
