"""Console pages driven in-process: the console's Starlette app over a real service (the
session's engine, a real SQLite store, real keys), through Starlette's test client, signed
in with the sign-in form as a browser would be."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
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
from visage.console.jobs import Span, spans
from visage.engine import Engine
from visage.engine.registry import MODEL_NAMES
from visage.evaluation.costs import threshold_cost
from visage.policy import Policy
from visage.service import Caller, RekognitionService
from visage.store.base import Collection
from visage.store.sqlite import SQLiteStore

from .conftest import encode
from .videos import face_photo, passing_walkers, walk_frames, write_h264

LOCAL = Caller.local("tests")
WALK = {"S3Object": {"Bucket": "videos", "Name": "walk.mp4"}}


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


def test_a_key_for_one_collection_indexes_searches_and_reviews_in_it(console: Console, portraits: Path) -> None:
    """Such a key may not list the collections (docs/keys.md), so the Index and Search forms
    ask for the collection's id instead of offering a list it cannot have; showing them
    records no refused call, and a search in its collection can be reviewed."""
    service = console.service
    service.call("CreateCollection", {"CollectionId": "staff"}, LOCAL)
    client = console.client(Policy.for_collection(service.collection_arn("staff")))
    for path in ("/index", "/search?collection=staff"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:2000])
        assert re.search(r'<input id="collection_id" name="collection_id"', page.text), path
        assert "may not list the collections" in text_of(page.text, r'<p class="hint" id="collection_hint">(.*?)</p>')
    assert 'value="staff"' in client.get("/search?collection=staff").text
    assert service.store.audit_records(outcome="refused") == []

    photo = (portraits / "person_a_1.jpg").read_bytes()
    indexed = client.post(
        "/index",
        data={"csrf_token": csrf_of(client.get("/index").text), "collection_id": "staff", "max_faces": "1"},
        files={"images": ("person_a_1.jpg", photo, "image/jpeg")},
    )
    assert indexed.status_code == 200 and "1 face indexed" in indexed.text, indexed.text[:2000]
    found = client.post(
        "/search",
        data={"csrf_token": csrf_of(client.get("/search").text), "collection_id": "staff", "threshold": "80"},
        files={"image": ("person_a_2.jpg", (portraits / "person_a_2.jpg").read_bytes(), "image/jpeg")},
    )
    assert found.status_code == 200 and "1 candidate in staff" in found.text, found.text[:2000]
    token = re.search(r'name="candidate" value="([^"]+)"', found.text)
    assert token is not None
    reviewed = client.post(
        "/search/review",
        data={"csrf_token": csrf_of(found.text), "candidate": token.group(1), "decision-0": "same", "note-0": ""},
    )
    assert reviewed.status_code == 200, reviewed.text[:2000]
    (decision,) = service.store.audit_records(operation="ReviewMatch")
    assert decision.collection_id == "staff" and decision.details["decision"] == "same"
    assert service.store.audit_records(outcome="refused") == []


def test_the_key_form_refuses_a_wildcard_for_one_collection(console: Console) -> None:
    """``*`` (or ``team-*``) typed as the collection of a one-collection key would make a key for
    every collection: the form refuses it, and no key is made."""
    client = console.client()
    before = len(console.service.keys.keys())
    for typed in ("*", "team-*"):
        page = client.post(
            "/keys",
            data={"csrf_token": csrf_of(client.get("/keys").text), "preset": "collection", "collection_id": typed},
        )
        assert f"{typed!r} is not a CollectionId" in html.unescape(page.text), page.text[:2000]
    assert len(console.service.keys.keys()) == before


def test_revoking_the_sessions_own_key_says_so_on_the_sign_in_page(console: Console) -> None:
    client = console.client()
    (key,) = console.service.keys.keys()
    revoked = client.post(f"/keys/{key.access_key_id}/revoke", data={"csrf_token": csrf_of(client.get("/keys").text)})
    assert revoked.status_code == 303 and revoked.headers["location"].endswith("/sign-in")
    notice = f"Revoked {key.access_key_id}, the key of this session: it has ended."
    assert notice in html.unescape(client.get("/sign-in").text)
    assert notice not in html.unescape(client.get("/sign-in").text)  # shown once


# Collections ---------------------------------------------------------------------------------


def test_a_collection_created_in_the_console_keeps_the_face_model_chosen_there(console: Console) -> None:
    """The form offers every face model and the server's; the collection keeps what was chosen.
    An unknown model is refused with the choices, and a key that may not create collections
    may not create one of any model."""
    client = console.client()
    page = client.get("/collections")
    assert page.status_code == 200
    assert all(f'<option value="{model}">{model}: ' in page.text for model in MODEL_NAMES), page.text[-3000:]
    assert "As the server says (sface)" in page.text
    token = csrf_of(page.text)
    for collection_id, choice in (("turned", "sface-crops"), ("plain", "server"), ("older", "dlib")):
        answer = client.post(
            "/collections", data={"csrf_token": token, "collection_id": collection_id, "face_model": choice}
        )
        assert answer.headers["location"] == f"/console/collections/{collection_id}", answer.text[:2000]
    store = console.service.store
    versions = {c: store.get_collection(c).face_model_version for c in ("turned", "plain", "older")}
    assert versions == {"turned": "sface-crops-1", "plain": "sface-1", "older": "dlib-1"}
    refused = client.post("/collections", data={"csrf_token": token, "collection_id": "odd", "face_model": "arcface"})
    assert refused.status_code == 400
    assert "Unknown face model 'arcface'; choose one of sface, dlib, sface-crops, fusion" in html.unescape(refused.text)
    reader = console.client(Policy.read_only())
    refused = reader.post(
        "/collections",
        data={"csrf_token": csrf_of(reader.get("/collections").text), "collection_id": "odd", "face_model": "dlib"},
    )
    assert "rekognition:CreateCollection" in refused.text
    assert sorted(c.collection_id for c in store.list_collections(None, 10)) == ["older", "plain", "turned"]


# Video jobs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walk_video(tmp_path_factory: pytest.TempPathFactory, lfw: Path) -> Path:
    """Two seconds of three LFW people walking (H.264, 640x360, 25 fps)."""
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    return write_h264(path, walk_frames(passing_walkers(lfw), (640, 360), 2.0, 25), fps=25)


def start_form(client: TestClient, **fields: str) -> dict[str, str]:
    """The start form as the Video jobs page fills it (its CSRF and ClientRequestToken), with ``fields``."""
    page = client.get("/jobs").text
    token = re.search(r'name="client_request_token" value="([0-9a-f]+)"', page)
    assert token is not None
    return {"csrf_token": csrf_of(page), "client_request_token": token.group(1), **fields}


def finished_page(client: TestClient, job_id: str, timeout: float = 300) -> str:
    """The job's page once it no longer refreshes itself (the job has ended)."""
    deadline = time.monotonic() + timeout
    while 'http-equiv="refresh"' in (page := client.get(f"/jobs/{job_id}")).text:
        assert page.status_code == 200
        assert time.monotonic() < deadline, f"job {job_id} still running after {timeout:.0f} s"
        time.sleep(0.5)
    assert page.status_code == 200, page.text[:2000]
    return page.text


