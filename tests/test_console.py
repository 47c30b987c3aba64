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
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from visage.testing import LocalServer

from .conftest import under_ci

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
        if under_ci():
            pytest.fail(f"under CI the browser tests must run: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, portraits: Path, hamilton_clip: Path
) -> Iterator[LocalServer]:
    """The console's server, its local S3 folder holding the Hamilton clip as ``videos/clip.mp4``."""
    root = tmp_path_factory.mktemp("console")
    (root / "s3" / "videos").mkdir(parents=True)
    shutil.copy(hamilton_clip, root / "s3" / "videos" / "clip.mp4")
    server = LocalServer(root / "data", s3_root=root / "s3", extra_args=("--keep-face-thumbnails",))
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


#: Controls without a name a screen reader can say: a form control with no label (nor
#: aria-label), a button or link with no text.
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(el => {
    if (['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)) return !(el.labels && el.labels.length) && !el.getAttribute('aria-label');
    return !(el.textContent.trim() || el.getAttribute('aria-label') || el.querySelector('img[alt]:not([alt=""])'));
  })
  .map(el => el.outerHTML.slice(0, 120))"""


#: The controls a keyboard user must be able to reach: visible, enabled, not taken out of the
#: tab order; each is named so that the Tab walk can say which it reached.
REACHABLE = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href], summary')]
  .filter(el => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== 'hidden')
  .map((el, i) => {
    // A group of radio buttons is one stop of the tab order (the arrow keys move within it).
    const key = el.type === 'radio' ? `radio ${el.form ? [...document.forms].indexOf(el.form) : ''} ${el.name}` : String(i);
    el.dataset.tabWalk = key;
    return key;
  })"""


def keyboard_reaches_every_control(page: Any, name: str) -> None:
    """Tab from the top of the page reaches every visible control, each once per round."""
    controls = set(page.evaluate(REACHABLE))
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    reached: set[str] = set()
    for _ in range(2 * len(controls) + 20):  # other stops (a scrolling table's box) take a Tab too
        page.keyboard.press("Tab")
        index = page.evaluate("() => document.activeElement && document.activeElement.dataset.tabWalk")
        if index is not None:
            reached.add(index)
        if reached == controls:
            break
    assert controls - reached == set(), f"{name}: controls Tab never reaches: {sorted(controls - reached)}"


def shoot(page: Any, name: str, phone: bool = True, full_page: bool = True) -> None:
    """A screenshot at 1280 px, and one at phone width (the whole page, unless it is too long);
    every control of the page must have a name and be reachable with the keyboard."""
    assert page.evaluate(UNLABELLED) == [], name
    keyboard_reaches_every_control(page, name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)
    if phone:
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=full_page)
        # Nothing may stick out sideways at phone width but the tables' own scrolling boxes.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        page.set_viewport_size(DESKTOP)


def go(page: Any, selector: str) -> None:
    """Click what leads to another page (a link, a form's button), and wait until that page has
    loaded whole: a page is streamed, and is read only once it is all there."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def sign_in(page: Any, server: LocalServer, key_id: str | None = None, secret: str | None = None) -> None:
    assert server.credentials is not None
    page.goto(f"{server.url}/")
    page.fill("#access_key_id", key_id or server.credentials.access_key_id)
    page.fill("#secret_access_key", secret or server.credentials.secret_access_key)
    go(page, "button:has-text('Sign in')")
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
    go(page, "button:has-text('Create collection')")
    page.wait_for_url(re.compile(r".*/console/collections/staff$"))
    assert "Created collection staff." in page.inner_text("main")
    assert "team=front desk" in page.inner_text("main")

    # Index the portraits by upload.
    go(page, "text=Index images into it")
    page.set_input_files("#images", [str(portraits / f"{name}.jpg") for name in INDEXED])
    page.fill("#max_faces", "1")
    go(page, "button:has-text('Index')")
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
    go(page, "nav >> text=Detect")
    page.set_input_files("#image", str(portraits / "solvay_conference_1927.jpg"))
    go(page, "button:has-text('Detect')")
    assert page.inner_text("#found") == "29 faces found"
    assert page.locator("svg .mark.detected rect").count() == 29
    assert page.locator("table.attributes tbody tr").count() == 29
    page.click("text=Rekognition's DetectFaces JSON")
    assert len(json.loads(page.inner_text("details.json pre"))["FaceDetails"]) == 29
    shoot(page, "detect")

    # Compare two photos of the same person: a match, its Similarity in words, the bias caveat.
    go(page, "nav >> text=Compare")
    page.set_input_files("#source", str(portraits / "person_a_1.jpg"))
    page.set_input_files("#target", str(portraits / "person_a_2.jpg"))
    go(page, "button:has-text('Compare')")
    row = page.locator("table tbody tr").first
    similarity = float(row.locator("td").nth(1).inner_text())
    assert similarity >= 99
    assert re.search(r"about 1 in [\d,]+ comparisons of two different people score this high", row.inner_text())
    assert "What the bias audit found at Similarity 99" in page.inner_text("aside.caveat")
    shoot(page, "compare")

    # Search with person_a_2.jpg (threshold 99 by default) and review the match.
    go(page, "nav >> text=Search")
    assert page.input_value("#threshold") == "99"
    page.select_option("#collection_id", "staff")
    page.set_input_files("#image", str(portraits / "person_a_2.jpg"))
    go(page, "button:has-text('Search')")
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
    go(page, "button:has-text('Record decisions')")
    assert "Same person" in page.inner_text("main table")
    shoot(page, "reviewed")

    # The decision counts in the collection's review statistics...
    page.goto(f"{server.url}/console/collections/staff#reviews")
    band = page.locator("#reviews ~ .table-scroll tbody tr", has_text="99 to below 99.9")
    assert band.locator("td").first.inner_text() == "1"

    # A second search, left unreviewed.
    page.goto(f"{server.url}/console/search?collection=staff")
    page.set_input_files("#image", str(portraits / "person_b_2.jpg"))
    page.fill("#threshold", "90")
    go(page, "button:has-text('Search')")
    assert page.locator("fieldset.candidate").count() >= 1

    # The audit log page: the decision, the reviewed search and the unreviewed one, under the key.
    assert server.credentials is not None
    key = server.credentials.access_key_id
    go(page, "nav >> text=Audit log")
    decision = page.locator("table.audit tbody tr", has_text="ReviewMatch")
    assert decision.count() == 1
    assert key in decision.inner_text() and "decision same" in decision.inner_text()
    assert decision.locator(f"code[title='{face_id}']").count() == 1
    searches = page.locator("table.audit tbody tr", has_text="SearchFacesByImage")
    assert [s.locator("span.review-status").inner_text() for s in searches.all()] == ["unreviewed", "reviewed"]
    shoot(page, "audit-log")
    page.select_option("#operation", "ReviewMatch")
    go(page, "button:has-text('Filter')")
    assert page.locator("table.audit tbody tr").count() == 1
    with page.expect_download() as download:
        page.click("text=JSONL")
    (downloaded,) = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert downloaded["details"] == {"decision": "same", "note": "same ears and hairline; checked by hand"}
    assert downloaded["probe_sha256"] == probe_sha256 and downloaded["face_ids"] == [face_id]
    page.goto(f"{server.url}/console/audit")
    with page.expect_download() as download:
        page.click("text=CSV")
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("time,access_key_id,operation") and rows[0].endswith(",review")
    assert sum(",reviewed" in row for row in rows) == 1 and sum(",unreviewed" in row for row in rows) == 1

    # ...and `visage audit-log` exports the same, decision and review status included.
    records = audit_log(server)
    reviews = [r for r in records if r["operation"] == "ReviewMatch"]
    assert [(r["access_key_id"], r["collection_id"], r["face_ids"], r["details"]["decision"]) for r in reviews] == [
        (key, "staff", [face_id], "same")
    ]
    searches_exported = [r for r in records if r["operation"] == "SearchFacesByImage"]
    assert [(r["access_key_id"], r["probe_sha256"] == probe_sha256, r["review"]) for r in searches_exported] == [
        (key, True, "reviewed"),
        (key, False, "unreviewed"),
    ]

    # The Accuracy page renders the evaluations' pages, plots included.
    go(page, "nav >> text=Accuracy")
    assert page.locator("article.doc table").count() > 3
    plots = page.locator("article.doc img")
    assert plots.count() > 3
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", plots.first.element_handle())
    shoot(page, "accuracy", full_page=False)  # the whole page is tens of thousands of pixels long

    # Sign out: the pages ask to sign in again.
    go(page, "button:has-text('Sign out')")
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
    go(page, "button:has-text('Create collection')")
    page.wait_for_url(re.compile(r".*/console/collections/scratch$"))
    assert "Not kept for faces indexed from now on." in page.inner_text("main")
    page.goto(f"{server.url}/console/index?collection=scratch")
    page.set_input_files("#images", [str(portraits / "person_b_1.jpg"), str(portraits / "person_b_2.jpg")])
    go(page, "button:has-text('Index')")
    page.goto(f"{server.url}/console/collections/scratch")
    assert page.locator("img.thumb").count() == 0  # this collection keeps no image

    # A user: create, associate both faces, filter by it, disassociate one, delete it.
    page.fill("#new_user", "jacinda")
    go(page, "button:has-text('Create user')")
    page.check("input.select-all")
    page.fill("#act_user", "jacinda")
    go(page, "button:has-text('Associate with user')")
    assert "Associated 2 face(s) with user jacinda." in page.inner_text("main")
    go(page, "table >> text=jacinda >> nth=0")
    assert page.locator("table.faces tbody tr").count() == 2
    page.locator("table.faces tbody input[name=face_id]").first.check()
    go(page, "button:has-text('Disassociate from user')")
    assert "Disassociated 1 face(s) from user jacinda." in page.inner_text("main")
    assert page.locator("table.faces tbody tr").count() == 1
    shoot(page, "collection-user-filter", phone=False)
    page.goto(f"{server.url}/console/collections/scratch")
    go(page, "button:has-text('Delete user jacinda')")
    assert "Deleted user jacinda" in page.inner_text("main")

    # Tags: set one, remove it.
    page.fill("#tag_key", "purpose")
    page.fill("#tag_value", "tests")
    go(page, "button:has-text('Set tag')")
    assert "purpose=tests" in page.inner_text("ul.tags")
    go(page, "button:has-text('Remove tag purpose')")
    assert "No tags." in page.inner_text("ul.tags")

    # Delete selected faces, then the collection, after a confirmation that counts its faces.
    page.locator("table.faces tbody input[name=face_id]").first.check()
    go(page, "button:has-text('Delete selected faces')")
    assert "Deleted 1 face(s)." in page.inner_text("main")
    go(page, "text=Delete it")
    assert "Its 1 face and 0 users go with it" in page.inner_text("main")
    shoot(page, "delete-collection")
    go(page, "button:has-text('Delete scratch and its 1 faces')")
    assert "Deleted collection scratch." in page.inner_text("main")
    assert "scratch" not in page.inner_text("table")


def test_a_video_job_from_the_console(page: Any, console_server: LocalServer, lin_manuel_miranda: bytes) -> None:
    """Start a face search on the Hamilton clip from the Video jobs page, watch it run, and read
    its timeline: Lin-Manuel Miranda's row, seen while he is on screen (about 2.8 to 7.0 s)."""
    from playwright.sync_api import Error as PlaywrightError

    server = console_server
    client = server.client()
    client.create_collection(CollectionId="hamilton")
    client.index_faces(
        CollectionId="hamilton", Image={"Bytes": lin_manuel_miranda}, ExternalImageId="lin-manuel-miranda"
    )
    sign_in(page, server)
    go(page, "nav >> text=Video jobs")
    page.check("input[name=api][value=StartFaceSearch]")
    page.fill("#bucket", "videos")
    page.fill("#name", "clip.mp4")
    page.select_option("#collection_id", "hamilton")
    page.fill("#threshold", "80")
    shoot(page, "jobs-start")
    go(page, "button:has-text('Start job')")
    assert "Started a StartFaceSearch job." in page.inner_text("main")
    assert page.inner_text("#job-state") in ("QUEUED", "RUNNING")
    shoot(page, "job-running", phone=False)

    # The page loads again by itself until the job has ended.
    deadline = time.monotonic() + 900
    while True:
        try:
            if page.inner_text("#job-state", timeout=5000) not in ("QUEUED", "RUNNING"):
                break
        except PlaywrightError:  # caught between two loads of the page
            pass
        assert time.monotonic() < deadline, "the job did not end in 15 minutes"
        page.wait_for_timeout(500)
    page.wait_for_load_state("load")
    assert page.inner_text("#job-state") == "SUCCEEDED"
    assert page.get_attribute("#progress", "value") == "100"
    row = page.locator("table.people tbody tr.match", has_text="lin-manuel-miranda")
    assert row.count() == 1
    # "seen 0.0-0.6 s, 2.8-7.0 s; matched ...": matched in every sampled frame while he is on screen.
    seen, matched = row.locator("span.when").inner_text().split("; ")
    stretches = [
        tuple(float(t) for t in part.removesuffix(" s").split("-"))
        for part in matched.removeprefix("matched ").split(", ")
    ]
    assert (2.8, 7.0) in stretches, matched
    assert seen.startswith("seen ") and row.locator("svg.bar rect.matched").count() == len(stretches)
    go(page, "table.people tr.match >> text=lin-manuel-miranda")
    assert "lin-manuel-miranda" in page.inner_text("table.faces")
    page.go_back()
    shoot(page, "job")

    go(page, "nav >> text=Video jobs")
    listed = page.locator("table.jobs tbody tr").first
    assert "SUCCEEDED" in listed.inner_text() and "100 %" in listed.inner_text()
    assert "s3://videos/clip.mp4" in listed.inner_text()
    shoot(page, "jobs")


#: Builds, in the page, the DataTransfer a person's drag of files from their desktop carries.
DATA_TRANSFER = """(files) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  return transfer;
}"""


def drop(page: Any, input_id: str, files: list[tuple[str, str, bytes]]) -> None:
    """Drag ``files`` (name, media type, bytes) over the drop zone of ``#input_id`` and drop
    them there, as a browser does: dragenter and dragover mark the zone, drop unmarks it."""
    import base64

    zone = f".dropzone:has(#{input_id})"
    transfer = page.evaluate_handle(
        DATA_TRANSFER, [{"name": n, "type": t, "data": base64.b64encode(b).decode()} for n, t, b in files]
    )
    for event in ("dragenter", "dragover"):
        page.dispatch_event(zone, event, {"dataTransfer": transfer})
    assert "over" in page.get_attribute(zone, "class").split()
    page.dispatch_event(zone, "drop", {"dataTransfer": transfer})
    assert "over" not in page.get_attribute(zone, "class").split()


def test_images_dropped_onto_a_form_are_the_ones_sent(page: Any, console_server: LocalServer, portraits: Path) -> None:
    """Drag and drop (the console's script): only JPEG and PNG files are taken, one for a
    single-image form, all of them for a form that takes several, and the form sends them."""
    server = console_server
    server.client().create_collection(CollectionId="dropped")
    jpeg = {name: (portraits / f"{name}.jpg").read_bytes() for name in ("person_a_1", "person_b_1", "person_b_2")}
    notes = ("notes.txt", "text/plain", b"not an image")
    sign_in(page, server)

    go(page, "nav >> text=Detect")
    drop(
        page,
        "image",
        [
            notes,
            ("person_a_1.jpg", "image/jpeg", jpeg["person_a_1"]),
            ("person_b_1.jpg", "image/jpeg", jpeg["person_b_1"]),
        ],
    )
    assert page.inner_text("#image ~ output.chosen") == "1 chosen: person_a_1.jpg"
    assert page.evaluate("document.querySelector('#image').files.length") == 1
    go(page, "button:has-text('Detect')")
    assert page.inner_text("#found") == "1 face found"

    page.goto(f"{server.url}/console/collections/dropped")
    go(page, "text=Index images into it")
    drop(
        page,
        "images",
        [
            ("person_b_1.jpg", "image/jpeg", jpeg["person_b_1"]),
            notes,
            ("person_b_2.jpg", "image/jpeg", jpeg["person_b_2"]),
        ],
    )
    assert page.inner_text("#images ~ output.chosen") == "2 chosen: person_b_1.jpg, person_b_2.jpg"
    go(page, "button:has-text('Index')")
    results = page.locator("section.result")
    assert results.count() == 2
    for name in ("person_b_1", "person_b_2"):
        assert "1 face indexed, 0 not." in results.filter(has_text=f"{name}.jpg").inner_text()
    external_ids = {f["ExternalImageId"] for f in server.client().list_faces(CollectionId="dropped")["Faces"]}
    assert external_ids == {"person_b_1", "person_b_2"}


# Security ------------------------------------------------------------------------------------


def console_paths() -> list[tuple[str, str]]:
    """(method, path) of every page and action of the console, with sample path parameters."""
    from starlette.routing import Route

    from visage.console import accuracy, audit, collections, images, jobs, keys, review, signing

    samples = {
        "{cid}": "staff",
        "{fid}": "00000000-0000-4000-8000-000000000000",
        "{uid}": "someone",
        "{path:path}": "accuracy/roc.png",
        "{kid}": "VSAKAAAAAAAAAAAAAAAA",
        "{jid}": "0" * 64,
    }
    out = [("GET", "/console/")]
    for module in (signing, collections, images, review, audit, keys, accuracy, jobs):
        for route in module.routes():
            assert isinstance(route, Route)
            path = route.path
            for name, value in samples.items():
                path = path.replace(name, value)
            out += [(method, f"/console{path}") for method in sorted(route.methods or ()) if method != "HEAD"]
    return out


def http(server: LocalServer, **kwargs: Any) -> Any:
    import httpx

    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=120, **kwargs)


