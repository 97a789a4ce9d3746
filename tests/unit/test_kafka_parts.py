"""Kafka parts that need no broker: item identifiers, the AWS event and KafkaBatchInfo, the
connection settings derived from SourceAccessConfigurations and MSK, and the committed-offset
checkpoint store."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from poller import KafkaRecord
from poller.config import ResolvedMapping, parse_config
from poller.engine.outcome import (
    Failed,
    PartiallyFailed,
    item_key,
    parse_lambda_response,
    parse_typed_result,
)
from poller.engine.state import Checkpoint
from poller.errors import SourceError
from poller.sources.kafka.connection import KafkaConnection, kafka_connection
from poller.sources.kafka.offsets import CommittedOffsetStore
from poller.sources.kafka.source import KafkaSource
from poller.stores.memory import MemoryStore

MSK = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/abcd-1234"


def mapping(**fields: Any) -> ResolvedMapping:
    base: dict[str, Any] = {
        "SelfManagedEventSource": {
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b1:9092", "b2:9092"]}
        },
        "Topics": ["orders"],
        "StartingPosition": "TRIM_HORIZON",
        "Handler": "app:handle",
    }
    base.update(fields)
    if "EventSourceArn" in fields:
        del base["SelfManagedEventSource"]
    return parse_config({"mappings": [base]}).mappings[0].resolved()


def record(offset: int, value: bytes | None = b"v", key: bytes | None = b"k") -> KafkaRecord:
    native = ConsumerRecord(
        topic="orders",
        partition=2,
        offset=offset,
        timestamp=1_700_000_000_500 + offset * 1000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[("trace", b"ab"), ("empty", None)],
    )
    return KafkaRecord(
        partition="orders-2",
        position=str(offset),
        ordinal=offset,
        key="",
        data=value or b"",
        arrival=native.timestamp / 1000,
        size=100,
        native=native,
    )


# --- item identifiers --------------------------------------------------------------------------


def test_item_key_reads_strings_and_kafka_pairs_and_refuses_the_rest() -> None:
    assert item_key("49590338271490256608559692538361571095921575989136588898") is not None
    assert item_key({"partition": "orders-2", "offset": 7}) == ("orders-2", 7)
    for bad in (
        "",
        None,
        7,
        {"partition": "orders-2"},
        {"partition": "orders-2", "offset": "7"},
        {"partition": "orders-2", "offset": True},
        {"partition": 2, "offset": 7},
        {"partition": "orders-2", "offset": 7, "extra": 1},
    ):
        assert item_key(bad) is None, bad


def test_kafka_item_failures_name_records_by_partition_and_offset() -> None:
    source = KafkaSource(mapping(), KafkaConnection(("b1:9092",)))
    batch = [record(5), record(6), record(7)]
    response = {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-2", "offset": 6}}]}
    outcome = parse_lambda_response(
        response, batch, source.codec.item_identifier, report_batch_item_failures=True
    )
    assert outcome == PartiallyFailed((1,))
    unknown = {"batchItemFailures": [{"itemIdentifier": {"partition": "orders-1", "offset": 6}}]}
    assert isinstance(
        parse_lambda_response(
            unknown, batch, source.codec.item_identifier, report_batch_item_failures=True
        ),
        Failed,
    )
    typed = parse_typed_result(
        [{"partition": "orders-2", "offset": 7}], batch, source.codec.item_identifier
    )
    assert typed == PartiallyFailed((2,))


# --- the event and KafkaBatchInfo ----------------------------------------------------------------


def test_self_managed_event_has_aws_shape() -> None:
    source = KafkaSource(mapping(), KafkaConnection(("b1:9092", "b2:9092")))
    event = source.codec.render_event([record(5), record(6, value=None, key=None)])
    assert event["eventSource"] == "SelfManagedKafka"
    assert "eventSourceArn" not in event
    assert event["bootstrapServers"] == "b1:9092,b2:9092"
    first, tombstone = event["records"]["orders-2"]
    assert first == {
        "topic": "orders",
        "partition": 2,
        "offset": 5,
        "timestamp": 1_700_000_005_500,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"k").decode(),
        "value": base64.b64encode(b"v").decode(),
        "headers": [{"trace": [97, 98]}, {"empty": []}],
    }
    assert "key" not in tombstone and tombstone["value"] is None
    json.dumps(event)  # the event is JSON as it stands


def test_msk_event_and_batch_info_name_the_cluster() -> None:
    source = KafkaSource(mapping(EventSourceArn=MSK), KafkaConnection(("b-1.msk:9094",)))
    event = source.codec.render_event([record(1)])
    assert (event["eventSource"], event["eventSourceArn"]) == ("aws:kafka", MSK)
    key, info = source.codec.batch_info([record(3), record(4), record(9)])
    assert key == "KafkaBatchInfo"
    assert info["batchSize"] == 3
    assert info["eventSourceArn"] == MSK
    assert info["bootstrapServers"] == "b-1.msk:9094"
    assert info["payloadSize"] == len(
        json.dumps(
            source.codec.render_event([record(3), record(4), record(9)]), separators=(",", ":")
        )
    )
    assert info["recordsInfo"] == {
        "orders-2": {
            "firstRecordOffset": "3",
            "firstRecordTimestamp": "2023-11-14T22:13:23.500Z",
            "lastRecordOffset": "9",
            "lastRecordTimestamp": "2023-11-14T22:13:29.500Z",
        }
    }


# --- connection settings ------------------------------------------------------------------------


async def test_no_access_configuration_is_plaintext() -> None:
    connection = await kafka_connection(mapping(), None)
    assert connection.client_kwargs() == {
        "bootstrap_servers": ["b1:9092", "b2:9092"],
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize(
    ("access_type", "mechanism"),
    [
        ("BASIC_AUTH", "PLAIN"),
        ("SASL_SCRAM_256_AUTH", "SCRAM-SHA-256"),
        ("SASL_SCRAM_512_AUTH", "SCRAM-SHA-512"),
    ],
)
async def test_sasl_types_map_to_sasl_over_tls(access_type: str, mechanism: str) -> None:
    secret = {"username": "alice", "password": "s3cret"}
    resolved = mapping(SourceAccessConfigurations=[{"Type": access_type, "Secret": secret}])
    connection = await kafka_connection(resolved, None)
    kwargs = connection.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("alice", "s3cret")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert "s3cret" not in repr(connection)


def _self_signed() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "poller-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key_pem


async def test_client_certificate_and_private_ca_make_a_tls_context() -> None:
    certificate, key = _self_signed()
    resolved = mapping(
        SourceAccessConfigurations=[
            {
                "Type": "CLIENT_CERTIFICATE_TLS_AUTH",
                "Secret": {"certificate": certificate, "privateKey": key},
            },
            {"Type": "SERVER_ROOT_CA_CERTIFICATE", "Secret": {"certificate": certificate}},
        ]
    )
    connection = await kafka_connection(resolved, None)
    kwargs = connection.client_kwargs()
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert any(c.get("subject") for c in context.get_ca_certs())


async def test_a_bad_client_key_is_a_clear_error() -> None:
    certificate, _ = _self_signed()
    resolved = mapping(
        SourceAccessConfigurations=[
            {
                "Type": "CLIENT_CERTIFICATE_TLS_AUTH",
                "Secret": {"certificate": certificate, "privateKey": "not a key"},
            }
        ]
    )
    with pytest.raises(SourceError, match="CLIENT_CERTIFICATE_TLS_AUTH: cannot load"):
        await kafka_connection(resolved, None)


class _Msk:
    def __init__(self, brokers: dict[str, str]) -> None:
        self.brokers = brokers
        self.asked: list[str] = []

    async def get_bootstrap_brokers(self, ClusterArn: str) -> dict[str, str]:
        self.asked.append(ClusterArn)
        return self.brokers


class _Clients:
    def __init__(self, msk: _Msk) -> None:
        self._msk = msk
        self.region = "us-east-1"

    async def client(self, service: str) -> Any:
        assert service == "kafka"
        return self._msk


async def test_msk_bootstrap_servers_follow_the_authentication() -> None:
    msk = _Msk(
        {
            "BootstrapBrokerString": "b-1:9092,b-2:9092",
            "BootstrapBrokerStringTls": "b-1:9094,b-2:9094",
            "BootstrapBrokerStringSaslScram": "b-1:9096",
        }
    )
    clients: Any = _Clients(msk)
    plain = await kafka_connection(mapping(EventSourceArn=MSK), clients)
    assert plain.bootstrap_servers == ("b-1:9092", "b-2:9092")
    secret = {"username": "u", "password": "p"}
    scram = await kafka_connection(
        mapping(
            EventSourceArn=MSK,
            SourceAccessConfigurations=[{"Type": "SASL_SCRAM_512_AUTH", "Secret": secret}],
        ),
        clients,
    )
    assert scram.bootstrap_servers == ("b-1:9096",)
    assert msk.asked == [MSK, MSK]
    msk.brokers = {"BootstrapBrokerString": "b-1:9092"}
    with pytest.raises(SourceError, match="no BootstrapBrokerStringSaslScram listener"):
        await kafka_connection(
            mapping(
                EventSourceArn=MSK,
                SourceAccessConfigurations=[{"Type": "SASL_SCRAM_256_AUTH", "Secret": secret}],
            ),
            clients,
        )


# --- committed offsets as checkpoints ------------------------------------------------------------


class _Committer:
    def __init__(self) -> None:
        self.committed: dict[str, int] = {}
        self.position = 42

    async def committed_offset(self, partition: str) -> int | None:
        return self.committed.get(partition)

    async def current_offset(self, partition: str) -> int:
        return self.position

    async def commit_offset(self, partition: str, next_offset: int) -> bool:
        self.committed[partition] = next_offset
        return True


async def test_checkpoints_are_committed_offsets_one_ahead() -> None:
    committer = _Committer()
    store = CommittedOffsetStore(MemoryStore(), committer)
    assert await store.get_checkpoint("m", "orders-0") is None
    await store.put_checkpoint("m", "orders-0", Checkpoint(position="9", ordinal=9))
    assert committer.committed == {"orders-0": 10}
    assert await store.get_checkpoint("m", "orders-0") == Checkpoint(position="9", ordinal=9)
    committer.committed["orders-1"] = 0
    assert await store.get_checkpoint("m", "orders-1") == Checkpoint(position="-1", ordinal=-1)
    # The LATEST start marker pins the reader's first offset; partitions never finish.
    await store.put_checkpoint("m", "orders-2", Checkpoint(position="", ordinal=0, opened_at=1.0))
    assert committer.committed["orders-2"] == 42
    await store.put_checkpoint(
        "m", "orders-0", Checkpoint(position="20", ordinal=20, finished=True)
    )
    assert committer.committed["orders-0"] == 10


async def test_idempotency_records_stay_in_the_wrapped_store() -> None:
    inner = MemoryStore()
    store = CommittedOffsetStore(inner, _Committer())
    await store.remember_succeeded("m", "orders-0", ["3", "4"], expires_at=4e9)
    assert await inner.succeeded_among("m", "orders-0", ["3", "5"]) == frozenset({"3"})
    assert await store.succeeded_among("m", "orders-0", ["4"]) == frozenset({"4"})
