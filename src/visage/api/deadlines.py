"""Read deadlines: the HTTP protocol that cuts off a client too slow to send its request.

uvicorn closes a keep-alive connection that stays idle, but it has no limit on how long a
client may take to send a request's headers, or its body: a client that opens a connection
and sends a byte now and then (slowloris), or announces a 5 MB body and never finishes it,
keeps its connection, its buffers and its place under ``limit_concurrency`` for ever.
:class:`DeadlineProtocol` is uvicorn's httptools protocol with two deadlines:

- the headers of each request must have arrived ``header_seconds`` after the connection
  began to wait for them (it was made, or the previous response was sent);
- its body must have arrived ``body_seconds`` after its headers.

A request a client sends before the answer to its previous one (HTTP/1.1 pipelining) waits in
uvicorn, which stops reading meanwhile: no deadline runs while it waits, and when it starts,
only its body's, if the body is not all in yet.

A client that misses one gets ``408 Request Timeout`` (if no response has begun) and its
connection is closed; an app still waiting for the body sees a disconnect. Engine threads are
never held by a slow client: the app reads the whole body before it hands the request to one.
``visage serve`` passes it to uvicorn as its ``http`` protocol (:func:`protocol`), with the
deadlines of :class:`~visage.config.Settings` (``request_header_seconds``,
``request_body_seconds``).

Over HTTPS the protocol only hears of a connection once its TLS handshake is done, and asyncio
gives a handshake 60 s; uvicorn has no setting for it. So ``visage serve`` also gives uvicorn
its event loop (:func:`loop_factory`): uvicorn's own choice (uvloop where installed, else
asyncio's), whose TLS servers give a client ``header_seconds`` to finish the handshake, before
the headers' deadline starts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.loops.auto import auto_loop_factory
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("visage")

#: What a client too slow to send its request is answered before its connection is closed.
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request's headers and one for its body."""

    def __init__(self, *args: Any, header_seconds: float, body_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_seconds, self.body_seconds = header_seconds, body_seconds
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closed the connection of %s: its request's %s did not arrive within %g s", client, part, seconds)
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    # uvicorn's callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_seconds, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.pipeline:  # queued behind a request not yet answered; reading stops until it starts
            self._disarm()
        else:
            self._arm(self.body_seconds, "body")

    def on_message_complete(self) -> None:
        answered = self.cycle is not None and self.cycle.response_complete
        super().on_message_complete()
        if not answered:  # else the next request's headers are awaited (armed when the response was sent)
            self._disarm()

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)
        super().on_response_complete()  # starts the request queued next, if any
        if self.transport.is_closing():
            return
        if not queued:  # a keep-alive connection waits for the next request's headers
            self._arm(self.header_seconds, "headers")
        elif self.cycle is not None and self.cycle.more_body:  # reading again: the rest of its body is due
            self._arm(self.body_seconds, "body")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol(header_seconds: float, body_seconds: float) -> Any:
    """The protocol factory to give uvicorn as ``http`` (picklable, for its worker processes)."""
    return functools.partial(DeadlineProtocol, header_seconds=header_seconds, body_seconds=body_seconds)


def _loop_with_handshake_deadline(handshake_seconds: float) -> asyncio.AbstractEventLoop:
    """uvicorn's usual event loop, whose TLS servers end a handshake not done within ``handshake_seconds``."""
    loop = auto_loop_factory()()
    create_server = loop.create_server

    async def create_tls_server_with_deadline(*args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", handshake_seconds)
        return await create_server(*args, **kwargs)

    loop.create_server = create_tls_server_with_deadline  # type: ignore[method-assign]
    return loop


def loop_factory(handshake_seconds: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop factory to give uvicorn as ``loop`` (picklable, for its worker processes)."""
    return functools.partial(_loop_with_handshake_deadline, handshake_seconds)