def signed_in_client(server: LocalServer, **kwargs: Any) -> tuple[Any, str]:
    """An HTTP client with a signed-in console session, and the session's CSRF token."""
    assert server.credentials is not None
    client = http(server, **kwargs)
    token = csrf_of(client.get("/console/sign-in").text)
    answer = client.post(
        "/console/sign-in",
        data={
            "csrf_token": token,
            "access_key_id": server.credentials.access_key_id,
            "secret_access_key": server.credentials.secret_access_key,
        },
    )
    assert answer.status_code == 303, answer.text
    return client, csrf_of(client.get("/console/collections").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-zA-Z_-]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def test_no_page_or_action_without_a_session(console_server: LocalServer) -> None:
    paths = console_paths()
    assert len(paths) > 20
    anonymous = ("/console/sign-in",)
    for cookies in ({}, {"visage_console": "forged.cookie.value"}):
        client = http(console_server, cookies=cookies)
        for method, path in paths:
            if path in anonymous:
                continue
            answer = client.request(method, path, data={"csrf_token": "x"} if method == "POST" else None)
            if method == "GET":
                assert answer.status_code == 303, (method, path)
                assert answer.headers["location"].startswith("/console/sign-in?next="), (method, path)
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
    # The static assets carry no data and need no session.
    assert http(console_server).get("/console/static/console.css").status_code == 200


