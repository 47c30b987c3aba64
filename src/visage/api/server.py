"""Running the app: bind the port, say what is in force, serve until stopped.

``visage serve`` builds the settings and binds the port itself (:func:`bind`), first,
so that a port already taken is one line (:class:`CannotListen`) before anything is
created; :func:`serve` hands the bound socket to uvicorn, in this process or in
``workers`` processes that share it, and says "Listening" only once the port is bound
(with one process, once the app has also started and answers). :func:`banner` says which store, face model, S3 source,
auth mode, request log and memory allocator are in force.

Stopping: on SIGTERM or Ctrl-C the socket stops listening at once (new connections are
refused, in every worker), the requests in flight get ``settings.shutdown_seconds`` to finish,
and the process exits (:data:`visage.api.app.EXIT_SECONDS` later at most). Every connection
has read deadlines for its requests' headers and body (:mod:`visage.api.deadlines`).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from visage.api import allocator, deadlines
from visage.api.app import SETTINGS_VARIABLE, create_app
from visage.config import Settings
from visage.engine.registry import face_model_entry
from visage.engine.similarity import SimilarityMap
from visage.store import describe_store

#: Connections that may wait for the app to accept them (uvicorn's default).
BACKLOG = 2048


#: How long a worker process may take to answer uvicorn's health check. A new worker answers only
#: once it has imported Visage, which on a busy machine takes far longer than uvicorn's 5 s: a
#: shorter limit kills and restarts every worker in a loop, and the server never answers.
WORKER_START_SECONDS = 120


class CannotListen(Exception):
    """The server cannot listen where it was asked to; the message is one line that says what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening (as uvicorn binds one; connections wait in its
    backlog until the app accepts them), or :class:`CannotListen`."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise CannotListen(f"port {port} is in use; choose another with --port") from None
        raise CannotListen(f"cannot listen on {host} port {port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def banner(settings: Settings) -> list[str]:
    """What is in force, one line each: store, face model, Similarity map, S3 objects, auth (and TLS), request log,
    memory allocator."""
    if settings.s3_root is not None:
        s3 = f"from the folder {settings.s3_root} (a Bucket is a sub-folder)"
    elif settings.s3_endpoint_url is not None:
        s3 = f"from {settings.s3_endpoint_url}"
    else:
        s3 = "not read (--s3-root DIR or --s3-endpoint-url URL to read them)"
    auth = (
        f"SigV4 signatures, by the keys in the store; their secrets sealed by {settings.secret_key_path}"
        if settings.auth
        else "OFF: unsigned requests are accepted (--no-auth)"
    )
    if settings.tls:
        auth += f"; HTTPS with {settings.tls_cert}"
    log = "one line per request on stderr (--no-request-log: none)" if settings.request_log else "off"
    model = face_model_entry(settings.face_model)
    similarity = "each face model's shipped map, fitted on LFW (docs/accuracy.md)"
    if settings.similarity_map is not None:
        own = SimilarityMap.read(settings.similarity_map)
        similarity = f"{own.model}'s from {settings.similarity_map}, fitted on {own.fitted_on}"
    return [
        f"  store        {describe_store(settings)}",
        f"  face model   {model.name} ({model.version}) for new collections; each collection keeps its own",
        f"  Similarity   {similarity}",
        f"  S3Object     {s3}",
        f"  auth         {auth}",
        f"  request log  {log}",
        f"  allocator    {allocator.describe(settings)}",
    ]


class _Server(uvicorn.Server):
    """uvicorn's server, which says so once the app has started and the socket is listening."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.on_started()


class _Workers(Multiprocess):
    """uvicorn's worker processes, whose parent lets go of the listening socket when they are told to stop.

    Each worker closes its copy of the socket on SIGTERM; the parent's copy would keep it listening,
    and new connections would wait in its backlog, unanswered, until the last worker had finished.
    """

    def terminate_all(self) -> None:
        super().terminate_all()
        for sock in self.sockets:
            sock.close()


def serve(settings: Settings, sock: socket.socket, workers: int, say: Callable[[str], None]) -> None:
    """Serve the app on the bound socket ``sock`` (see :func:`bind`) until stopped; ``say`` is
    given the "Listening" line."""
    # A file size limit (ulimit -f) makes a write fail (EFBIG, a StoreWriteError) instead of killing the server.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    host, port = sock.getsockname()[:2]
    listening = f"Listening on {url(host, port, settings.tls)}"
    options: dict[str, Any] = {
        "log_level": "warning",
        # On SIGTERM: stop accepting, let the requests in flight finish for at most this long.
        "timeout_graceful_shutdown": settings.shutdown_seconds,
        "http": deadlines.protocol(settings.request_header_seconds, settings.request_body_seconds),
        "loop": deadlines.loop_factory(settings.request_header_seconds),
    }
    if settings.tls:
        options.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
    try:
        if workers == 1:
            config = uvicorn.Config(create_app(settings), **options)
            _Server(config, lambda: say(listening)).run(sockets=[sock])
        else:  # each worker process imports the app, so it gets the settings through its environment
            os.environ[SETTINGS_VARIABLE] = settings.to_json()
            config = uvicorn.Config(
                "visage.api.app:create_worker_app",
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=WORKER_START_SECONDS,
                **options,
            )
            say(f"{listening} ({workers} worker processes; requests wait until one has started)")
            _Workers(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
