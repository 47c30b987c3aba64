"""The ASGI app: one ``POST /`` endpoint that speaks Rekognition's JSON 1.1 protocol.

It only translates: check the SigV4 signature, route ``X-Amz-Target`` to the
operation, validate the body against the service model, call the service in a
worker thread, and write the response or the error as Rekognition does, with
an ``x-amzn-RequestId`` header on every answer. Unless ``settings.request_log`` is
off, each request is also one line on stderr: operation, status (and error code),
milliseconds and the caller's access key id, never image data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from visage.api.protocol import CONTENT_TYPE, encode_error, rekognition
from visage.api.sigv4 import verify_request
from visage.config import Settings
from visage.errors import (
    ImageTooLargeException,
    InternalServerError,
    SerializationException,
    UnrecognizedClientException,
    VisageError,
)
from visage.keys import KeyStore, create_key_command
from visage.service import Caller, open_service

log = logging.getLogger("visage")
requests_log = logging.getLogger("visage.requests")

ANONYMOUS = "anonymous"

#: The environment variable that carries ``visage serve``'s settings, as JSON, to uvicorn's
#: worker processes (which can only import the app, not be handed it).
SETTINGS_VARIABLE = "VISAGE_SERVE_SETTINGS"


def create_app(settings: Settings) -> Starlette:
    """The app over a service built from ``settings``; with ``settings.auth`` off, every
    request is taken as from an anonymous caller."""
    service = open_service(settings)
    keys = KeyStore(settings.keys_path)
    model = rekognition()
    workers = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="visage")
    # Two base64 images (CompareFaces) and some JSON around them.
    max_body = 2 * (settings.max_image_bytes * 4 // 3 + 4) + 65_536

    if settings.request_log:
        _log_requests_to_stderr()
    keys_hint = (
        f"This server reads its access keys from {keys.path.resolve()}; "
        f"`{create_key_command(settings.data_dir.resolve())}` adds one."
    )

    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        response = await answer(request, request_id)
        if settings.request_log:
            caller = getattr(request.state, "caller", "-")
            target = request.headers.get("x-amz-target", "-").removeprefix("RekognitionService.")[:64]
            code = getattr(request.state, "error_code", "")
            requests_log.info(
                "%s %d%s %.0f ms %s",
                target,
                response.status_code,
                f" {code}" if code else "",
                1000 * (time.perf_counter() - started),
                caller,
            )
        return response

    async def answer(request: Request, request_id: str) -> Response:
        headers = {"x-amzn-RequestId": request_id}
        try:
            body = await _read_body(request, max_body)
            caller = ANONYMOUS
            if settings.auth:
                try:
                    caller = verify_request(
                        request.method,
                        request.scope.get("raw_path", b"/").decode("latin-1"),
                        request.scope.get("query_string", b"").decode("latin-1"),
                        request.headers.items(),
                        body,
                        keys.secret,
                    )
                except UnrecognizedClientException as error:
                    raise UnrecognizedClientException(f"{error.message} {keys_hint}") from None
            request.state.caller = caller
            operation = model.parse_target(request.headers.get("x-amz-target"))
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type != CONTENT_TYPE:
                raise SerializationException(f"Content-Type must be {CONTENT_TYPE}, not {content_type or 'missing'}.")
            params = model.decode_request(operation, body)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(workers, service.call, operation, params, Caller(caller))
            payload = model.encode_response(operation, result)
            return Response(payload, 200, headers=headers, media_type=CONTENT_TYPE)
        except VisageError as error:
            request.state.error_code = error.code
            status, payload = encode_error(error)
            if status >= 500:
                log.error("request %s failed: %s", request_id, error)
            return Response(payload, status, headers=headers, media_type=CONTENT_TYPE)
        except Exception:
            request.state.error_code = InternalServerError.__name__
            log.exception("request %s failed", request_id)
            status, payload = encode_error(InternalServerError(f"Internal error; request id {request_id}."))
            return Response(payload, status, headers=headers, media_type=CONTENT_TYPE)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "operations": sorted(service.operations)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(workers, service.engine.warm_up)
        await loop.run_in_executor(workers, service.store.warm)
        yield
        workers.shutdown(wait=True)
        service.store.close()

    app = Starlette(
        routes=[Route("/", handle, methods=["POST"]), Route("/health", health, methods=["GET"])],
        lifespan=lifespan,
    )
    app.state.service = service
    return app


def create_worker_app() -> Starlette:
    """Factory for each of uvicorn's worker processes (``visage serve --workers N``): the
    app over the settings ``visage serve`` built, passed on in :data:`SETTINGS_VARIABLE`."""
    return create_app(Settings.from_json(os.environ[SETTINGS_VARIABLE]))


def _log_requests_to_stderr() -> None:
    """One line per request on stderr, with its time (set up once per process)."""
    if not requests_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        requests_log.addHandler(handler)
        requests_log.setLevel(logging.INFO)
        requests_log.propagate = False


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageTooLargeException(
                f"The request body is over {limit:,} bytes; images are limited to "
                f"{request.app.state.service.settings.max_image_bytes:,} bytes each."
            )
        chunks.append(chunk)
    return b"".join(chunks)
