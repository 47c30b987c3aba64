"""The service's behaviours, each by a test that fails when the behaviour breaks.

The real service over the real engine and a real SQLite store in the test's folder,
called in-process (no HTTP: the wire is tests/test_server*.py's business). Each test
names the deliberate bug it was written to catch (issue 18's list).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from visage.config import DEFAULT_THRESHOLD, Settings
from visage.engine import Engine
from visage.engine.quality import quality_filter_reasons
from visage.errors import (
    InvalidPaginationTokenException,
    InvalidParameterException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    VisageError,
)
from visage.service import MAX_TAGS, Caller, RekognitionService
from visage.store.base import Collection
from visage.store.sqlite import SQLiteStore

from .conftest import encode

CALLER = Caller.local("VSAKTESTTESTTESTTEST")
PEOPLE = ("person_a_1", "person_a_2", "person_b_1", "person_b_2", "impostor_1", "impostor_2")


@pytest.fixture(scope="module")
def images(portraits: Path) -> dict[str, bytes]:
    return {name: (portraits / f"{name}.jpg").read_bytes() for name in (*PEOPLE, "solvay_conference_1927")}


def make_service(engine: Engine, folder: Path, **settings: Any) -> RekognitionService:
    chosen = Settings(data_dir=folder, **settings)
    return RekognitionService(engine, SQLiteStore(chosen.sqlite_path), chosen)


@pytest.fixture()
def service(engine: Engine, tmp_path: Path) -> RekognitionService:
    made = make_service(engine, tmp_path)
    made.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    return made


def index(service: RekognitionService, image: bytes, **request: Any) -> str:
    """Index ``image`` into collection c; the id of its face."""
    response = service.call("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": image}, **request}, CALLER)
    (record,) = response["FaceRecords"]
    return str(record["Face"]["FaceId"])


def audit(service: RekognitionService) -> list[Any]:
    return service.store.audit_records(None)


# Face search -------------------------------------------------------------------------


def test_search_faces_by_image_says_how_sure_it_is_of_the_searched_face(
    service: RekognitionService, engine: Engine, images: dict[str, bytes]
) -> None:
    """Bug: SearchedFaceConfidence dropped."""
    index(service, images["person_a_1"])
    response = service.call(
        "SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": images["person_a_2"]}}, CALLER
    )
    (detected,) = engine.detect_faces(images["person_a_2"])
    assert response["SearchedFaceConfidence"] == pytest.approx(detected.confidence)
    assert 50 < response["SearchedFaceConfidence"] <= 100
    assert response["SearchedFaceBoundingBox"] == detected.bounding_box.to_rekognition()


def side_by_side(engine: Engine, left: bytes, right: bytes) -> bytes:
    """One image holding both images' faces."""
    a, b = engine.decode(left).rgb, engine.decode(right).rgb
    height = min(a.shape[0], b.shape[0])
    a, b = (cv2.resize(x, (round(x.shape[1] * height / x.shape[0]), height)) for x in (a, b))
    return encode(np.ascontiguousarray(np.hstack([a, b])))


