"""The ASGI app: one ``POST /`` endpoint that speaks Rekognition's JSON 1.1 protocol,
and the web console mounted at ``/console/`` (:mod:`visage.console`; ``GET /`` leads there).

It only translates: refuse a body over the size limit (from its Content-Length,
before reading it), then, in a worker thread, check the SigV4 signature against
the key the service's key ring finds, route ``X-Amz-Target`` to the operation,
validate the body against the service model and call the service (which checks
the key's policy); and write the response or the error as Rekognition does, with
an ``x-amzn-RequestId`` header on every answer. Unless ``settings.request_log`` is
off, each request is also one line on stderr: operation, status (and error code),
milliseconds and the caller's access key id, never image data.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from visage.api.protocol import CONTENT_TYPE, encode_error, rekognition
from visage.api.sigv4 import verify_request
from visage.config import Settings
from visage.console import console_app
from visage.errors import (
    ImageTooLargeException,
    InternalServerError,
    SerializationException,
    UnrecognizedClientException,
    VisageError,
)
from visage.keys import create_key_command
from visage.service import Caller, open_service
from visage.store import describe_store

log = logging.getLogger("visage")
requests_log = logging.getLogger("visage.requests")

ANONYMOUS = "anonymous"

#: The environment variable that carries ``visage serve``'s settings, as JSON, to uvicorn's
#: worker processes (which can only import the app, not be handed it).
SETTINGS_VARIABLE = "VISAGE_SERVE_SETTINGS"

#: Once uvicorn has stopped serving (the requests in flight finished, or ``shutdown_seconds``
#: passed and it cancelled them), what is left of the shutdown gets this many seconds; then the
#: process exits without waiting for engine work still running (the store is crash-safe).
EXIT_SECONDS = 5

#: The status a request is logged with when its client went away before it was read whole
#: (nginx's "client closed request"; nothing is sent).
CLIENT_CLOSED = 499


def create_app(settings: Settings) -> Starlette:
    """The app over a service built from ``settings``; with ``settings.auth`` off, every
    request is taken as from an anonymous caller."""
    service = open_service(settings)
    service.keys.check()  # a wrong secret key file stops the server here, not at a request
    model = rekognition()
    workers = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="visage")
    # Two base64 images (CompareFaces) and some JSON around them.
    max_body = 2 * (settings.max_image_bytes * 4 // 3 + 4) + 65_536
    anonymous = Caller.local(ANONYMOUS)
    if settings.request_log:
        _log_requests_to_stderr()
    # Where an unknown key id was looked for (never a key), and how to add one there.
    keys_hint = (
        f"This server reads its access keys from the store ({describe_store(settings)}); "
        f"`{create_key_command(settings)}` adds one."
    )

    def authenticate(request: Request, body: bytes) -> Caller:
        """The caller whose key signed the request (the key read from the store now: a revoked key
        fails here at once)."""
        if not settings.auth:
            return anonymous
        try:
            found = verify_request(
                request.method,
                request.scope.get("raw_path", b"/").decode("latin-1"),
                request.scope.get("query_string", b"").decode("latin-1"),
                request.headers.items(),
                body,
                service.keys.lookup,
            )
        except UnrecognizedClientException as error:
            raise UnrecognizedClientException(f"{error.message} {keys_hint}") from None
        service.keys.note_use(found.key)
        return Caller.of(found.key)

    def answer(request: Request, body: bytes) -> bytes:
        """Runs in a worker thread: it reads the store and decodes up to two images."""
        caller = authenticate(request, body)
        request.state.caller = caller.access_key_id
        operation = model.parse_target(request.headers.get("x-amz-target"))
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != CONTENT_TYPE:
            raise SerializationException(f"Content-Type must be {CONTENT_TYPE}, not {content_type or 'missing'}.")
        params = model.decode_request(operation, body)
        return model.encode_response(operation, service.call(operation, params, caller))

    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        response, code = await respond(request)
        if settings.request_log:
            target = request.headers.get("x-amz-target", "-").removeprefix("RekognitionService.")[:64]
            requests_log.info(
                "%s %d%s %.0f ms %s",
                target,
                response.status_code,
                f" {code}" if code else "",
                1000 * (time.perf_counter() - started),
                getattr(request.state, "caller", "-"),
            )
        return response

    async def respond(request: Request) -> tuple[Response, str]:
        """The response, and the error code of a failure ("" on success)."""
        request_id = str(uuid.uuid4())
        headers = {"x-amzn-RequestId": request_id}
        try:
            body = await _read_body(request, max_body)
            payload = await asyncio.get_running_loop().run_in_executor(workers, answer, request, body)
            return Response(payload, 200, headers=headers, media_type=CONTENT_TYPE), ""
        except ClientDisconnect:  # the client went, or was cut off (visage.api.deadlines), mid-body
            return Response(b"", CLIENT_CLOSED, headers=headers), "ClientDisconnect"
        except VisageError as error:
            status, payload = encode_error(error)
            if status >= 500:
                log.error("request %s failed: %s", request_id, error)
            return Response(payload, status, headers=headers, media_type=CONTENT_TYPE), error.code
        except Exception:
            log.exception("request %s failed", request_id)
            status, payload = encode_error(InternalServerError(f"Internal error; request id {request_id}."))
            return Response(payload, status, headers=headers, media_type=CONTENT_TYPE), InternalServerError.__name__

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "operations": sorted(service.operations)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(workers, service.engine.warm_up)
        await loop.run_in_executor(workers, service.store.warm)
        service.video.workers.start()
        yield
        deadline = _exit_after(EXIT_SECONDS)
        await loop.run_in_executor(None, service.video.workers.stop)
        await loop.run_in_executor(None, functools.partial(workers.shutdown, wait=True, cancel_futures=True))
        service.store.close()
        deadline.cancel()

    async def to_console(request: Request) -> Response:
        return RedirectResponse("/console/", 303)

    app = Starlette(
        routes=[
            Route("/", handle, methods=["POST"]),
            Route("/", to_console, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Mount("/console", app=console_app(service, settings, workers)),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    return app


def create_worker_app() -> Starlette:
    """Factory for each of uvicorn's worker processes (``visage serve --workers N``): the
    app over the settings ``visage serve`` built, passed on in :data:`SETTINGS_VARIABLE`."""
    return create_app(Settings.from_json(os.environ[SETTINGS_VARIABLE]))


def _exit_after(seconds: float) -> threading.Timer:
    """Ends the process in ``seconds`` unless the returned timer is cancelled first (a daemon timer:
    it does not keep the process alive)."""

    def exit_now() -> None:
        log.error("shutdown: engine work still running %g s after the server stopped; exiting without it", seconds)
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
    return timer


def _log_requests_to_stderr() -> None:
    """One line per request on stderr, with its time (set up once per process)."""
    if not requests_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        requests_log.addHandler(handler)
        requests_log.setLevel(logging.INFO)
        requests_log.propagate = False


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to be over ``limit`` bytes: from its
    Content-Length before a byte of it is read, or while it streams in (chunked)."""

    def too_large() -> ImageTooLargeException:
        return ImageTooLargeException(
            f"The request body is over {limit:,} bytes; images are limited to "
            f"{request.app.state.service.settings.max_image_bytes:,} bytes each."
        )

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
