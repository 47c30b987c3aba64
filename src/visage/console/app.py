"""The console's Starlette app, mounted at ``/console/`` beside the API: its routes, pages and guards.

Every page and action needs a signed-in session (:mod:`visage.console.sessions`); a
form that changes state must carry the session's CSRF token. Work is done by the
service, in the server's worker threads, with the signed-in key as the caller, so
the console meets the same checks and leaves the same audit records as the API.
Pages are Jinja2 templates with autoescaping; assets are served from the package.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from itsdangerous import BadSignature
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from visage.config import Settings
from visage.console.sessions import Session, Sessions, SignInLimiter
from visage.errors import UnrecognizedClientException, VisageError
from visage.service import Caller, RekognitionService

log = logging.getLogger("visage.console")

T = TypeVar("T")
PREFIX = "/console"
#: The caller of every console session of a server without auth (``--no-auth``), as for the API.
ANONYMOUS = "anonymous"
#: Largest console request body: a few images and the form around them.
MAX_FORM_BYTES = 64 * 1024 * 1024
#: Images one upload may hold (the Index page).
MAX_UPLOAD_FILES = 50

#: Sent with every console response: nothing but this origin's scripts, styles and images
#: (and the pages' inline image copies), no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    """What every handler needs: the service, the settings, sessions and the worker threads."""

    service: RekognitionService
    settings: Settings
    workers: Executor
    sessions: Sessions
    limiter: SignInLimiter = field(default_factory=SignInLimiter)
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=PackageLoader("visage.console", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread (service calls block)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.workers, functools.partial(fn, *args, **kwargs))

    def caller(self, access_key_id: str) -> Caller | None:
        """The caller of a session's key, read from the store now; None if the key is unknown or
        revoked (which ends the session). Without auth, everyone is the anonymous local caller."""
        if not self.settings.auth:
            return Caller.local(ANONYMOUS)
        try:
            return self.service.caller(access_key_id)
        except UnrecognizedClientException:
            return None

    def authenticate(self, access_key_id: str, secret_access_key: str) -> Caller | None:
        """The caller whose key pair this is, or None if it is wrong or revoked (sign-in)."""
        if not self.settings.auth:
            return Caller.local(ANONYMOUS)
        try:
            return self.service.authenticate(access_key_id, secret_access_key)
        except UnrecognizedClientException:
            return None


@dataclass
class Context:
    """One request to a page or action of a signed-in session."""

    request: Request
    console: Console
    session: Session
    caller: Caller
    form: FormData | None = None
    #: The message the previous action left for this page.
    messages: list[str] = field(default_factory=list)
    #: Whether this response leaves a message for the next page.
    flashed: bool = False
    #: False once the session is over (signed out): its cookie is not written again.
    keep_session: bool = True

    @property
    def service(self) -> RekognitionService:
        return self.console.service

    async def call(self, operation: str, request: dict[str, Any], **options: Any) -> dict[str, Any]:
        """A Rekognition operation, validated against the service model as the API validates it
        (``options``: what the console chooses beyond the request, :meth:`RekognitionService.call`)."""
        from visage.api.protocol import rekognition

        checked = rekognition().check_request(operation, request)
        return await self.console.run(self.service.call, operation, checked, self.caller, **options)

    async def act(self, operation: str, request: dict[str, Any], back: str, done: str) -> Response:
        """Run an operation for a form and go ``back``, saying ``done`` or what went wrong."""
        try:
            await self.call(operation, request)
        except VisageError as failure:
            return self.redirect(back, service_error(failure))
        return self.redirect(back, done)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else self.request.query_params.get(name)
        return value.strip() if isinstance(value, str) else default

    def render(self, template: str, status: int | None = None, **values: Any) -> HTMLResponse:
        """The page ``template`` with ``values`` (and what every page shows); its status is 400
        when it shows an ``error``, unless given."""
        console = self.console
        if status is None:
            status = 400 if values.get("error") else 200
        html = console.templates.get_template(template).render(
            session=self.session,
            key=self.session.access_key_id,
            manage_keys=self.caller.policy.allows("visage:ManageKeys", "*"),
            csrf=console.sessions.csrf_token(self.session),
            messages=self.messages,
            error=values.pop("error", None),
            q=quote,
            **values,
        )
        return HTMLResponse(html, status)

    def redirect(self, path: str, message: str | None = None) -> Response:
        response = RedirectResponse(PREFIX + path, 303)
        if message:
            signed = self.console.sessions.signer("flash").dumps(message)
            response.set_cookie(
                FLASH_COOKIE, signed, path=PREFIX, httponly=True, samesite="strict", max_age=FLASH_SECONDS
            )
            self.flashed = True
        return response


Handler = Callable[[Context], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A handler that needs a signed-in session (and, for a POST, the session's CSRF token)."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        console: Console = request.app.state.console
        session = console.sessions.read(request)
        caller = None
        if session is not None and session.access_key_id is not None:
            caller = await console.run(console.caller, session.access_key_id)
        if session is None or caller is None:
            response: Response
            if request.method == "GET":
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"{PREFIX}/sign-in?next={quote(target)}", 303)
            else:
                response = HTMLResponse("Your session has ended; sign in again.", 401)
            console.sessions.clear(response, request)
            return secured(response)
        form = None
        if request.method == "POST":
            form_or_error = await read_form(request)
            if isinstance(form_or_error, Response):
                return secured(form_or_error)
            form = form_or_error
            if not console.sessions.csrf_ok(session, form.get("csrf_token")):
                log.warning("console: refused a %s to %s without a valid CSRF token", request.method, request.url.path)
                return secured(
                    HTMLResponse(
                        "This form was not sent by this console, or is too old (CSRF token missing or wrong). "
                        "Go back, reload the page and send it again.",
                        403,
                    )
                )
        context = Context(request, console, session, caller, form, messages=take_flash(request, console))
        try:
            response = await handler(context)
        finally:
            if form is not None:
                await form.close()
        if context.messages and not context.flashed:
            forget_flash(response)
        if context.keep_session:
            console.sessions.write(response, session, request)  # the idle timeout starts again
        return secured(response)

    return guarded


async def read_form(request: Request) -> FormData | Response:
    """The request's form (files included), or the response that refuses it."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return HTMLResponse("A form must be sent with its length (Content-Length).", 411)
    if int(length) > MAX_FORM_BYTES:
        return HTMLResponse(f"A form may be at most {MAX_FORM_BYTES // 1024 // 1024} MiB.", 413)
    try:
        return await request.form(max_files=MAX_UPLOAD_FILES, max_fields=5000)
    except Exception as error:  # starlette's MultiPartException and the parser's own errors
        return HTMLResponse(f"The form could not be read: {error}", 400)


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# Flash messages: one line shown on the next page, in a signed cookie ---------------------------

