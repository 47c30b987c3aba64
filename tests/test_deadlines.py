"""The read deadlines of ``visage serve``'s HTTP protocol, on a real uvicorn server with a slow app."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from visage.api.deadlines import protocol

APP_SECONDS = 1.5  # how long the app takes to answer: longer than both deadlines
DEADLINE_SECONDS = 0.5


async def slow_app(scope: dict, receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    while True:
        message = await receive()  # type: ignore[operator]
        if not message.get("more_body"):
            break
    await asyncio.sleep(APP_SECONDS)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(
        slow_app, host="127.0.0.1", port=free, http=protocol(DEADLINE_SECONDS, DEADLINE_SECONDS), log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield free
    server.should_exit = True
    thread.join(10)


def read_responses(sock: socket.socket, count: int, within: float) -> bytes:
    sock.settimeout(within)
    said = b""
    end = time.monotonic() + within
    while said.count(b"HTTP/1.1 ") < count and time.monotonic() < end:
        chunk = sock.recv(65536)
        if not chunk:
            break
        said += chunk
    return said


def test_pipelined_requests_are_answered_not_cut_off(port: int) -> None:
    """Two requests in one write, each answered after longer than either deadline: the second
    waits in uvicorn while the first is answered, and neither deadline runs meanwhile."""
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request + request)
        said = read_responses(sock, 2, within=3 * APP_SECONDS + 2)
    assert said.count(b"HTTP/1.1 200 ") == 2 and b"408" not in said, said


def test_a_client_that_sends_nothing_is_still_cut_off(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        said = read_responses(sock, 1, within=5)
    assert said.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3, said