def test_every_search_and_comparison_is_audited_with_its_best_similarity(
    service: RekognitionService, engine: Engine, images: dict[str, bytes]
) -> None:
    """Bugs: CompareFaces, SearchFaces and the user searches not audited; the audit record
    keeping the worst similarity instead of the best."""
    ids = {name: index(service, images[name]) for name in PEOPLE[:4]}
    service.call("CreateUser", {"CollectionId": "c", "UserId": "a"}, CALLER)
    service.call("CreateUser", {"CollectionId": "c", "UserId": "b"}, CALLER)
    service.call("AssociateFaces", {"CollectionId": "c", "UserId": "a", "FaceIds": [ids["person_a_1"]]}, CALLER)
    service.call("AssociateFaces", {"CollectionId": "c", "UserId": "b", "FaceIds": [ids["person_b_1"]]}, CALLER)
    everyone = {"FaceMatchThreshold": 0.0}
    responses = {
        "CompareFaces": service.call(
            "CompareFaces",
            {
                "SourceImage": {"Bytes": images["person_a_2"]},
                "TargetImage": {"Bytes": side_by_side(engine, images["person_a_1"], images["impostor_1"])},
                "SimilarityThreshold": 0.0,
            },
            CALLER,
        ),
        "SearchFaces": service.call(
            "SearchFaces", {"CollectionId": "c", "FaceId": ids["person_a_1"], **everyone}, CALLER
        ),
        "SearchFacesByImage": service.call(
            "SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": images["person_a_2"]}, **everyone}, CALLER
        ),
        "SearchUsers": service.call(
            "SearchUsers", {"CollectionId": "c", "FaceId": ids["person_a_2"], "UserMatchThreshold": 0.0}, CALLER
        ),
        "SearchUsersByImage": service.call(
            "SearchUsersByImage",
            {"CollectionId": "c", "Image": {"Bytes": images["person_a_2"]}, "UserMatchThreshold": 0.0},
            CALLER,
        ),
    }
    records = {r.operation: r for r in audit(service)}
    assert set(records) == set(responses)
    for operation, response in responses.items():
        found = response.get("FaceMatches", response.get("UserMatches"))
        similarities = [m["Similarity"] for m in found]
        assert len(similarities) >= 2, operation  # a best and a worst to tell apart
        assert max(similarities) > min(similarities), operation
        record = records[operation]
        assert record.access_key_id == CALLER.access_key_id and record.threshold == 0.0
        assert record.match_count == len(similarities), operation
        assert record.best_similarity == pytest.approx(max(similarities)), operation
        assert record.collection_id == (None if operation == "CompareFaces" else "c")
    by_user = records["SearchUsersByImage"]
    assert by_user.user_ids[0] == "a" and set(by_user.user_ids) == {"a", "b"}
    assert records["SearchFacesByImage"].face_ids[0] == ids["person_a_2"]  # itself


def test_compare_faces_matches_at_similarity_80_unless_told_otherwise(
    service: RekognitionService, engine: Engine, images: dict[str, bytes]
) -> None:
    """Bug: CompareFaces' default SimilarityThreshold (Rekognition's 80) lost."""
    assert DEFAULT_THRESHOLD == 80.0
    request = {
        "SourceImage": {"Bytes": images["person_a_2"]},
        "TargetImage": {"Bytes": side_by_side(engine, images["person_a_1"], images["impostor_1"])},
    }
    everyone = service.call("CompareFaces", {**request, "SimilarityThreshold": 0.0}, CALLER)["FaceMatches"]
    same, other = everyone  # best first
    assert same["Similarity"] >= 80.0 > other["Similarity"]
    response = service.call("CompareFaces", request, CALLER)
    assert response["FaceMatches"] == [same]
    assert [u["BoundingBox"] for u in response["UnmatchedFaces"]] == [other["Face"]["BoundingBox"]]
    assert sorted(r.threshold for r in audit(service)) == [0.0, 80.0]


def test_compare_faces_holds_faces_to_the_quality_filter_only_when_asked(
    service: RekognitionService, engine: Engine, images: dict[str, bytes]
) -> None:
    """Bug: CompareFaces' QualityFilter ignored, or its default (NONE) changed. A face too dark
    for AUTO is compared by default, and takes no part when AUTO is asked for."""
    decoded = engine.decode(images["person_b_1"])
    dark = encode((decoded.rgb * 0.08).astype(np.uint8))
    request = {
        "SourceImage": {"Bytes": images["person_b_2"]},
        "TargetImage": {"Bytes": side_by_side(engine, images["person_a_1"], dark)},
        "SimilarityThreshold": 0.0,
    }
    everyone = service.call("CompareFaces", request, CALLER)
    assert len(everyone["FaceMatches"]) == 2
    held = service.call("CompareFaces", {**request, "QualityFilter": "AUTO"}, CALLER)
    assert len(held["FaceMatches"]) == 1 and held["UnmatchedFaces"] == []
    assert held["FaceMatches"][0]["Similarity"] < max(m["Similarity"] for m in everyone["FaceMatches"])


