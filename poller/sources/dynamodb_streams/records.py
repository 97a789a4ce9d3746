"""The records of a DynamoDB stream, as typed handlers receive them, and DynamoDB JSON."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from poller.sources.shards.records import ShardRecord

__all__ = ["DynamoDBRecord", "from_attribute_value", "from_dynamodb_json"]


@dataclass(frozen=True, slots=True)
class DynamoDBRecord(ShardRecord):
    """A DynamoDB Streams record, as typed handlers receive it.

    ``data`` is the record's ``dynamodb`` block as JSON text, exactly as the stream returned it
    (DynamoDB JSON: every value tagged with its type, ``{"S": "x"}``, binary values in base64);
    ``key`` is the item's primary key as canonical JSON, so lanes keep each item's changes in
    order; ``arrival`` is ApproximateCreationDateTime; ``native`` holds the stream record as the
    client returned it.

    The images come two ways: ``keys``, ``new_image`` and ``old_image`` in DynamoDB JSON, and
    ``item_keys``, ``new_item`` and ``old_item`` as plain Python values (see
    :func:`from_dynamodb_json`). Each is decoded from ``data`` when asked for: keep the result
    rather than asking twice.
    """

    @property
    def event_id(self) -> str:
        """The stream record's unique id (``eventID``)."""
        return str((self.native or {}).get("eventID") or self.position)

    @property
    def event_name(self) -> str:
        """``INSERT``, ``MODIFY`` or ``REMOVE``."""
        return str((self.native or {}).get("eventName") or "")

    @property
    def user_identity(self) -> dict[str, Any] | None:
        """Who made the change when it was not a client (TTL deletes name the service), or None."""
        identity = (self.native or {}).get("userIdentity")
        return dict(identity) if identity else None

    @property
    def approximate_creation_time(self) -> float:
        """When the change was made, epoch seconds (ApproximateCreationDateTime)."""
        return self.arrival

    @property
    def dynamodb(self) -> dict[str, Any]:
        """The ``dynamodb`` block in DynamoDB JSON, as the stream returned it (a fresh copy)."""
        block: dict[str, Any] = json.loads(self.data)
        return block

    @property
    def stream_view_type(self) -> str | None:
        """KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES."""
        view = self.dynamodb.get("StreamViewType")
        return str(view) if view is not None else None

    @property
    def size_bytes(self) -> int | None:
        """The stream record's size as DynamoDB counts it (``SizeBytes``)."""
        size = self.dynamodb.get("SizeBytes")
        return int(size) if size is not None else None

    @property
    def keys(self) -> dict[str, Any]:
        """The item's primary key attributes, in DynamoDB JSON."""
        keys: dict[str, Any] = self.dynamodb.get("Keys") or {}
        return keys

    @property
    def new_image(self) -> dict[str, Any] | None:
        """The item after the change, in DynamoDB JSON (NEW_IMAGE views; None for REMOVE)."""
        image: dict[str, Any] | None = self.dynamodb.get("NewImage")
        return image

    @property
    def old_image(self) -> dict[str, Any] | None:
        """The item before the change, in DynamoDB JSON (OLD_IMAGE views; None for INSERT)."""
        image: dict[str, Any] | None = self.dynamodb.get("OldImage")
        return image

    @property
    def item_keys(self) -> dict[str, Any]:
        """The item's primary key as Python values (``{"pk": "a", "sk": Decimal("1")}``)."""
        return from_dynamodb_json(self.keys)

    @property
    def new_item(self) -> dict[str, Any] | None:
        """The item after the change as Python values, or None."""
        image = self.new_image
        return from_dynamodb_json(image) if image is not None else None

    @property
    def old_item(self) -> dict[str, Any] | None:
        """The item before the change as Python values, or None."""
        image = self.old_image
        return from_dynamodb_json(image) if image is not None else None


def from_dynamodb_json(image: Mapping[str, Any]) -> dict[str, Any]:
    """An item (or key, or image) in DynamoDB JSON as Python values.

    ``{"n": {"N": "1.5"}, "tags": {"SS": ["a"]}}`` becomes ``{"n": Decimal("1.5"), "tags": {"a"}}``;
    see :func:`from_attribute_value` for each type.
    """
    return {name: from_attribute_value(value) for name, value in image.items()}


def from_attribute_value(value: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as a Python value.

    S -> str, N -> Decimal (exact, as DynamoDB keeps numbers), B -> bytes (from base64, or bytes
    as a client may already have decoded them), BOOL -> bool, NULL -> None, M -> dict, L -> list,
    SS -> set of str, NS -> set of Decimal, BS -> set of bytes. Raises ValueError for anything
    else.
    """
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "S":
            return str(inner)
        if tag == "N":
            return Decimal(inner)
        if tag == "B":
            return _binary(inner)
        if tag == "BOOL":
            return bool(inner)
        if tag == "NULL":
            return None
        if tag == "M":
            return from_dynamodb_json(inner)
        if tag == "L":
            return [from_attribute_value(item) for item in inner]
        if tag == "SS":
            return {str(item) for item in inner}
        if tag == "NS":
            return {Decimal(item) for item in inner}
        if tag == "BS":
            return {_binary(item) for item in inner}
    raise ValueError(f"not a DynamoDB attribute value: {value!r}")


def _binary(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError) as error:
        raise ValueError(f"not a base64 binary value: {value!r}") from error