def test_jobs_page_starts_a_face_search_and_a_face_detection_and_draws_their_timelines(
    console: Console, walk_video: Path, lfw: Path
) -> None:
    service = console.service
    (console.settings.s3_root / "videos").mkdir(parents=True)  # type: ignore[operator]
    shutil.copy(walk_video, console.settings.s3_root / "videos" / "walk.mp4")  # type: ignore[operator]
    service.call("CreateCollection", {"CollectionId": "people"}, LOCAL)
    photo = encode(face_photo(lfw, "Colin_Powell", 2, 200))
    service.call("IndexFaces", {"CollectionId": "people", "Image": {"Bytes": photo}, "ExternalImageId": "colin"}, LOCAL)
    client = console.client()
    assert "No video job yet" in client.get("/jobs").text

    # Start a face search from the form: the job's page shows it queued, and reloads itself.
    form = start_form(
        client, api="StartFaceSearch", bucket="videos", name="walk.mp4", collection_id="people", threshold="80"
    )
    answer = client.post("/jobs", data=form)
    assert answer.status_code == 303, answer.text[:2000]
    job_id = answer.headers["location"].removeprefix("/console/jobs/")
    queued = client.get(f"/jobs/{job_id}").text
    assert "Started a StartFaceSearch job." in queued and 'http-equiv="refresh"' in queued
    assert text_of(queued, r'id="job-state">(.*?)</dd>') == "QUEUED"
    # The same form sent again (a double click) returns the same job and starts none.
    assert client.post("/jobs", data=form).headers["location"] == f"/console/jobs/{job_id}"

    service.video.workers.start()
    page = finished_page(client, job_id)
    assert text_of(page, r'id="job-state">(.*?)</dd>') == "SUCCEEDED"
    assert 'value="100"' in page
    # One row per Person.Index, as GetFaceSearch gives them; Colin's row has his match and its link.
    persons = service.call("GetFaceSearch", {"JobId": job_id}, LOCAL)["Persons"]
    indexes = sorted({p["Person"]["Index"] for p in persons})
    rows = re.findall(r"<tr class=\"(match|nomatch)\">\s*<th scope=\"row\">(\d+)</th>(.*?)</tr>", page, re.S)
    assert [int(index) for _, index, _ in rows] == indexes
    (colin,) = {p["Person"]["Index"] for p in persons if p["FaceMatches"]}
    row = next(body for kind, index, body in rows if int(index) == colin)
    seen = sorted(p["Timestamp"] for p in persons if p["Person"]["Index"] == colin)
    matched = sorted(p["Timestamp"] for p in persons if p["FaceMatches"])
    assert text_of(row, r'<span class="when">(.*?)</span>') == (
        f"seen {seen[0] / 1000:.1f}-{seen[-1] / 1000:.1f} s; matched {matched[0] / 1000:.1f}-{matched[-1] / 1000:.1f} s"
    )
    best = max(m["Similarity"] for p in persons for m in p["FaceMatches"])
    assert f"<strong>{best:.2f}</strong>" in row
    assert 'href="/console/collections/people?external_image_id=colin#faces"' in row
    assert [kind for kind, index, _ in rows if int(index) != colin] == ["nomatch"] * (len(indexes) - 1)

    # A face detection: one bar per sampled frame with a face, as GetFaceDetection gives them.
    answer = client.post("/jobs", data=start_form(client, api="StartFaceDetection", bucket="videos", name="walk.mp4"))
    detection = answer.headers["location"].removeprefix("/console/jobs/")
    page = finished_page(client, detection)
    faces = service.call("GetFaceDetection", {"JobId": detection}, LOCAL)["Faces"]
    frames = sorted({f["Timestamp"] for f in faces})
    assert f"{len(faces)} faces in {len(frames)} sampled frames" in page
    assert len(re.findall(r'<rect class="seen"', page)) == len(frames)

    # The list: newest first, with their state, progress and video.
    listed = client.get("/jobs").text
    assert re.findall(r'href="/console/jobs/([0-9a-f]+)"', listed) == [detection, job_id]
    assert listed.count("SUCCEEDED") == 2 and listed.count("100 %") == 2
    assert listed.count("s3://videos/walk.mp4") == 2
    assert client.get("/jobs/" + "0" * 64).status_code == 404