def test_search_faces_finds_the_other_faces_like_the_stored_one(
    service: RekognitionService, images: dict[str, bytes]
) -> None:
    """Bugs: SearchFaces' default FaceMatchThreshold (80) lost, MaxFaces ignored, the searched face
    among its own matches, its audit record without the probe's image SHA-256 or the FaceId."""
    ids = {name: index(service, images[name]) for name in PEOPLE[:4]}
    request = {"CollectionId": "c", "FaceId": ids["person_a_1"]}
    response = service.call("SearchFaces", request, CALLER)
    assert response["SearchedFaceId"] == ids["person_a_1"]
    assert [m["Face"]["FaceId"] for m in response["FaceMatches"]] == [ids["person_a_2"]]
    everyone = service.call("SearchFaces", {**request, "FaceMatchThreshold": 0.0}, CALLER)["FaceMatches"]
    assert sorted(m["Face"]["FaceId"] for m in everyone) == sorted(i for n, i in ids.items() if n != "person_a_1")
    capped = service.call("SearchFaces", {**request, "FaceMatchThreshold": 0.0, "MaxFaces": 1}, CALLER)
    assert capped["FaceMatches"] == everyone[:1]
    record = next(r for r in audit(service) if r.operation == "SearchFaces")
    probe = hashlib.sha256(images["person_a_1"]).hexdigest()
    assert (record.probe_sha256, record.details) == (probe, {"searched_face_id": ids["person_a_1"]})


def test_max_faces_caps_the_face_matches(service: RekognitionService, images: dict[str, bytes]) -> None:
    for name in PEOPLE[:4]:
        index(service, images[name])
    request = {"CollectionId": "c", "Image": {"Bytes": images["person_a_2"]}, "FaceMatchThreshold": 0.0}
    assert len(service.call("SearchFacesByImage", request, CALLER)["FaceMatches"]) == 4
    assert len(service.call("SearchFacesByImage", {**request, "MaxFaces": 2}, CALLER)["FaceMatches"]) == 2


# Users -------------------------------------------------------------------------------


@pytest.fixture()
def three_users(service: RekognitionService, images: dict[str, bytes]) -> dict[str, str]:
    """Users a, b and i, each with one face; the ids of every indexed face."""
    ids = {name: index(service, images[name]) for name in ("person_a_1", "person_a_2", "person_b_1", "impostor_1")}
    for user, face in (("a", "person_a_1"), ("b", "person_b_1"), ("i", "impostor_1")):
        service.call("CreateUser", {"CollectionId": "c", "UserId": user}, CALLER)
        service.call("AssociateFaces", {"CollectionId": "c", "UserId": user, "FaceIds": [ids[face]]}, CALLER)
    return ids


def test_max_users_caps_the_user_matches(
    service: RekognitionService, images: dict[str, bytes], three_users: dict[str, str]
) -> None:
    """Bug: MaxUsers ignored."""
    by_face = {"CollectionId": "c", "FaceId": three_users["person_a_2"], "UserMatchThreshold": 0.0}
    by_image = {"CollectionId": "c", "Image": {"Bytes": images["person_a_2"]}, "UserMatchThreshold": 0.0}
    for operation, request in (("SearchUsers", by_face), ("SearchUsersByImage", by_image)):
        everyone = service.call(operation, request, CALLER)["UserMatches"]
        assert everyone[0]["User"]["UserId"] == "a" and len(everyone) == 3, operation
        capped = service.call(operation, {**request, "MaxUsers": 2}, CALLER)["UserMatches"]
        assert capped == everyone[:2], operation
        assert service.call(operation, {**request, "MaxUsers": 1}, CALLER)["UserMatches"] == everyone[:1]


