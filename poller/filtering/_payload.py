"""A record's data field as filters see it: decoded JSON, the plain text, or "not JSON".

AWS filters a record's data (SQS ``body``, Kinesis and MQ ``data``, Kafka ``value``) on its
decoded content: a pattern object under the data key reaches into the JSON, a list of values
under it compares the plain string. What happens when the payload and the pattern disagree
depends on the source (AWS's tables, in force here through the engine):

* SQS: a JSON body against a plain-string pattern, or a plain body against a JSON pattern, is
  dropped (the message is deleted as filtered).
* Kinesis and DynamoDB Streams: the data must be JSON; a record whose data is not JSON fails
  every pattern on ``data`` and is skipped. A pattern on ``data`` that is not an object is
  refused when the mapping is created.
* Kafka and Amazon MQ: the payload must be UTF-8; when it is not, or when its format does not
  match the pattern's, AWS applies the pattern's other (metadata) fields only
  (``Pattern.without``).
* Which keys a pattern may use at all is the source's rule too: AWS's pages say SQS mappings
  filter on ``body`` only (not ``messageAttributes``), MQ on ``data``, Kafka on ``value``;
  Kinesis and DynamoDB also filter on record metadata (``partitionKey``, ``eventName``, ...).

:func:`decode_payload` implements the decoding: JSON when the bytes are UTF-8 and hold a JSON
object or array (the forms that have fields to filter on), the text itself for other UTF-8 when
the source compares plain strings, and otherwise :data:`NOT_JSON`, a value on which every
pattern clause fails, ``exists: false`` and ``anything-but`` included. JSON is read strictly
(no NaN or Infinity, numbers beyond a double refused), as AWS's parser does.
"""

from __future__ import annotations

from typing import Any, Final, final

import orjson

__all__ = ["NOT_JSON", "NotJson", "decode_payload"]


@final
class NotJson:
    """The type of :data:`NOT_JSON`: a data field that cannot be filtered on."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_JSON"

    def __reduce__(self) -> str:
        return "NOT_JSON"


#: Put in a document in place of a data field that is not JSON: no pattern on it matches.
NOT_JSON: Final = NotJson()


def decode_payload(raw: bytes | bytearray | memoryview | str, *, plain_text: bool = False) -> Any:
    """The data field as filters compare it.

    JSON objects and arrays are decoded. Any other payload is :data:`NOT_JSON`, except that with
    ``plain_text`` (SQS bodies, Kafka values, MQ data: sources that can filter plain strings)
    valid UTF-8 text is returned as the string itself. Invalid UTF-8 is always NOT_JSON.
    """
    if isinstance(raw, memoryview | bytearray):
        raw = bytes(raw)
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        decoded = NOT_JSON
    if type(decoded) is dict or type(decoded) is list:
        return decoded
    if not plain_text:
        return NOT_JSON
    if isinstance(raw, str):
        return raw if _encodable(raw) else NOT_JSON
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_JSON


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates), as UTF-8 text must be."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
