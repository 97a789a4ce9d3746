"""Broker credentials: Secrets Manager over HTTP (moto server), env, file and inline secrets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from poller.aws import AwsClients
from poller.config import AwsConfig, SourceAccess
from poller.errors import SourceError
from poller.sources.credentials import (
    read_basic_auth,
    read_client_certificate,
    read_root_certificate,
    read_secret,
)


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    aws = AwsClients(AwsConfig(region="us-east-1"), endpoint_url=moto_endpoint)
    try:
        yield aws
    finally:
        await aws.aclose()


async def test_secrets_manager_secret_is_read_by_arn(clients: AwsClients, unique_name: str) -> None:
    secrets = await clients.client("secretsmanager")
    created = await secrets.create_secret(
        Name=unique_name, SecretString=json.dumps({"username": "alice", "password": "s3cret"})
    )
    auth = await read_basic_auth(SourceAccess("SASL_SCRAM_512_AUTH", created["ARN"]), clients)
    assert (auth.username, auth.password) == ("alice", "s3cret")
    assert "s3cret" not in repr(auth)


async def test_missing_secret_is_a_clear_source_error(clients: AwsClients) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(
        SourceError, match=r"BASIC_AUTH: cannot read secret .*nope.*ResourceNotFound"
    ):
        await read_basic_auth(SourceAccess("BASIC_AUTH", arn), clients)


async def test_env_file_and_inline_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLER_TEST_SECRET", json.dumps({"username": "e", "password": "p1"}))
    auth = await read_basic_auth(SourceAccess("BASIC_AUTH", "env:POLLER_TEST_SECRET"), None)
    assert (auth.username, auth.password) == ("e", "p1")

    pem = tmp_path / "client.json"
    pem.write_text(json.dumps({"certificate": "CERT", "privateKey": "KEY"}))
    certificate = await read_client_certificate(
        SourceAccess("CLIENT_CERTIFICATE_TLS_AUTH", f"file:{pem}"), None
    )
    assert (certificate.certificate, certificate.private_key) == ("CERT", "KEY")
    assert certificate.private_key_password is None

    inline = SourceAccess("SERVER_ROOT_CA_CERTIFICATE", None, {"certificate": "CA"})
    assert await read_root_certificate(inline, None) == "CA"


async def test_bad_secrets_name_the_entry_not_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SourceError, match="environment variable 'POLLER_NOT_SET' is not set"):
        await read_secret(SourceAccess("BASIC_AUTH", "env:POLLER_NOT_SET"), None)
    bad = tmp_path / "bad.json"
    bad.write_text("not json hunter2")
    with pytest.raises(SourceError, match="is not JSON") as caught:
        await read_secret(SourceAccess("BASIC_AUTH", f"file:{bad}"), None)
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("POLLER_TEST_SECRET", json.dumps({"username": "only"}))
    with pytest.raises(SourceError, match="BASIC_AUTH: the secret has no 'password'"):
        await read_basic_auth(SourceAccess("BASIC_AUTH", "env:POLLER_TEST_SECRET"), None)
    with pytest.raises(SourceError, match="cannot read"):
        await read_secret(SourceAccess("BASIC_AUTH", f"file:{tmp_path / 'missing'}"), None)