def test_a_users_similarity_is_that_of_its_best_face(service: RekognitionService, images: dict[str, bytes]) -> None:
    """Bugs: a user scored by the mean of its faces, or by its first face, instead of its best
    (docs/accuracy.md, "Several photos per person"); faces of no user searched as users."""
    ids = {name: index(service, images[name]) for name in ("person_a_1", "person_b_1", "impostor_1")}
    both = [ids["person_a_1"], ids["person_b_1"]]
    service.call("CreateUser", {"CollectionId": "c", "UserId": "u"}, CALLER)
    associate = {"CollectionId": "c", "UserId": "u", "FaceIds": both, "UserMatchThreshold": 0.0}
    service.call("AssociateFaces", associate, CALLER)
    for probe in ("person_a_2", "person_b_2"):
        image = {"Bytes": images[probe]}
        faces = service.call(
            "SearchFacesByImage", {"CollectionId": "c", "Image": image, "FaceMatchThreshold": 0.0}, CALLER
        )["FaceMatches"]
        by_face = {m["Face"]["FaceId"]: m["Similarity"] for m in faces}
        (user,) = service.call(
            "SearchUsersByImage", {"CollectionId": "c", "Image": image, "UserMatchThreshold": 0.0}, CALLER
        )["UserMatches"]
        assert by_face[both[0]] != by_face[both[1]], probe
        assert user["User"]["UserId"] == "u" and user["Similarity"] == max(by_face[f] for f in both), probe


def test_list_users_pages_hold_every_user_once(service: RekognitionService) -> None:
    """Bug: ListUsers' NextToken off by one."""
    names = [f"user-{i}" for i in range(7)]
    for name in names:
        service.call("CreateUser", {"CollectionId": "c", "UserId": name}, CALLER)
    for size in (1, 2, 3, 7):
        seen, token, pages = [], None, 0
        while True:
            request = {"CollectionId": "c", "MaxResults": size, **({"NextToken": token} if token else {})}
            page = service.call("ListUsers", request, CALLER)
            assert len(page["Users"]) <= size
            seen += [u["UserId"] for u in page["Users"]]
            pages += 1
            token = page.get("NextToken")
            if token is None:
                break
        assert seen == names, size
        assert pages == -(-len(names) // size), size  # no empty last page


def test_list_users_answers_each_users_status(service: RekognitionService, images: dict[str, bytes]) -> None:
    """Bug: ListUsers' UserStatus dropped or misnamed."""
    face = index(service, images["person_a_1"])
    for user in ("a", "b"):
        service.call("CreateUser", {"CollectionId": "c", "UserId": user}, CALLER)
    service.call("AssociateFaces", {"CollectionId": "c", "UserId": "a", "FaceIds": [face]}, CALLER)
    assert service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"] == [
        {"UserId": "a", "UserStatus": "ACTIVE"},
        {"UserId": "b", "UserStatus": "CREATED"},
    ]


def test_search_users_by_image_names_the_faces_it_did_not_search(
    service: RekognitionService, images: dict[str, bytes]
) -> None:
    """Bug: SearchUsersByImage's UnsearchedFaces / FACE_NOT_LARGEST dropped."""
    response = service.call(
        "SearchUsersByImage", {"CollectionId": "c", "Image": {"Bytes": images["solvay_conference_1927"]}}, CALLER
    )
    unsearched = response["UnsearchedFaces"]
    assert len(unsearched) == 28 and all(u["Reasons"] == ["FACE_NOT_LARGEST"] for u in unsearched)
    searched = response["SearchedFace"]["FaceDetail"]["BoundingBox"]
    area = searched["Width"] * searched["Height"]
    assert all(
        u["FaceDetails"]["BoundingBox"]["Width"] * u["FaceDetails"]["BoundingBox"]["Height"] <= area for u in unsearched
    )


