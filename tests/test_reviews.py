"""Face thumbnails and reviewers' decisions, through the service, with the real engine and a real store."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from visage.api.protocol import rekognition
from visage.config import Settings
from visage.engine import Engine
from visage.engine.registry import face_model_entry
from visage.engine.similarity import SimilarityMap
from visage.engine.thumbnails import MAX_THUMBNAIL_BYTES, THUMBNAIL_SIDE
from visage.errors import AccessDeniedException, InvalidParameterException, ResourceNotFoundException
from visage.evaluation.prediction import predicted_fmr
from visage.policy import Policy
from visage.service import Caller, RekognitionService
from visage.store.base import Collection
from visage.store.sqlite import SQLiteStore

CALLER = Caller.local("VSAKREVIEWER")
PROBE = hashlib.sha256(b"probe image").hexdigest()


@pytest.fixture
def service(engine: Engine, tmp_path: Path) -> Iterator[RekognitionService]:
    store = SQLiteStore(tmp_path / "visage.db")
    yield RekognitionService(engine, store, replace(engine.settings, keep_face_thumbnails=False))
    store.close()


def index(service: RekognitionService, collection_id: str, image: Path) -> list[str]:
    answer = service.call("IndexFaces", {"CollectionId": collection_id, "Image": {"Bytes": image.read_bytes()}}, CALLER)
    return [record["Face"]["FaceId"] for record in answer["FaceRecords"]]


def test_thumbnails_are_kept_only_where_asked(service: RekognitionService, portraits: Path) -> None:
    for collection_id in ("default", "on", "off"):
        service.call("CreateCollection", {"CollectionId": collection_id}, CALLER)
    service.set_keep_face_thumbnails("on", True, CALLER)
    service.set_keep_face_thumbnails("off", False, CALLER)
    image = portraits / "solvay_conference_1927.jpg"
    indexed = {c: index(service, c, image) for c in ("default", "on", "off")}
    kept = {c: service.face_thumbnails(c, ids, CALLER) for c, ids in indexed.items()}
    assert len(indexed["on"]) > 20  # the faces of the Solvay photo that pass QualityFilter AUTO
    assert (len(kept["default"]), len(kept["on"]), len(kept["off"])) == (0, len(indexed["on"]), 0)
    for jpeg in kept["on"].values():
        assert len(jpeg) <= MAX_THUMBNAIL_BYTES
        with Image.open(io.BytesIO(jpeg)) as picture:
            assert (picture.format, picture.size) == ("JPEG", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))

    # The server's setting is the default of collections that have none; a collection's own wins.
    server_keeps = RekognitionService(
        service.engine, service.store, replace(service.settings, keep_face_thumbnails=True)
    )
    assert server_keeps.face_thumbnails("default", index(server_keeps, "default", portraits / "person_a_1.jpg"), CALLER)
    assert not server_keeps.face_thumbnails("off", index(server_keeps, "off", portraits / "person_a_1.jpg"), CALLER)


def test_a_face_page_says_which_faces_have_a_thumbnail(service: RekognitionService, portraits: Path) -> None:
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    without = index(service, "c", portraits / "person_b_1.jpg")
    service.set_keep_face_thumbnails("c", True, CALLER)
    with_one = index(service, "c", portraits / "person_b_2.jpg")
    page = service.face_page("c", CALLER, limit=1)
    assert len(page.faces) == 1 and page.next_after == page.faces[0].face_id
    whole = service.face_page("c", CALLER)
    assert sorted(f.face_id for f in whole.faces) == sorted(without + with_one)
    assert whole.with_thumbnail == frozenset(with_one)
    assert all(f.indexed_at is not None for f in whole.faces)
    assert service.face_page("c", CALLER, external_image_id="nobody").faces == []


def test_thumbnails_never_leave_through_the_rekognition_api(service: RekognitionService, portraits: Path) -> None:
    service.call("CreateCollection", {"CollectionId": "c", "Tags": {"k": "v"}}, CALLER)
    service.set_keep_face_thumbnails("c", True, CALLER)
    probe = {"Bytes": (portraits / "person_a_2.jpg").read_bytes()}
    (face_id,) = index(service, "c", portraits / "person_a_1.jpg")
    jpeg = service.face_thumbnails("c", [face_id], CALLER)[face_id]
    requests = {
        "IndexFaces": {"CollectionId": "c", "Image": {"Bytes": (portraits / "person_a_1.jpg").read_bytes()}},
        "ListFaces": {"CollectionId": "c"},
        "SearchFaces": {"CollectionId": "c", "FaceId": face_id, "FaceMatchThreshold": 0.0},
        "SearchFacesByImage": {"CollectionId": "c", "Image": probe},
        "DescribeCollection": {"CollectionId": "c"},
        "ListCollections": {},
    }
    model = rekognition()
    for operation, request in requests.items():
        body = model.encode_response(operation, service.call(operation, request, CALLER))
        assert base64.b64encode(jpeg) not in body, operation
        assert base64.b64encode(jpeg[:64])[:80] not in body, operation


def test_a_decision_is_checked_stored_and_audited(service: RekognitionService) -> None:
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    face = "11111111-1111-4111-8111-111111111111"
    review = service.review_match("c", PROBE, face, 99.4, "same", "same scar", CALLER)
    assert (review.access_key_id, review.decision, review.probe_sha256) == (CALLER.access_key_id, "same", PROBE)
    assert review.note == "same scar"
    assert service.match_reviews("c", CALLER) == [review]
    (record,) = [r for r in service.store.audit_records() if r.operation == "ReviewMatch"]
    assert (record.access_key_id, record.collection_id, record.face_ids, record.best_similarity) == (
        CALLER.access_key_id,
        "c",
        [face],
        99.4,
    )
    assert (record.probe_sha256, record.match_count, record.details) == (
        PROBE,
        0,  # a decision is no search: it matched nothing
        {"decision": "same", "note": "same scar"},
    )
    bad = {
        "decision": (dict(decision="maybe"), "decision must be one of same, different, cannot_tell, not 'maybe'."),
        "probe": (
            dict(probe_sha256="not-a-digest"),
            "probe_sha256 must be the SHA-256 of the probe image, in lowercase hex.",
        ),
        "face": (dict(face_id="../../etc"), "'../../etc' is not a FaceId."),
        "similarity": (dict(similarity=100.5), "similarity must be between 0 and 100, not 100.5."),
        "note": (dict(note="x" * 2001), "A note may hold at most 2000 characters."),
    }
    good = dict(collection_id="c", probe_sha256=PROBE, face_id=face, similarity=99.0, decision="different", note="")
    for name, (change, message) in bad.items():
        with pytest.raises(InvalidParameterException) as caught:
            service.review_match(**{**good, **change}, caller=CALLER)  # type: ignore[arg-type]
        assert caught.value.message == message, name
        assert len(service.match_reviews("c", CALLER)) == 1, name
    # The bounds are allowed; a browser sends a textarea's line breaks as CRLF, but counts them as one.
    crlf = "\r\n".join(["x" * 199] * 10)  # 1,999 characters to the browser, 2,008 sent
    for edge in (dict(similarity=0.0), dict(similarity=100.0), dict(note="x" * 2000), dict(note=crlf)):
        service.review_match(**{**good, **edge}, caller=CALLER)  # type: ignore[arg-type]
    assert len(service.match_reviews("c", CALLER)) == 5
    assert service.match_reviews("c", CALLER)[-1].note == crlf.replace("\r\n", "\n")
    with pytest.raises(ResourceNotFoundException):
        service.review_match(**{**good, "collection_id": "missing"}, caller=CALLER)  # type: ignore[arg-type]


def test_review_statistics_count_each_candidates_latest_decision_per_band(service: RekognitionService) -> None:
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    other = hashlib.sha256(b"another probe").hexdigest()
    faces = [f"{i}1111111-1111-4111-8111-111111111111" for i in range(5)]
    decisions = [
        (PROBE, faces[0], 99.95, "same"),
        (PROBE, faces[1], 99.5, "different"),
        (PROBE, faces[1], 99.5, "same"),  # decided again: the latest counts
        (other, faces[1], 99.2, "different"),  # another probe: another candidate
        (PROBE, faces[2], 85.0, "different"),
        (PROBE, faces[3], 12.0, "cannot_tell"),
    ]
    for probe, face, similarity, decision in decisions:
        service.review_match("c", probe, face, similarity, decision, "", CALLER)
    bands = {band.low: band for band in service.review_statistics("c", CALLER)}
    counts = {low: (b.same, b.different, b.cannot_tell) for low, b in bands.items()}
    assert counts == {
        0.0: (0, 0, 1),
        80.0: (0, 1, 0),
        90.0: (0, 0, 0),
        95.0: (0, 0, 0),
        99.0: (1, 1, 0),
        99.9: (1, 0, 0),
    }
    assert bands[99.0].rejected_share == 0.5 and bands[90.0].rejected_share is None
    assert bands[99.0].promised_fmr == pytest.approx(1e-6)
    assert bands[80.0].promised_fmr == pytest.approx(2e-5)
    assert (bands[99.0].high, bands[99.9].high) == (99.9, 100.0)


def test_the_reviews_of_one_probe_are_those_of_its_candidates_only(service: RekognitionService) -> None:
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    other = hashlib.sha256(b"another probe").hexdigest()
    face = "11111111-1111-4111-8111-111111111111"
    first = service.review_match("c", PROBE, face, 99.5, "same", "", CALLER)
    second = service.review_match("c", other, face, 97.0, "different", "", CALLER)
    assert service.match_reviews("c", CALLER, PROBE) == [first]
    assert service.match_reviews("c", CALLER, other) == [second]
    assert service.match_reviews("c", CALLER) == [first, second]


def test_review_statistics_promise_the_false_match_rates_of_the_collections_face_model(tmp_path: Path) -> None:
    """A dlib collection on an SFace server: each band's promised rate is that of dlib's map in force.
    Every shipped map now promises the same rates by definition, so the server here serves dlib with a
    map of its own (--similarity-map) that is not graded below 50, whose low band promises another rate."""
    dlib = SimilarityMap.load("dlib")
    own = replace(dlib, metadata={k: v for k, v in dlib.metadata.items() if k != "graded_below"})
    engine = Engine(Settings(data_dir=tmp_path, similarity_map=own.save(tmp_path / "maps")))
    store = SQLiteStore(tmp_path / "visage.db")
    service = RekognitionService(engine, store, engine.settings)
    version = face_model_entry("dlib").version
    store.create_collection(Collection("d", service.collection_arn("d"), "dlib", version, datetime.now(UTC)))
    bands = service.review_statistics("d", CALLER)
    assert engine.similarity_map("dlib").metadata.get("graded_below") is None  # the map in force is ours
    assert [b.promised_fmr for b in bands] == [predicted_fmr(own, b.low) for b in bands]
    sface = engine.similarity_map("sface")
    assert [b.promised_fmr for b in bands] != [predicted_fmr(sface, b.low) for b in bands]  # the maps' differ
    store.close()


def test_the_server_setting_reads_from_the_environment() -> None:
    assert Settings.from_env({"VISAGE_KEEP_FACE_THUMBNAILS": "yes"}).keep_face_thumbnails is True
    assert Settings.from_env({}).keep_face_thumbnails is False
    assert Settings.from_env({"VISAGE_CONSOLE_IDLE_MINUTES": "5"}).console_idle_minutes == 5


def test_visages_own_operations_check_the_callers_policy(service: RekognitionService, portraits: Path) -> None:
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    service.call("CreateCollection", {"CollectionId": "other"}, CALLER)
    service.set_keep_face_thumbnails("c", True, CALLER)
    (face_id,) = index(service, "c", portraits / "person_a_1.jpg")
    reader = Caller("VSAKREADER", Policy.read_only())
    assert service.face_page("c", reader).with_thumbnail == {face_id}
    assert face_id in service.face_thumbnails("c", [face_id], reader)
    assert len(service.review_statistics("c", reader)) == 6
    with pytest.raises(AccessDeniedException, match="visage:ReviewMatch"):
        service.review_match("c", PROBE, face_id, 99.5, "same", "", reader)
    with pytest.raises(AccessDeniedException, match="visage:ConfigureCollection"):
        service.set_keep_face_thumbnails("c", False, reader)
    with pytest.raises(AccessDeniedException, match="visage:ReadAuditLog"):
        service.review_status(Caller("VSAKNOBODY", Policy.for_collection(service.collection_arn("c"))), [])
    # A key for one collection reviews there, and sees nothing of another.
    one = Caller("VSAKONE", Policy.for_collection(service.collection_arn("c")))
    service.review_match("c", PROBE, face_id, 99.5, "same", "", one)
    with pytest.raises(AccessDeniedException, match="collection/other"):
        service.face_page("other", one)
    refused = [r for r in service.store.audit_records() if r.outcome == "refused"]
    assert [r.access_key_id for r in refused] == ["VSAKREADER", "VSAKREADER", "VSAKNOBODY", "VSAKONE"]


def test_a_searchs_review_status_follows_its_candidates_decisions(service: RekognitionService, portraits: Path) -> None:
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    ids = index(service, "c", portraits / "person_a_1.jpg") + index(service, "c", portraits / "person_a_2.jpg")
    probe = (portraits / "person_a_2.jpg").read_bytes()
    request = {"CollectionId": "c", "Image": {"Bytes": probe}, "FaceMatchThreshold": 90.0}
    found = service.call("SearchFacesByImage", request, CALLER)
    assert sorted(m["Face"]["FaceId"] for m in found["FaceMatches"]) == sorted(ids)
    digest = hashlib.sha256(probe).hexdigest()

    def status() -> list[str | None]:
        records = service.store.audit_records()
        return [s for r, s in zip(records, service.review_status(CALLER, records)) if r.operation != "IndexFaces"]

    assert status() == ["unreviewed"]
    service.review_match("c", digest, ids[0], 99.0, "same", "", CALLER)
    assert status() == ["1 of 2 reviewed", None]
    service.review_match("c", digest, ids[1], 100.0, "cannot_tell", "", CALLER)
    assert status() == ["reviewed", None, None]


def test_reviews_are_read_with_describe_collection_and_review_status_with_read_audit_log(
    service: RekognitionService,
) -> None:
    """The decisions and their statistics are checked as rekognition:DescribeCollection on the
    collection's ARN, review statuses as visage:ReadAuditLog on *; a refusal names the action and
    resource, and is audited under the action's operation."""
    for collection_id in ("c", "other"):
        service.call("CreateCollection", {"CollectionId": collection_id}, CALLER)
    review = service.review_match("c", PROBE, "11111111-1111-4111-8111-111111111111", 99.5, "same", "", CALLER)
    one = Caller("VSAKONE", Policy.for_collection(service.collection_arn("c")))
    assert service.match_reviews("c", one) == [review]
    assert [b.same for b in service.review_statistics("c", one)] == [0, 0, 0, 0, 1, 0]
    door, arn = Caller("VSAKDOOR", Policy.for_collection(service.collection_arn("other"))), service.collection_arn("c")
    checks = (
        (lambda: service.match_reviews("c", door), "rekognition:DescribeCollection", arn),
        (lambda: service.review_statistics("c", door), "rekognition:DescribeCollection", arn),
        (lambda: service.review_status(door, service.store.audit_records()), "visage:ReadAuditLog", "*"),
    )
    for refused, action, resource in checks:
        with pytest.raises(AccessDeniedException) as denied:
            refused()
        assert denied.value.message == (
            f"User: VSAKDOOR is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action"
        )
    refusals = [r for r in service.store.audit_records() if r.outcome == "refused"]
    assert [(r.operation, r.access_key_id, r.collection_id, r.details) for r in refusals] == [
        (
            action.split(":")[1],
            "VSAKDOOR",
            "c" if resource == arn else None,
            {"action": action, "resource": resource, "reason": "no allow"},
        )
        for _, action, resource in checks
    ]
