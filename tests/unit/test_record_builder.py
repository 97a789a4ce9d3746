"""The fast record builder makes exactly the records the constructors make, and the Kinesis
reader's records from GetRecords entries carry the fields and sizes they always did."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poller.records import Record, record_builder
from poller.sources.kinesis.records import PLAIN, KinesisRecord, encrypted
from poller.sources.kinesis.source import KinesisSource

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
SHARD = "shardId-000000000007"

record_fields = st.tuples(
    st.text(max_size=20),
    st.text(max_size=60),
    st.integers(min_value=0, max_value=2**190),
    st.text(max_size=30),
    st.binary(max_size=64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=6 * 1024 * 1024),
    st.sampled_from([None, PLAIN, encrypted("KMS"), {"x": 1}]),
)


@given(record_fields)
def test_builder_makes_the_record_the_constructor_makes(values: tuple[Any, ...]) -> None:
    built = record_builder(KinesisRecord)(*values)
    made = KinesisRecord(*values)
    assert type(built) is KinesisRecord
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)
    assert all(getattr(built, f.name) is getattr(made, f.name) for f in dataclasses.fields(made))


def test_built_records_stay_frozen() -> None:
    built = record_builder(KinesisRecord)("s", "1", 1, "k", b"d", 1.0, 3, PLAIN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.position = "2"  # type: ignore[misc]
    assert dataclasses.replace(built, position="2").position == "2"


def test_builder_defaults_native_to_none_as_the_constructor_does() -> None:
    built = record_builder(Record)("s", "1", 1, "k", b"d", 1.0, 3)
    assert built.native is None
    assert built == Record("s", "1", 1, "k", b"d", 1.0, 3)


def test_builder_refuses_a_record_type_with_fields_of_its_own() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tagged(Record):
        tag: str = ""

    with pytest.raises(ValueError, match=r"Tagged has fields .*'tag'.* only record types"):
        record_builder(Tagged)


class _NoCalls:
    """The reader's client: never called when only GetRecords entries are turned into records."""


def _entry(seq: str, key: str, data: bytes, stamp: Any, **extra: Any) -> dict[str, Any]:
    return {
        "SequenceNumber": seq,
        "PartitionKey": key,
        "Data": data,
        "ApproximateArrivalTimestamp": stamp,
        **extra,
    }


def test_kinesis_entries_become_records_with_their_fields_and_sizes() -> None:
    source = KinesisSource(STREAM, _NoCalls(), "us-east-1")  # type: ignore[arg-type]
    envelope = source.codec.envelope_size(SHARD)
    seq = "49654124705932553066467926040331584096744325245104439298"
    entries = [
        _entry(seq, "plain", b"hello", 1764635000.123),
        _entry(
            str(int(seq) + 1),
            "ключ",
            b"\x00\xff",
            datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC),
            EncryptionType="KMS",
        ),
        _entry(str(int(seq) + 2), "k", b"", 1764635001, EncryptionType="NONE"),
    ]
    first, second, third = source.parse_records(SHARD, entries)

    assert first == KinesisRecord(
        SHARD, seq, int(seq), "plain", b"hello", 1764635000.123, first.size, PLAIN
    )
    assert first.size == envelope + 2 * len(seq) + len("aGVsbG8=") + len("plain")
    assert first.native is PLAIN

    assert second.ordinal == int(seq) + 1 and second.key == "ключ"
    assert second.arrival == round(
        datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC).timestamp(), 3
    )
    assert second.native == {"encryptionType": "KMS"}
    assert second.size == envelope + 2 * len(seq) + len("AP8=") + len(json.dumps("ключ")) - 2

    assert third.arrival == 1764635001.0 and isinstance(third.arrival, float)
    assert third.native is PLAIN
    assert third.size == envelope + 2 * len(seq) + len("k")
    assert all(type(record) is KinesisRecord for record in (first, second, third))