def test_search_users_by_image_holds_the_face_to_the_quality_filter_only_when_asked(
    service: RekognitionService, engine: Engine, images: dict[str, bytes]
) -> None:
    """Bugs: SearchUsersByImage's QualityFilter ignored, or its default (NONE) changed; FaceModelVersion
    misnamed; an image with no face to search failing instead of answering no match; the audit
    record without the probe's SHA-256. A face too dark for QualityFilter LOW is searched by default,
    and is an unsearched face when LOW is asked for."""
    face = index(service, images["person_b_1"])
    service.call("CreateUser", {"CollectionId": "c", "UserId": "b"}, CALLER)
    service.call("AssociateFaces", {"CollectionId": "c", "UserId": "b", "FaceIds": [face]}, CALLER)
    dark = encode((engine.decode(images["person_b_2"]).rgb * 0.08).astype(np.uint8))
    request = {"CollectionId": "c", "Image": {"Bytes": dark}, "UserMatchThreshold": 0.0}
    version = service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)["FaceModelVersion"]
    searched = service.call("SearchUsersByImage", request, CALLER)
    assert set(searched) == {"FaceModelVersion", "SearchedFace", "UnsearchedFaces", "UserMatches"}
    assert (searched["FaceModelVersion"], searched["UnsearchedFaces"]) == (version, [])
    assert [m["User"]["UserId"] for m in searched["UserMatches"]] == ["b"]
    held = service.call("SearchUsersByImage", {**request, "QualityFilter": "LOW"}, CALLER)
    assert set(held) == {"FaceModelVersion", "UnsearchedFaces", "UserMatches"}  # no SearchedFace
    assert (held["FaceModelVersion"], held["UserMatches"]) == (version, [])
    (unsearched,) = held["UnsearchedFaces"]
    assert unsearched == {"FaceDetails": searched["SearchedFace"]["FaceDetail"], "Reasons": ["LOW_BRIGHTNESS"]}
    probe = hashlib.sha256(dark).hexdigest()
    records = [r for r in audit(service) if r.operation == "SearchUsersByImage"]
    assert [(r.probe_sha256, r.threshold, r.user_ids) for r in records] == [(probe, 0.0, ["b"]), (probe, 0.0, [])]


def test_a_repeated_associate_faces_answers_like_the_first(
    service: RekognitionService, images: dict[str, bytes]
) -> None:
    """Bug: AssociateFaces replaying with its ClientRequestToken and returning nothing."""
    faces = [index(service, images[name]) for name in ("person_a_1", "person_a_2")]
    service.call("CreateUser", {"CollectionId": "c", "UserId": "a"}, CALLER)
    request = {"CollectionId": "c", "UserId": "a", "FaceIds": faces, "ClientRequestToken": "retry-1"}
    first = service.call("AssociateFaces", request, CALLER)
    assert sorted(f["FaceId"] for f in first["AssociatedFaces"]) == sorted(faces)
    again = service.call("AssociateFaces", request, CALLER)
    assert sorted(f["FaceId"] for f in again["AssociatedFaces"]) == sorted(faces)
    assert again["UserStatus"] == first["UserStatus"] == "ACTIVE" and again["UnsuccessfulFaceAssociations"] == []


OTHER_REGION_ARN = "arn:aws:rekognition:eu-west-1:000000000000:collection/c"


