"""Attacks on the wire, against a real server: replayed and misdirected signatures, and bodies too big to read.

That every operation is refused to a key whose policy does not allow it is tested, for
each operation of the service model, in tests/test_permissions.py.
"""

from __future__ import annotations

import json
import select
import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import RunningServer

JSON = "application/x-amz-json-1.1"


def signed_request(server: RunningServer, service: str = "rekognition", at: datetime | None = None) -> httpx.Request:
    """A ListCollections request signed by botocore's real signer, as sent at ``at`` (default now)."""
    import botocore.auth

    assert server.credentials is not None
    body = json.dumps({}).encode()
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=body,
        headers={"Content-Type": JSON, "X-Amz-Target": "RekognitionService.ListCollections"},
    )
    signer = SigV4Auth(
        Credentials(server.credentials.access_key_id, server.credentials.secret_access_key), service, "us-east-1"
    )
    clock = botocore.auth.get_current_datetime
    if at is not None:  # the moment the request was captured: botocore signs with its own clock
        botocore.auth.get_current_datetime = lambda: at.astimezone(UTC).replace(tzinfo=None)  # type: ignore[assignment]
    try:
        signer.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = clock  # type: ignore[assignment]
    return httpx.Request("POST", server.url + "/", content=body, headers=dict(request.headers.items()))


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body.get("__type", ""), body.get("message", "")


def test_a_request_replayed_more_than_15_minutes_later_is_refused(server: RunningServer) -> None:
    with httpx.Client(timeout=60) as http:
        fresh = signed_request(server)
        assert http.send(fresh).status_code == 200
        # SigV4 accepts the very same bytes again within its 15 minutes (as AWS does) ...
        assert http.send(signed_request(server, at=datetime.now(UTC) - timedelta(minutes=14))).status_code == 200
        # ... and never after: a request captured 16 minutes ago, replayed now.
        status, code, message = error(http.send(signed_request(server, at=datetime.now(UTC) - timedelta(minutes=16))))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message.startswith("Signature expired")


@pytest.mark.parametrize("service", ["s3", "iam", "execute-api"])
def test_a_request_signed_for_another_service_is_refused(server: RunningServer, service: str) -> None:
    status, code, message = error(httpx.Client(timeout=60).send(signed_request(server, service=service)))
    assert (status, code) == (400, "InvalidSignatureException")
    assert f"Credential should be scoped to correct service: 'rekognition', not '{service}'" in message


def _head(length: str, chunked: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {JSON}\r\nX-Amz-Target: RekognitionService.DetectFaces\r\n{framing}\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    received = b""
    while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_a_declared_oversize_body_is_refused_before_it_is_read(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head(str(100 * 1024 * 1024)) + b'{"Image": {"Bytes": "')  # 100 MB announced, 20 bytes sent
        started = time.monotonic()
        answer = _read_response(sock, timeout=30)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"ImageTooLargeException" in answer and b"x-amzn-requestid" in answer.lower()
    assert time.monotonic() - started < 30
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_a_streamed_oversize_body_is_cut_off_at_the_limit(server: RunningServer) -> None:
    """Chunked, so no length is announced: the server stops at its limit, not at the end of the body."""
    chunk = b"A" * (1024 * 1024)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head("", chunked=True))
        while sent < 200:  # up to 200 MB offered
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                answer = _read_response(sock, timeout=30)
                break
            if not writable:
                continue
            try:
                sock.sendall(framed)
            except OSError:  # the server hung up: its answer is waiting
                answer = _read_response(sock, timeout=30)
                break
            sent += 1
    assert answer.startswith(b"HTTP/1.1 400") and b"ImageTooLargeException" in answer, answer[:200]
    print(f"refused after {sent} MB of a chunked body")
    assert sent < 40, f"{sent} MB were sent before the server refused"  # the limit is about 14 MB
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
