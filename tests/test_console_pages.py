"""Console pages driven in-process: the console's Starlette app over a real service (the
session's engine, a real SQLite store, real keys), through Starlette's test client, signed
in with the sign-in form as a browser would be."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

with warnings.catch_warnings():  # starlette would have httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from visage.config import Settings
from visage.console.accuracy import AUDIT_JSON, docs_dir
from visage.console.app import PREFIX, console_app
from visage.engine import Engine
from visage.evaluation.costs import threshold_cost
from visage.policy import Policy
from visage.service import RekognitionService
from visage.store.base import Collection
from visage.store.sqlite import SQLiteStore


class Console:
    """The console of one service, and how to sign in to it."""

    def __init__(self, service: RekognitionService) -> None:
        self.service = service
        self.settings = service.settings
        self.app = Starlette(routes=[Mount(PREFIX, console_app(service, service.settings, ThreadPoolExecutor(2)))])

    def client(self, policy: Policy | None = None) -> TestClient:
        """A client signed in with a new key of ``policy`` (admin by default)."""
        _, credentials = self.service.keys.create(policy or Policy.admin(), "console tests", by="tests")
        client = TestClient(self.app, base_url=f"http://testserver{PREFIX}", follow_redirects=False)
        token = csrf_of(client.get("/sign-in").text)
        answer = client.post(
            "/sign-in",
            data={
                "csrf_token": token,
                "access_key_id": credentials.access_key_id,
                "secret_access_key": credentials.secret_access_key,
            },
        )
        assert answer.status_code == 303, answer.text
        return client


@pytest.fixture
def console(tmp_path: Path, engine: Engine) -> Iterator[Console]:
    settings = Settings(data_dir=tmp_path / "data", s3_root=tmp_path / "s3")
    (tmp_path / "s3").mkdir()
    service = RekognitionService(engine, SQLiteStore(settings.sqlite_path), settings)
    yield Console(service)
    service.video.workers.stop()
    service.store.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-zA-Z_-]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


def text_of(page: str, pattern: str) -> str:
    """The text (markup removed, entities decoded) of the first match of ``pattern``'s group 1."""
    found = re.search(pattern, page, re.S)
    assert found is not None, page[:2000]
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


# What 99 costs -------------------------------------------------------------------------------


def expected_cost(settings: Settings, model: str) -> str:
    audit = docs_dir(settings) / AUDIT_JSON
    return threshold_cost(model, audit if audit.is_file() else None).sentence()


def test_search_and_compare_say_what_99_costs_as_the_evaluation_computes_it(console: Console) -> None:
    client = console.client()
    sface = expected_cost(console.settings, "sface")
    assert "per person" in sface  # the shipped bias audit is of sface: its per-person figure is there
    for path in ("/search", "/compare"):
        page = client.get(path)
        assert page.status_code == 200
        shown = text_of(page.text, r'id="threshold_hint">(.*?)</p>')
        assert shown.endswith(sface), (path, shown)
        assert "about 1 in 1,000,000" not in page.text


def test_search_says_what_99_costs_with_the_searched_collections_face_model(console: Console, portraits: Path) -> None:
    """A collection of another face model (dlib here) is searched with that model, and its cost
    is dlib's: another map, and no per-person figure (the bias audit is of sface)."""
    console.service.store.create_collection(
        Collection("dlib-staff", console.service.collection_arn("dlib-staff"), "dlib", "dlib-1", datetime.now(UTC), {})
    )
    client = console.client()
    page = client.post(
        "/search",
        data={"csrf_token": csrf_of(client.get("/search").text), "collection_id": "dlib-staff", "threshold": "99"},
        files={"image": ("person_a_2.jpg", (portraits / "person_a_2.jpg").read_bytes(), "image/jpeg")},
    )
    assert page.status_code == 200, page.text[:2000]
    assert "0 candidates in dlib-staff" in page.text
    dlib = expected_cost(console.settings, "dlib")
    assert dlib != expected_cost(console.settings, "sface") and "per person" not in dlib
    assert text_of(page.text, r'id="threshold_hint">(.*?)</p>').endswith(dlib)
