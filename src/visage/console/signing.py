"""Signing in and out of the console, with the API's access key id and secret."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from visage.console.app import PREFIX, Console, Context, forget_flash, page, read_form, secured, take_flash

log = logging.getLogger("visage.console")


def routes() -> list[BaseRoute]:
    return [
        Route("/sign-in", sign_in_page, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", page(sign_out), methods=["POST"]),
    ]


def _next(target: str | None) -> str:
    """Where to go after signing in: a console page, never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


async def sign_in_page(request: Request) -> Response:
    console: Console = request.app.state.console
    session = console.sessions.read(request)
    if session is not None and session.access_key_id is not None:
        if await console.run(console.caller, session.access_key_id) is not None:
            return RedirectResponse(_next(request.query_params.get("next")), 303)
    messages = take_flash(request, console)  # for example: the key of the session that ended was revoked
    response = _form(request, console, status=200, messages=messages)
    if messages:
        forget_flash(response)
    return response


def _form(
    request: Request,
    console: Console,
    status: int,
    error: str | None = None,
    key_id: str = "",
    messages: list[str] | None = None,
) -> Response:
    session = console.sessions.anonymous()
    html = console.templates.get_template("sign_in.html").render(
        title="Sign in",
        section="sign-in",
        session=None,
        key=None,
        csrf=console.sessions.csrf_token(session),
        messages=messages or [],
        error=error,
        next=_next(request.query_params.get("next") or request.scope.get("visage.next")),
        key_id=key_id,
        auth=console.settings.auth,
        idle_minutes=console.settings.console_idle_minutes,
    )
    response = HTMLResponse(html, status)
    if status == 429:
        response.headers["Retry-After"] = str(int(request.scope["visage.wait"]) + 1)
    console.sessions.write(response, session, request)
    return secured(response)


async def sign_in(request: Request) -> Response:
    console: Console = request.app.state.console
    address = request.client.host if request.client else "unknown"
    form = await read_form(request)
    if isinstance(form, Response):
        return secured(form)
    key_id, secret = str(form.get("access_key_id", "")).strip(), str(form.get("secret_access_key", ""))
    request.scope["visage.next"] = str(form.get("next", ""))
    session = console.sessions.read(request)
    if session is None or not console.sessions.csrf_ok(session, form.get("csrf_token")):
        log.warning("console: refused a sign-in from %s without a valid CSRF token", address)
        return _form(request, console, 403, "The sign-in form had expired; sign in again.", key_id)
    wait = console.limiter.begin(address)
    if wait > 0:
        log.warning("console: sign-in from %s refused: too many failed sign-ins", address)
        request.scope["visage.wait"] = wait
        return _form(
            request,
            console,
            429,
            f"Too many failed sign-ins from your address; try again in {int(wait) + 1} seconds.",
            key_id,
        )
    caller = await console.run(console.authenticate, key_id, secret)
    if caller is None:
        log.warning("console: failed sign-in from %s with access key id %r", address, key_id[:40])
        return _form(request, console, 401, "Wrong access key id or secret access key, or the key was revoked.", key_id)
    console.limiter.succeeded(address)
    signed_in = console.sessions.signed_in(caller.access_key_id)
    log.info("console: %s signed in from %s", signed_in.access_key_id, address)
    response = RedirectResponse(_next(str(form.get("next", ""))), 303)
    console.sessions.write(response, signed_in, request)
    return secured(response)


async def sign_out(context: Context) -> Response:
    response = RedirectResponse(f"{PREFIX}/sign-in", 303)
    context.console.sessions.clear(response, context.request)
    context.keep_session = False
    log.info("console: %s signed out", context.session.access_key_id)
    return response
