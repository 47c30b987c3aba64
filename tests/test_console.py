"""The web console in a real headless Chromium, against a real ``visage serve``.

One browser for the session and one server for the module (with face thumbnails
kept). The flows of issue 12 are walked as a person would, with the real portraits;
a screenshot of every page is saved under ``test-artifacts/console/``, at 1280 px and
at phone width.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make browser``); nothing
downloads a browser. Without it these tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from visage.testing import LocalServer

CHROMIUM = Path(os.environ.get("VISAGE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: Indexed into the console's collection; person_a_2.jpg is kept as the probe.
INDEXED = ("person_a_1", "person_b_1", "person_b_2", "impostor_1", "impostor_2")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM} (make browser installs Debian's chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"under CI the browser tests must run: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("console") / "data", extra_args=("--keep-face-thumbnails",))
    with server:
        yield server


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
    yield opened
    context.close()
    assert errors == [], errors  # no script error, and nothing ran an alert()


def shoot(page: Any, name: str, phone: bool = True, full_page: bool = True) -> None:
    """A screenshot at 1280 px, and one at phone width (the whole page, unless it is too long)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)
    if phone:
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=full_page)
        # Nothing may stick out sideways at phone width but the tables' own scrolling boxes.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        page.set_viewport_size(DESKTOP)


def sign_in(page: Any, server: LocalServer, key_id: str | None = None, secret: str | None = None) -> None:
    assert server.credentials is not None
    page.goto(f"{server.url}/")
    page.fill("#access_key_id", key_id or server.credentials.access_key_id)
    page.fill("#secret_access_key", secret or server.credentials.secret_access_key)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/console/collections$"))


def audit_log(server: LocalServer) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "visage.cli", "audit-log", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


# The flows -----------------------------------------------------------------------------------


def test_a_reviewer_walks_the_console(page: Any, console_server: LocalServer, portraits: Path) -> None:
    server = console_server
    # The root leads a browser to the console, which asks to sign in.
    page.goto(f"{server.url}/")
    assert "/console/sign-in" in page.url
    shoot(page, "sign-in")
    sign_in(page, server)
    shoot(page, "collections-empty")

    # Create a collection, with a tag.
    page.fill("#collection_id", "staff")
    page.fill("#tags", "team=front desk")
    page.click("button:has-text('Create collection')")
    page.wait_for_url(re.compile(r".*/console/collections/staff$"))
    assert "Created collection staff." in page.inner_text("main")
    assert "team=front desk" in page.inner_text("main")

    # Index the portraits by upload.
    page.click("text=Index images into it")
    page.set_input_files("#images", [str(portraits / f"{name}.jpg") for name in INDEXED])
    page.fill("#max_faces", "1")
    page.click("button:has-text('Index')")
    results = page.locator("section.result")
    assert results.count() == len(INDEXED)
    for name in INDEXED:
        section = results.filter(has_text=f"{name}.jpg")
        assert "1 face indexed, 0 not." in section.inner_text()
        assert section.locator("svg .mark.indexed rect").count() == 1
    shoot(page, "index")

    page.goto(f"{server.url}/console/collections/staff")
    rows = page.locator("table.faces tbody tr")
    assert rows.count() == len(INDEXED)
    assert sorted(page.locator("table.faces tbody td:nth-child(4)").all_inner_texts()) == sorted(INDEXED)
    thumbnails = page.locator("img.thumb")
    assert thumbnails.count() == len(INDEXED)
    assert all(
        page.evaluate("img => img.complete && img.naturalWidth === 112", t) for t in thumbnails.element_handles()
    )
    shoot(page, "collection")

    # Detect: the Solvay photo's 29 faces, boxed.
    page.click("nav >> text=Detect")
    page.set_input_files("#image", str(portraits / "solvay_conference_1927.jpg"))
    page.click("button:has-text('Detect')")
    assert page.inner_text("#found") == "29 faces found"
    assert page.locator("svg .mark.detected rect").count() == 29
    assert page.locator("table.attributes tbody tr").count() == 29
    page.click("text=Rekognition's DetectFaces JSON")
    assert len(json.loads(page.inner_text("details.json pre"))["FaceDetails"]) == 29
    shoot(page, "detect")

    # Compare two photos of the same person: a match, its Similarity in words, the bias caveat.
    page.click("nav >> text=Compare")
    page.set_input_files("#source", str(portraits / "person_a_1.jpg"))
    page.set_input_files("#target", str(portraits / "person_a_2.jpg"))
    page.click("button:has-text('Compare')")
    row = page.locator("table tbody tr").first
    similarity = float(row.locator("td").nth(1).inner_text())
    assert similarity >= 99
    assert re.search(r"about 1 in [\d,]+ comparisons of two different people score this high", row.inner_text())
    assert "What the bias audit found at Similarity 99" in page.inner_text("aside.caveat")
    shoot(page, "compare")

    # Search with person_a_2.jpg (threshold 99 by default) and review the match.
    page.click("nav >> text=Search")
    assert page.input_value("#threshold") == "99"
    page.select_option("#collection_id", "staff")
    page.set_input_files("#image", str(portraits / "person_a_2.jpg"))
    page.click("button:has-text('Search')")
    candidates = page.locator("fieldset.candidate")
    assert candidates.count() == 1
    candidate = candidates.first
    assert "person_a_1" in candidate.inner_text()
    assert candidate.locator("img[alt^='Candidate 1']").count() == 1  # its thumbnail
    face_id = candidate.locator("dd code").inner_text()
    probe_sha256 = page.inner_text("code.hash")
    shoot(page, "search")
    candidate.locator("label:has-text('Same person')").click()
    page.fill("#note-0", "same ears and hairline; checked by hand")
    page.click("button:has-text('Record decisions')")
    assert "Same person" in page.inner_text("main table")
    shoot(page, "reviewed")

    # The decision counts in the collection's review statistics...
    page.goto(f"{server.url}/console/collections/staff#reviews")
    band = page.locator("#reviews ~ .table-scroll tbody tr", has_text="99 to below 99.9")
    assert band.locator("td").first.inner_text() == "1"

    # ...and is in the audit log `visage audit-log` exports, under the signed-in key.
    records = audit_log(server)
    assert server.credentials is not None
    key = server.credentials.access_key_id
    reviews = [r for r in records if r["operation"] == "ReviewMatch"]
    assert [(r["access_key_id"], r["collection_id"], r["face_ids"]) for r in reviews] == [(key, "staff", [face_id])]
    assert len(probe_sha256) == 64
    searches = [r for r in records if r["operation"] == "SearchFacesByImage"]
    assert [(r["access_key_id"], r["threshold"], r["face_ids"]) for r in searches] == [(key, 99.0, [face_id])]

    # The Accuracy page renders the evaluations' pages, plots included.
    page.click("nav >> text=Accuracy")
    assert page.locator("article.doc table").count() > 3
    plots = page.locator("article.doc img")
    assert plots.count() > 3
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", plots.first.element_handle())
    shoot(page, "accuracy", full_page=False)  # the whole page is tens of thousands of pixels long

    # Sign out: the pages ask to sign in again.
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r".*/console/sign-in$"))
    page.goto(f"{server.url}/console/collections")
    assert "/console/sign-in" in page.url