FLASH_COOKIE = "visage_console_flash"
FLASH_SECONDS = 60


def take_flash(request: Request, console: Console) -> list[str]:
    """The message the previous page left for this one, if any (the response should then
    :func:`forget_flash` it)."""
    signed = request.cookies.get(FLASH_COOKIE)
    if not signed:
        return []
    try:
        message = console.sessions.signer("flash").loads(signed, max_age=FLASH_SECONDS)
    except BadSignature:
        return []
    return [message] if isinstance(message, str) else []


def forget_flash(response: Response) -> None:
    response.delete_cookie(FLASH_COOKIE, path=PREFIX, httponly=True, samesite="strict")


# The app ---------------------------------------------------------------------------------------


def console_app(service: RekognitionService, settings: Settings, workers: Executor) -> Starlette:
    """The console over ``service``, to mount at :data:`PREFIX`."""
    from visage.console import accuracy, audit, collections, images, jobs, keys, review, signing

    console = Console(
        service=service,
        settings=settings,
        workers=workers,
        sessions=Sessions(settings.data_dir, settings.console_idle_minutes),
    )
    routes = [
        Route("/", page(_home), methods=["GET"]),
        *signing.routes(),
        *collections.routes(),
        *images.routes(),
        *review.routes(),
        *jobs.routes(),
        *audit.routes(),
        *keys.routes(),
        *accuracy.routes(),
        Mount("/static", app=StaticFiles(packages=[("visage.console", "static")]), name="static"),
    ]
    console.templates.filters["when"] = when
    app = Starlette(routes=routes)
    app.state.console = console
    return app


async def _home(context: Context) -> Response:
    return RedirectResponse(f"{PREFIX}/collections", 303)


def when(moment: datetime | None) -> str:
    """A time as the pages show it (UTC, to the second)."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def service_error(error: VisageError) -> str:
    """A service error as the console shows it: its code and Rekognition's message."""
    return f"{error.code}: {error.message}"