def test_a_missing_or_wrong_csrf_token_is_refused(console_server: LocalServer) -> None:
    client, token = signed_in_client(console_server)
    _, other_token = signed_in_client(console_server)
    assert token != other_token
    for sent in ({}, {"csrf_token": ""}, {"csrf_token": "0" * 64}, {"csrf_token": other_token}):
        answer = client.post("/console/collections", data={**sent, "collection_id": "csrf-victim"})
        assert answer.status_code == 403, sent
        assert "CSRF token missing or wrong" in answer.text
    assert "csrf-victim" not in console_server.client().list_collections()["CollectionIds"]
    # The same form with the session's own token goes through.
    answer = client.post("/console/collections", data={"csrf_token": token, "collection_id": "csrf-ok"})
    assert answer.status_code == 303
    assert "csrf-ok" in console_server.client().list_collections()["CollectionIds"]
    # Signing in needs the token of the sign-in page's own session too.
    assert console_server.credentials is not None
    fresh = http(console_server)
    fresh.get("/console/sign-in")
    answer = fresh.post(
        "/console/sign-in",
        data={
            "access_key_id": console_server.credentials.access_key_id,
            "secret_access_key": console_server.credentials.secret_access_key,
        },
    )
    assert answer.status_code == 403


def test_a_session_cookie_signed_by_another_server_or_left_idle_is_refused(
    console_server: LocalServer, tmp_path: Path
) -> None:
    import time

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    from visage.console.sessions import COOKIE, SECRET_FILE, Sessions

    assert console_server.credentials is not None
    key = console_server.credentials.access_key_id
    secret_file = console_server.data_dir / SECRET_FILE
    assert secret_file.stat().st_mode & 0o777 == 0o600
    ours = Sessions(console_server.data_dir, 30)  # reads this server's secret
    another = Sessions(tmp_path / "another-server", 30)  # a server of its own makes its own

    def cookie(sessions: Sessions) -> str:
        class Response:
            def set_cookie(self, name: str, value: str, **_: Any) -> None:
                self.value = value

        class Request:
            class url:
                scheme = "http"

        response = Response()
        sessions.write(response, sessions.signed_in(key), Request())  # type: ignore[arg-type]
        return response.value

    def status(value: str) -> int:
        return int(http(console_server, cookies={COOKIE: value}).get("/console/collections").status_code)

    assert status(cookie(ours)) == 200
    assert status(cookie(another)) == 303

    # A cookie whose signature is older than the idle timeout (30 minutes) is refused.
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 31 * 60

    secret = bytes.fromhex(secret_file.read_text())
    stale = URLSafeTimedSerializer(secret, salt="visage-console-session", signer=Past).dumps({"n": "x", "k": key})
    fresh = URLSafeTimedSerializer(secret, salt="visage-console-session").dumps({"n": "x", "k": key})
    assert (status(stale), status(fresh)) == (303, 200)