def test_collection_pages_manage_users_tags_and_deletion(
    page: Any, console_server: LocalServer, portraits: Path
) -> None:
    server = console_server
    sign_in(page, server)
    page.fill("#collection_id", "scratch")
    page.select_option("#thumbnails", "off")
    page.click("button:has-text('Create collection')")
    page.wait_for_url(re.compile(r".*/console/collections/scratch$"))
    assert "Not kept for faces indexed from now on." in page.inner_text("main")
    page.goto(f"{server.url}/console/index?collection=scratch")
    page.set_input_files("#images", [str(portraits / "person_b_1.jpg"), str(portraits / "person_b_2.jpg")])
    page.click("button:has-text('Index')")
    page.goto(f"{server.url}/console/collections/scratch")
    assert page.locator("img.thumb").count() == 0  # this collection keeps no image

    # A user: create, associate both faces, filter by it, disassociate one, delete it.
    page.fill("#new_user", "jacinda")
    page.click("button:has-text('Create user')")
    page.check("input.select-all")
    page.fill("#act_user", "jacinda")
    page.click("button:has-text('Associate with user')")
    assert "Associated 2 face(s) with user jacinda." in page.inner_text("main")
    page.click("table >> text=jacinda >> nth=0")
    assert page.locator("table.faces tbody tr").count() == 2
    page.locator("table.faces tbody input[name=face_id]").first.check()
    page.click("button:has-text('Disassociate from user')")
    assert "Disassociated 1 face(s) from user jacinda." in page.inner_text("main")
    assert page.locator("table.faces tbody tr").count() == 1
    shoot(page, "collection-user-filter", phone=False)
    page.goto(f"{server.url}/console/collections/scratch")
    page.click("button:has-text('Delete user jacinda')")
    assert "Deleted user jacinda" in page.inner_text("main")

    # Tags: set one, remove it.
    page.fill("#tag_key", "purpose")
    page.fill("#tag_value", "tests")
    page.click("button:has-text('Set tag')")
    assert "purpose=tests" in page.inner_text("ul.tags")
    page.click("button:has-text('Remove tag purpose')")
    assert "No tags." in page.inner_text("ul.tags")

    # Delete selected faces, then the collection, after a confirmation that counts its faces.
    page.locator("table.faces tbody input[name=face_id]").first.check()
    page.click("button:has-text('Delete selected faces')")
    assert "Deleted 1 face(s)." in page.inner_text("main")
    page.click("text=Delete it")
    assert "Its 1 face and 0 users go with it" in page.inner_text("main")
    shoot(page, "delete-collection")
    page.click("button:has-text('Delete scratch and its 1 faces')")
    assert "Deleted collection scratch." in page.inner_text("main")
    assert "scratch" not in page.inner_text("table")