def test_a_video_that_cannot_be_read_is_refused_on_the_form(console: Console) -> None:
    client = console.client()
    answer = client.post("/jobs", data=start_form(client, api="StartFaceDetection", bucket="videos", name="gone.mp4"))
    assert answer.status_code == 400
    assert "InvalidS3ObjectException" in text_of(answer.text, r'<p class="flash error" role="alert">(.*?)</p>')
    assert 'value="gone.mp4"' in answer.text  # the form keeps what was typed


def test_jobs_pages_refuse_a_key_without_the_permission(console: Console, walk_video: Path) -> None:
    (console.settings.s3_root / "videos").mkdir(parents=True)  # type: ignore[operator]
    shutil.copy(walk_video, console.settings.s3_root / "videos" / "walk.mp4")  # type: ignore[operator]
    job_id = console.service.call("StartFaceDetection", {"Video": WALK}, LOCAL)["JobId"]
    # A key that may only look at collections may not list the jobs, nor open one.
    looker = console.client(Policy.parse(statement("rekognition:List*", "rekognition:Describe*")))
    for path in ("/jobs", f"/jobs/{job_id}"):
        refused = looker.get(path)
        assert refused.status_code == 403 and "Not allowed" in refused.text, path
        assert "rekognition:GetFaceDetection" in refused.text
    # A read-only key lists and reads jobs, but may not start one: the service says so.
    reader = console.client(Policy.read_only())
    assert job_id in reader.get("/jobs").text
    refused = reader.post("/jobs", data=start_form(reader, api="StartFaceDetection", bucket="videos", name="walk.mp4"))
    assert refused.status_code == 403 and "rekognition:StartFaceDetection" in refused.text
    assert [j.job_id for j in console.service.store.list_jobs(10)] == [job_id]
    refusals = console.service.store.audit_records(None, outcome="refused")
    assert {r.operation for r in refusals} >= {"ListJobs", "GetFaceDetection", "StartFaceDetection"}


def statement(*actions: str) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}
    )


def test_spans_join_sampled_frames_a_step_apart() -> None:
    assert spans([0, 200, 400, 1000, 1200, 3000], 200) == [Span(0, 400), Span(1000, 1200), Span(3000, 3000)]
    assert [s.words() for s in spans([0, 200, 400, 3000], 200)] == ["0.0-0.4 s", "3.0 s"]
    assert spans([], 200) == []