def test_sign_in_is_rate_limited_per_address(console_server: LocalServer) -> None:
    import httpx

    from visage.console.sessions import MAX_FAILED_SIGN_INS

    assert console_server.credentials is not None
    right = console_server.credentials.secret_access_key
    client = http(console_server, transport=httpx.HTTPTransport(local_address="127.0.0.2"))

    def sign_in_with(secret: str) -> Any:
        token = csrf_of(client.get("/console/sign-in").text)
        form = {"csrf_token": token, "access_key_id": console_server.credentials.access_key_id}  # type: ignore[union-attr]
        return client.post("/console/sign-in", data={**form, "secret_access_key": secret})

    for _ in range(MAX_FAILED_SIGN_INS):
        answer = sign_in_with("wrong-secret")
        assert answer.status_code == 401
        assert "Wrong access key id or secret access key" in answer.text
    blocked = sign_in_with(right)  # even the right secret waits now
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in blocked.text
    log = console_server.log_path.read_text()
    assert log.count("console: failed sign-in from 127.0.0.2") == MAX_FAILED_SIGN_INS
    # Another address is not held back.
    signed_in_client(console_server)


def test_markup_in_external_image_ids_and_tags_is_shown_as_text(page: Any, console_server: LocalServer) -> None:
    import numpy as np

    from visage.faces import BoundingBox
    from visage.store.base import Collection, StoredFace
    from visage.store.sqlite import SQLiteStore

    hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    sign_in(page, console_server)
    # The service model's patterns refuse such values from the console, as from the API...
    page.fill("#collection_id", "markup")
    page.fill("#tags", f"note={hostile}")
    go(page, "button:has-text('Create collection')")
    assert "Tags[note] must match" in page.inner_text("p.flash.error")
    # ...but a store may hold them from elsewhere (another tool on a shared PostgreSQL, an old
    # database): put them there directly, as such a tool would.
    with SQLiteStore(console_server.data_dir / "visage.db") as store:
        store.create_collection(
            Collection(
                "markup",
                "arn:aws:rekognition:us-east-1:000000000000:collection/markup",
                "sface",
                "sface-1",
                datetime.now(UTC),
                {hostile: hostile},
            )
        )
        vector = np.zeros(128, dtype=np.float32)
        vector[0] = 1
        store.add_faces(
            "markup",
            [
                StoredFace(
                    "11111111-1111-4111-8111-111111111111",
                    "22222222-2222-4222-8222-222222222222",
                    BoundingBox(0.1, 0.1, 0.5, 0.5),
                    99.0,
                    vector,
                    external_image_id=hostile,
                    user_id=hostile,
                )
            ],
        )
    page.goto(f"{console_server.url}/console/collections")
    assert f"{hostile}={hostile}" in page.inner_text("table")
    page.goto(f"{console_server.url}/console/collections/markup")
    assert hostile in page.inner_text("table.faces")
    assert page.locator("table.faces img[src=x]").count() == 0
    shoot(page, "markup-as-text", phone=False)
    # (the page fixture checks that no alert() ran)


