"""Console sessions: the signed cookie, its idle timeout, CSRF tokens and the sign-in rate limit.

A session is a cookie signed (itsdangerous, HMAC-SHA1 over a key derived from the
secret) with a per-server random secret kept in ``<data-dir>/console.secret``
(mode 0600, made on first start): a cookie signed by another server, or edited,
is refused. The cookie carries a random nonce and, once signed in, the access key
id; it is ``HttpOnly``, ``SameSite=Strict``, ``Path=/console``, and ``Secure``
when the console is served over TLS. Its signature is timestamped and re-issued
on every request, so a session ends after ``console_idle_minutes`` without one.

The key is looked up again on every request, so a revoked (or deleted) key ends
its sessions at once. Signing out clears the cookie in the browser; the server
keeps no list of sessions, so a copy of a cookie taken before sign-out would stay
valid until its idle timeout (HttpOnly keeps it from scripts, SameSite=Strict
from other sites' requests).

Every form that changes state carries the session's CSRF token, an HMAC of its
nonce: a request from another site can neither read it nor compute it. The
sign-in form has one too, bound to the anonymous session its page opened.

Failed sign-ins are counted per client address: :data:`MAX_FAILED_SIGN_INS` within
:data:`FAILED_SIGN_IN_WINDOW_S` seconds block that address until the oldest of them
leaves the window. Each attempt is counted as failed when it starts, under one lock with
the check, so attempts sent at once cannot all pass the check; one that succeeds takes
back its own count only, so signing in with a valid key does not clear the address's
failures. The count is kept by each server process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from visage.secret_file import make_once

COOKIE = "visage_console"
COOKIE_PATH = "/console"
SECRET_FILE = "console.secret"
#: Failed sign-ins from one address within the window before it must wait.
MAX_FAILED_SIGN_INS = 5
FAILED_SIGN_IN_WINDOW_S = 300.0


@dataclass(frozen=True)
class Session:
    """A browser's session: anonymous until signed in (``access_key_id`` set)."""

    nonce: str
    access_key_id: str | None = None


class Sessions:
    """Reads and writes the session cookie of this server."""

    def __init__(self, data_dir: Path, idle_minutes: int) -> None:
        self._secret = load_secret(data_dir / SECRET_FILE)
        self._cookies = URLSafeTimedSerializer(self._secret, salt="visage-console-session")
        self.idle_seconds = idle_minutes * 60

    def read(self, request: Request) -> Session | None:
        """The request's session, or None if its cookie is absent, forged, from another
        server or idle for too long."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            data = self._cookies.loads(cookie, max_age=self.idle_seconds)
        except BadSignature:  # SignatureExpired included
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        key = data.get("k")
        return Session(data["n"], key if isinstance(key, str) else None)

    def anonymous(self) -> Session:
        return Session(secrets.token_urlsafe(16))

    def signed_in(self, access_key_id: str) -> Session:
        """A new session (a new nonce, so a token from before sign-in is void) for the key."""
        return Session(secrets.token_urlsafe(16), access_key_id)

    def write(self, response: Response, session: Session, request: Request) -> None:
        """Sets (or refreshes) the cookie of ``session`` on ``response``."""
        data: dict[str, str] = {"n": session.nonce}
        if session.access_key_id is not None:
            data["k"] = session.access_key_id
        response.set_cookie(
            COOKIE,
            self._cookies.dumps(data),
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, b"csrf:" + session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token, self.csrf_token(session))

    def signer(self, purpose: str) -> URLSafeTimedSerializer:
        """A serializer for other values the console signs (``purpose`` keeps each kind apart)."""
        return URLSafeTimedSerializer(self._secret, salt=f"visage-console-{purpose}")


def load_secret(path: Path) -> bytes:
    """The server's console secret: read from ``path``, or made there (mode 0600) if absent.
    Several worker processes starting at once agree on one."""
    return bytes.fromhex(make_once(path, lambda: secrets.token_bytes(32).hex().encode()).decode().strip())


class SignInLimiter:
    """Counts failed sign-ins per client address (see the module's docstring)."""

    def __init__(self, max_failures: int = MAX_FAILED_SIGN_INS, window_s: float = FAILED_SIGN_IN_WINDOW_S) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def begin(self, address: str) -> float:
        """How long ``address`` must wait before it may try to sign in. 0: it may now, and this
        attempt counts as failed unless :meth:`succeeded` takes it back."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) >= self.max_failures:
                return failures[0] + self.window_s - now
            failures.append(now)
            return 0.0

    def succeeded(self, address: str) -> None:
        """Takes back the count of one attempt from ``address`` that succeeded."""
        with self._lock:
            failures = self._failures.get(address)
            if failures:
                failures.pop()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(self._failures) > 10_000:  # forget addresses that have no failure in the window
            for other in [a for a, f in self._failures.items() if (not f or f[-1] <= now - self.window_s)]:
                if other != address:
                    del self._failures[other]
        return failures
