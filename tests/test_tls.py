"""`visage serve --tls-cert --tls-key`: HTTPS, checked by boto3 and the AWS CLI against the test's own CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import SSLError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .conftest import RunningServer


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 and localhost: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Visage test CA"))
        .issuer_name(_name("Visage test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digital signature, certificate and CRL signing
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


#: The server's request_header_seconds, which also bounds the TLS handshake (asyncio's own limit: 60 s).
HEADER_SECONDS = 4


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certificates(root)
    server = RunningServer(
        root / "data",
        extra_args=("--tls-cert", str(cert), "--tls-key", str(key)),
        env={"VISAGE_REQUEST_HEADER_SECONDS": str(HEADER_SECONDS)},
        ca_file=ca,
    )
    with server:
        yield server


def test_boto3_over_https(https_server: RunningServer, portraits: Path) -> None:
    assert https_server.url.startswith("https://127.0.0.1:")
    client = https_server.client()
    client.create_collection(CollectionId="over-tls")
    image = {"Bytes": (portraits / "person_a_1.jpg").read_bytes()}
    assert len(client.index_faces(CollectionId="over-tls", Image=image)["FaceRecords"]) == 1
    assert "over-tls" in client.list_collections()["CollectionIds"]


def test_the_aws_cli_over_https(https_server: RunningServer) -> None:
    assert https_server.credentials is not None and https_server.ca_file is not None
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": https_server.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": https_server.credentials.secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    aws = [str(Path(sys.executable).with_name("aws")), "rekognition", "--endpoint-url", https_server.url]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*aws, *args], capture_output=True, text=True, env=env, timeout=300)

    created = run("create-collection", "--collection-id", "cli-over-tls", "--ca-bundle", str(https_server.ca_file))
    assert created.returncode == 0, created.stderr
    listed = run("list-collections", "--ca-bundle", str(https_server.ca_file), "--output", "json")
    assert listed.returncode == 0 and "cli-over-tls" in listed.stdout
    untrusted = run("list-collections")  # the system's CAs do not know the test's CA
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_a_client_that_does_not_trust_the_ca_is_refused(https_server: RunningServer) -> None:
    import boto3

    assert https_server.credentials is not None
    stranger: Any = boto3.client(
        "rekognition",
        endpoint_url=https_server.url,
        region_name="us-east-1",
        aws_access_key_id=https_server.credentials.access_key_id,
        aws_secret_access_key=https_server.credentials.secret_access_key,
    )
    with pytest.raises(SSLError):
        stranger.list_collections()
    with pytest.raises(OSError):  # nor is anything spoken in clear on the TLS port (URLError, a reset)
        urllib.request.urlopen(https_server.url.replace("https://", "http://") + "/health", timeout=5)
    context = ssl.create_default_context(cafile=str(https_server.ca_file))
    with urllib.request.urlopen(https_server.url + "/health", timeout=5, context=context) as response:
        assert response.status == 200


def _seconds_until_closed(connection: socket.socket) -> float:
    """How long the server takes to close ``connection``, to which the client sends nothing."""
    connection.settimeout(60)
    start = time.monotonic()
    try:
        while connection.recv(4096):  # a 408 may come first
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    return time.monotonic() - start


def test_clients_that_stall_in_the_tls_handshake_or_before_their_headers_are_cut_off(
    https_server: RunningServer,
) -> None:
    """A connection that never begins the TLS handshake, and one that completes it and then sends
    nothing, are each closed after request_header_seconds."""
    port = int(https_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        waited = _seconds_until_closed(raw)
    assert HEADER_SECONDS - 0.5 <= waited < HEADER_SECONDS + 10, waited
    context = ssl.create_default_context(cafile=str(https_server.ca_file))
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1") as tls:
        waited = _seconds_until_closed(tls)
    assert HEADER_SECONDS - 0.5 <= waited < HEADER_SECONDS + 10, waited