def test_keys_pages_are_for_key_managers_and_revoking_a_key_ends_its_session(
    browser: Any, page: Any, console_server: LocalServer
) -> None:
    from visage.policy import Policy

    server = console_server
    reader = server.create_key(Policy.read_only(), "a reader")
    other = browser.new_context(viewport=DESKTOP)
    try:
        reading = other.new_page()
        sign_in(reading, server, reader.access_key_id, reader.secret_access_key)
        # A read-only key sees no Keys page, and may not open it.
        assert reading.locator("nav >> text=Keys").count() == 0
        reading.goto(f"{server.url}/console/keys")
        assert "Not allowed" in reading.inner_text("main")
        assert "visage:ManageKeys" in reading.inner_text("p.flash.error")
        # It may read the audit log (read-only keys may), but not record a decision: the search page's
        # review form is refused by the service as an API call would be.
        reading.goto(f"{server.url}/console/audit")
        assert reading.locator("table.audit tbody tr").count() > 0

        # The administrator sees the keys, makes one (its secret shown once) and revokes the reader's.
        sign_in(page, server)
        go(page, "nav >> text=Keys")
        assert page.locator("table tbody tr", has_text=reader.access_key_id).count() == 1
        page.fill("#name", "door camera")
        page.select_option("#preset", "collection")
        page.fill("#collection_id", "staff")
        go(page, "button:has-text('Create key')")
        new_key = page.inner_text("#new-key-id")
        assert len(page.inner_text("#new-key-secret")) == 40
        row = page.locator("table tbody tr", has_text=new_key)
        assert "door camera" in row.inner_text() and "staff" in row.inner_text()
        shoot(page, "keys")
        go(page, f"button:has-text('Revoke {reader.access_key_id}')")
        assert f"Revoked {reader.access_key_id}" in page.inner_text("main")
        assert "revoked" in page.locator("table tbody tr", has_text=reader.access_key_id).inner_text()

        # The reader's session ends at its next request.
        reading.goto(f"{server.url}/console/collections")
        assert "/console/sign-in" in reading.url
        reading.fill("#access_key_id", reader.access_key_id)
        reading.fill("#secret_access_key", reader.secret_access_key)
        go(reading, "button:has-text('Sign in')")
        assert "or the key was revoked" in reading.inner_text("p.flash.error")
    finally:
        other.close()
