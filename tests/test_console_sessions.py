"""The console's session secret and sign-in limiter, on their own."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from visage.console import sessions
from visage.console.sessions import SignInLimiter, load_secret


def test_the_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "console.secret"
    first = load_secret(path)
    assert len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret(path) == first
    assert load_secret(tmp_path / "other" / "console.secret") != first
    assert sorted(p.name for p in path.parent.iterdir()) == ["console.secret"]  # no temporary file left


def test_processes_starting_at_once_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "console.secret"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        secrets = pool.map(load_secret, [path] * 8)
    assert len(set(secrets)) == 1 and secrets[0] == load_secret(path)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The limiter's clock, set by the test (a loaded machine cannot make a window pass early)."""
    now = [1000.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: now[0])
    return now


def test_the_limiter_counts_failures_per_address_in_a_window(clock: list[float]) -> None:
    limiter = SignInLimiter(max_failures=3, window_s=0.5)
    assert limiter.begin("10.0.0.1") == 0
    limiter.succeeded("10.0.0.1")  # a sign-in that succeeds does not count
    for _ in range(3):
        assert limiter.begin("10.0.0.1") == 0  # each counts as failed until it succeeds
    assert 0 < limiter.begin("10.0.0.1") <= 0.5
    assert limiter.begin("10.0.0.2") == 0
    clock[0] += 0.55
    assert limiter.begin("10.0.0.1") == 0  # the failures left the window


def test_a_success_takes_back_its_own_attempt_only() -> None:
    """Signing in with a valid key between guesses does not clear the address's failures."""
    limiter = SignInLimiter(max_failures=3, window_s=60)
    for _ in range(2):
        assert limiter.begin("10.0.0.1") == 0  # two wrong guesses
    assert limiter.begin("10.0.0.1") == 0
    limiter.succeeded("10.0.0.1")  # the attacker's own key
    assert limiter.begin("10.0.0.1") == 0  # a third guess
    assert limiter.begin("10.0.0.1") > 0  # and no fourth


def test_attempts_sent_at_once_cannot_all_pass_the_check() -> None:
    limiter = SignInLimiter(max_failures=3, window_s=60)
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(limiter.begin, ["10.0.0.1"] * 40))
    assert sum(wait == 0 for wait in waits) == 3


def test_the_limiter_forgets_addresses_whose_failures_left_the_window(clock: list[float]) -> None:
    limiter = SignInLimiter(max_failures=3, window_s=0.2)
    for n in range(10_050):
        limiter.begin(f"10.0.{n // 256}.{n % 256}")
    clock[0] += 0.25
    limiter.begin("192.0.2.1")
    assert len(limiter._failures) == 1


def test_the_cookie_is_httponly_strict_and_secure_over_tls(tmp_path: Path) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from visage.console.sessions import Sessions

    sessions = Sessions(tmp_path, idle_minutes=30)
    for scheme, secure in (("http", False), ("https", True)):
        request = Request({"type": "http", "scheme": scheme, "path": "/console/", "headers": [], "server": ("h", 1)})
        response = Response()
        sessions.write(response, sessions.signed_in("VSAKEXAMPLE"), request)
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert ("Secure" in cookie) == secure
        assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # ends with the browser, or when idle
