"""Certificates made for the tests: a private CA, server and client certificates it signs.

The TLS tests need brokers whose certificates a client can check (or fail to check) for real:
a CA the client trusts or not, a server certificate valid for ``localhost`` only (so connecting
by ``127.0.0.1`` is a hostname mismatch), an expired one, client certificates signed by the
broker's CA or by another. Keys are EC P-256: quick to make on a loaded machine, and every
broker here (Erlang's ssl, Java's JSSE, Python's ssl) takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "IssuedCertificate",
    "ServerTls",
    "TlsRelay",
    "handshake_only_listener",
]

_ONE_DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "poller tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key, as PEM text (the shapes Lambda's secrets hold)."""

    certificate: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    def private_key(self, password: str | None = None) -> str:
        """The key as PKCS#8 PEM, encrypted with ``password`` when given."""
        return _pem_key(self.key, password)

    def secret(self, password: str | None = None) -> dict[str, str]:
        """A CLIENT_CERTIFICATE_TLS_AUTH secret: certificate, key and the key's password."""
        secret = {"certificate": self.certificate, "privateKey": self.private_key(password)}
        if password:
            secret["privateKeyPassword"] = password
        return secret


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A self-signed CA that issues the tests' server and client certificates."""

    name: str
    certificate: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(name, certificate.public_bytes(serialization.Encoding.PEM).decode(), key)

    def secret(self) -> dict[str, str]:
        """A SERVER_ROOT_CA_CERTIFICATE secret trusting this CA."""
        return {"certificate": self.certificate}

    def issue(
        self,
        common_name: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        client: bool = False,
        expired: bool = False,
    ) -> IssuedCertificate:
        """A leaf certificate: for a server (``dns_names``/``ip_addresses`` as its subject
        alternative names) or, with ``client``, for TLS client authentication. ``expired``
        makes one whose validity ended yesterday."""
        issuer = x509.load_pem_x509_certificate(self.certificate.encode())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start, end = (
            (now - 10 * _ONE_DAY, now - _ONE_DAY)
            if expired
            else (now - _ONE_DAY, now + 30 * _ONE_DAY)
        )
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM).decode(), key)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A broker's TLS material written to a directory: what scripts/servers.py's ``TlsFiles``
    points at, plus the CA and a client certificate the tests log in with."""

    authority: CertificateAuthority
    server: IssuedCertificate
    client: IssuedCertificate
    ca_file: Path
    certificate_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> ServerTls:
        """A CA named ``name``, a server certificate for ``localhost`` only and a client
        certificate, the server's files in ``directory`` (created, private)."""
        directory.mkdir(parents=True, exist_ok=True)
        authority = CertificateAuthority.create(f"{name} test CA")
        server = authority.issue(name, dns_names=["localhost"])
        client = authority.issue("poller-client", client=True)
        ca_file, certificate_file, key_file = (
            directory / "ca.pem",
            directory / "server.pem",
            directory / "server.key",
        )
        ca_file.write_text(authority.certificate)
        certificate_file.write_text(server.certificate)
        key_file.write_text(server.private_key())
        key_file.chmod(0o600)
        return cls(authority, server, client, ca_file, certificate_file, key_file)


@contextlib.asynccontextmanager
async def handshake_only_listener(
    certificate: IssuedCertificate, *, client_ca: CertificateAuthority | None = None
) -> AsyncIterator[int]:
    """A TLS listener on loopback that presents ``certificate`` and does nothing else; yields
    its port. It stands in for a broker where only the handshake matters (an expired broker
    certificate is refused before any broker protocol is spoken). With ``client_ca`` it
    requires a client certificate that CA signed.

    It serves from a thread with blocking sockets, so the alert that refuses a client's
    certificate reaches the client (a memory-BIO server can drop it when the handshake fails).
    """
    context = _server_context(certificate, client_ca)
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def handshake(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):  # the client gives up mid-handshake
            connection.settimeout(10)
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)

    def serve() -> None:
        with listener:
            while not stop.is_set():
                try:
                    connection, _address = listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=handshake, args=(connection,), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        await anyio.to_thread.run_sync(server.join)


def _server_context(
    certificate: IssuedCertificate, client_ca: CertificateAuthority | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.certificate)
    with tempfile.TemporaryDirectory(prefix="poller-test-tls-") as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_text(certificate.certificate)
        key.write_text(certificate.private_key())
        context.load_cert_chain(cert, key)
    return context


class TlsRelay:
    """A TLS-terminating relay on loopback (what stunnel does): each TLS connection it accepts
    is passed on, decrypted, to ``upstream``. It puts TLS in front of a server that cannot serve
    TLS itself, so a client's TLS settings meet a real TLS server and the real protocol behind.

    Runs its own event loop in a thread, so one relay serves a whole test session. With
    ``client_ca`` it requires client certificates that CA signed.
    """

    def __init__(
        self,
        certificate: IssuedCertificate,
        upstream: tuple[str, int],
        *,
        client_ca: CertificateAuthority | None = None,
    ) -> None:
        self._context = _server_context(certificate, client_ca)
        self._upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        #: The relay's port on 127.0.0.1 (set when it starts).
        self.port = 0

    def __enter__(self) -> TlsRelay:
        self._thread.start()
        start = asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._context)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(30)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