@pytest.mark.parametrize(
    ("operation", "request_", "error", "message"),
    [
        (
            "ListTagsForResource",
            {"ResourceArn": "arn:aws:s3:::c"},
            InvalidParameterException,
            "arn:aws:s3:::c is not a collection ARN (arn:aws:rekognition:<region>:<account>:collection/<id>).",
        ),
        (
            "TagResource",
            {"ResourceArn": OTHER_REGION_ARN, "Tags": {"k": "v"}},
            ResourceNotFoundException,
            f"No resource has the ARN {OTHER_REGION_ARN}; "
            "did you mean arn:aws:rekognition:us-east-1:000000000000:collection/c?",
        ),
        (
            "ListUsers",
            {"CollectionId": "c", "NextToken": "no token!"},
            InvalidPaginationTokenException,
            "NextToken 'no token!' was not issued by this server for this list.",
        ),
    ],
)
def test_a_wrong_arn_or_next_token_is_refused_saying_what_is_wrong(
    service: RekognitionService, operation: str, request_: dict[str, Any], error: type[VisageError], message: str
) -> None:
    """Bug: the refusal's message lost."""
    with pytest.raises(error) as caught:
        service.call(operation, request_, CALLER)
    assert caught.value.message == message


# Limits ------------------------------------------------------------------------------


def test_a_collection_carries_at_most_200_tags(service: RekognitionService) -> None:
    """Bug: TagResource's limit of 200 tags removed."""
    arn = service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)["CollectionARN"]
    assert MAX_TAGS == 200
    service.call("TagResource", {"ResourceArn": arn, "Tags": {f"k{i}": "v" for i in range(150)}}, CALLER)
    with pytest.raises(ServiceQuotaExceededException, match="at most 200 tags; this would make 201"):
        service.call("TagResource", {"ResourceArn": arn, "Tags": {f"n{i}": "v" for i in range(51)}}, CALLER)
    assert len(service.call("ListTagsForResource", {"ResourceArn": arn}, CALLER)["Tags"]) == 150
    # Existing keys are replaced, not added: 150 old (10 of them again) and 50 new make 200.
    more = {**{f"k{i}": "w" for i in range(10)}, **{f"n{i}": "v" for i in range(50)}}
    service.call("TagResource", {"ResourceArn": arn, "Tags": more}, CALLER)
    assert len(service.call("ListTagsForResource", {"ResourceArn": arn}, CALLER)["Tags"]) == 200


def test_a_collection_holds_at_most_its_quota_of_faces(
    engine: Engine, tmp_path: Path, images: dict[str, bytes]
) -> None:
    """Bug: the per-collection face quota removed."""
    service = make_service(engine, tmp_path, max_faces_per_collection=3)
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    for name in PEOPLE[:2]:
        index(service, images[name])
    group = {"CollectionId": "c", "Image": {"Bytes": images["solvay_conference_1927"]}, "QualityFilter": "NONE"}
    with pytest.raises(ServiceQuotaExceededException, match="holds 2 faces; indexing 2 more would pass its limit of 3"):
        service.call("IndexFaces", {**group, "MaxFaces": 2}, CALLER)
    index(service, images[PEOPLE[2]])  # the third face still fits
    with pytest.raises(ServiceQuotaExceededException):
        index(service, images[PEOPLE[3]])
    assert service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)["FaceCount"] == 3


# Quality filter ----------------------------------------------------------------------


def test_index_faces_holds_faces_to_quality_filter_auto_by_default(
    service: RekognitionService, engine: Engine, images: dict[str, bytes]
) -> None:
    """Bug: IndexFaces' QualityFilter default changed from AUTO to NONE."""
    decoded = engine.decode(images["person_b_1"])
    dark = encode((decoded.rgb * 0.08).astype(np.uint8))  # still a face to YuNet, too dark for AUTO
    (face,) = engine.detect_faces(dark)
    decoded_dark = engine.decode(dark)
    reasons = quality_filter_reasons(face, "AUTO", decoded_dark.width, decoded_dark.height)
    assert "LOW_BRIGHTNESS" in reasons
    refused = service.call("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": dark}}, CALLER)
    assert refused["FaceRecords"] == []
    assert [u["Reasons"] for u in refused["UnindexedFaces"]] == [reasons]
    kept = service.call("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": dark}, "QualityFilter": "NONE"}, CALLER)
    assert len(kept["FaceRecords"]) == 1 and kept["UnindexedFaces"] == []


def test_a_turned_head_fails_the_pose_bar(service: RekognitionService, engine: Engine, lfw: Path) -> None:
    """Bug: the pose check of the quality filter removed. Peter Mackay's first LFW photo is a
    clear, sharp face turned about 47 degrees: HIGH (at most 40) refuses it for its pose alone."""
    image = (lfw / "lfw-deepfunneled" / "Peter_Mackay" / "Peter_Mackay_0001.jpg").read_bytes()
    (face,) = engine.detect_faces(image)
    assert 40 < abs(face.pose.yaw) < 60, face.pose
    response = service.call(
        "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": image}, "QualityFilter": "HIGH"}, CALLER
    )
    assert response["FaceRecords"] == [] and response["UnindexedFaces"][0]["Reasons"] == ["EXTREME_POSE"]
    assert len(service.call("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": image}}, CALLER)["FaceRecords"]) == 1


# Face model versions -----------------------------------------------------------------


def test_a_collection_of_another_model_version_is_refused(
    service: RekognitionService, images: dict[str, bytes]
) -> None:
    """A collection whose vectors come from another version of its face model cannot take or
    be searched with this server's vectors."""
    service.store.create_collection(
        Collection(
            "old", "arn:aws:rekognition:us-east-1:000000000000:collection/old", "sface", "sface-0", datetime.now(UTC)
        )
    )
    image = {"Bytes": images["person_a_1"]}
    for operation, request in (
        ("IndexFaces", {"CollectionId": "old", "Image": image}),
        ("SearchFacesByImage", {"CollectionId": "old", "Image": image}),
        ("SearchUsersByImage", {"CollectionId": "old", "Image": image}),
    ):
        with pytest.raises(InvalidParameterException, match=r"holds sface-0 vectors.*model is sface-1"):
            service.call(operation, request, CALLER)
    assert service.call("DescribeCollection", {"CollectionId": "old"}, CALLER)["FaceCount"] == 0


def test_a_collection_made_with_sface_crops_keeps_it_on_a_server_whose_default_is_sface(
    engine: Engine, tmp_path: Path, images: dict[str, bytes]
) -> None:
    """A server started with --face-model sface-crops makes sface-crops collections; a server on the
    default model later indexes into and searches them with sface-crops, and the scores are
    sface-crops' (not sface's vectors under sface-crops' map)."""
    crops = Settings(data_dir=tmp_path, face_model="sface-crops")
    made = RekognitionService(Engine(crops), SQLiteStore(crops.sqlite_path), crops)
    created = made.call("CreateCollection", {"CollectionId": "turned"}, CALLER)
    assert created["FaceModelVersion"] == "sface-crops-1"
    made.call("IndexFaces", {"CollectionId": "turned", "Image": {"Bytes": images["person_a_1"]}}, CALLER)

    later = make_service(engine, tmp_path)  # the default face model, sface, on the same store
    assert engine.settings.face_model == "sface"
    later.call("IndexFaces", {"CollectionId": "turned", "Image": {"Bytes": images["person_b_1"]}}, CALLER)
    found = {}
    for name in ("person_a_2", "person_b_2", "impostor_1"):
        answer = later.call("SearchFacesByImage", {"CollectionId": "turned", "Image": {"Bytes": images[name]}}, CALLER)
        assert answer["FaceModelVersion"] == "sface-crops-1"
        found[name] = [m["Similarity"] for m in answer["FaceMatches"]]
    assert len(found["person_a_2"]) == 1 and len(found["person_b_2"]) == 1 and found["impostor_1"] == []
    # The Similarity is sface-crops' own: the cosine of the two photos' sface-crops vectors, under its map.
    (a1,) = engine.embed(images["person_a_1"], model="sface-crops")
    (a2,) = engine.embed(images["person_a_2"], model="sface-crops")
    assert found["person_a_2"][0] == pytest.approx(engine.similarity(a1.embedding, a2.embedding), abs=1e-3)
