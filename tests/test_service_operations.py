"""The service operations tests/test_service.py leaves out, each pinned to Rekognition's contract.

Paging of the lists, the reasons of DeleteFaces and DisassociateFaces, DeleteUser,
UntagResource, DetectFaces' attributes, DescribeCollection, DeleteCollection, the Image
member, and Visage's own methods for the console: keys, the audit log, thumbnails, and the
permission checks of each. The real service over the real engine and a real SQLite store in
the test's folder, called in-process, so that mutation testing (``make mutate``) counts them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visage.engine import Engine
from visage.engine.registry import face_model_entry
from visage.errors import (
    UNKNOWN_ACCESS_KEY,
    AccessDeniedException,
    IdempotentParameterMismatchException,
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidPaginationTokenException,
    InvalidParameterException,
    InvalidS3ObjectException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    UnrecognizedClientException,
)
from visage.faces import BoundingBox, Face, FaceDetail, Pose, Quality
from visage.policy import Policy
from visage.service import MAX_FACES_PER_USER, Caller, RekognitionService, _is_base64_of_an_image, _match_stored
from visage.store.base import Collection, RequestToken, StoredFace

from .test_permissions import policy
from .test_service import CALLER, index, make_service

MISSING = "11111111-1111-4111-8111-111111111111"  # a FaceId no collection holds
ARN = "arn:aws:rekognition:us-east-1:000000000000:collection/"
DEFAULT_ATTRIBUTES = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}


@pytest.fixture()
def service(engine: Engine, tmp_path: Path) -> RekognitionService:
    """The service, with an empty collection c."""
    made = make_service(engine, tmp_path)
    made.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    return made


def portrait(portraits: Path, name: str) -> bytes:
    return (portraits / f"{name}.jpg").read_bytes()


def index_people(service: RekognitionService, portraits: Path, *names: str) -> dict[str, str]:
    """Each portrait indexed into c once, its name as ExternalImageId; the FaceIds by name."""
    return {name: index(service, portrait(portraits, name), ExternalImageId=name) for name in names}


def make_user(service: RekognitionService, user_id: str, *face_ids: str) -> None:
    service.call("CreateUser", {"CollectionId": "c", "UserId": user_id}, CALLER)
    if face_ids:
        service.call("AssociateFaces", {"CollectionId": "c", "UserId": user_id, "FaceIds": list(face_ids)}, CALLER)


def walk(service: RekognitionService, operation: str, request: dict[str, Any], size: int | None) -> list[Any]:
    """Every page of a list operation, ``size`` per page (None: no MaxResults), following NextToken to the end."""
    pages: list[Any] = []
    token = None
    while len(pages) < 50:
        paged = {**request, **({"MaxResults": size} if size else {}), **({"NextToken": token} if token else {})}
        pages.append(service.call(operation, paged, CALLER))
        token = pages[-1].get("NextToken")
        if token is None:
            return pages
    raise AssertionError(f"{operation} never reached its last page")


def face_ids(response: dict[str, Any]) -> list[str]:
    return [face["FaceId"] for face in response["Faces"]]


def refusals(service: RekognitionService) -> list[Any]:
    return service.store.audit_records(outcome="refused")


# Collections -------------------------------------------------------------------------


def test_list_collections_pages_continue_after_the_last_id_and_end_without_a_token(
    service: RekognitionService,
) -> None:
    for collection_id in ("d", "a", "b"):
        service.call("CreateCollection", {"CollectionId": collection_id}, CALLER)
    version = service.engine.face_model().version
    for size, expected in (
        (1, [["a"], ["b"], ["c"], ["d"]]),
        (2, [["a", "b"], ["c", "d"]]),
        (3, [["a", "b", "c"], ["d"]]),
        (4, [["a", "b", "c", "d"]]),
        (None, [["a", "b", "c", "d"]]),
    ):
        pages = walk(service, "ListCollections", {}, size)
        assert [page["CollectionIds"] for page in pages] == expected, size
        assert [page.get("NextToken") for page in pages] == [ids[-1] for ids in expected[:-1]] + [None], size
        assert [page["FaceModelVersions"] for page in pages] == [[version] * len(ids) for ids in expected], size


def test_list_collections_gives_1000_per_page_without_max_results(service: RekognitionService) -> None:
    """docs/api.md: default page sizes are 1000."""
    for i in range(1000):
        service.call("CreateCollection", {"CollectionId": f"b{i:03}"}, CALLER)
    first, last = walk(service, "ListCollections", {}, None)
    assert first["CollectionIds"] == [f"b{i:03}" for i in range(1000)] and first["NextToken"] == "b999"
    assert last == {"CollectionIds": ["c"], "FaceModelVersions": [service.engine.face_model().version]}


def test_a_next_token_that_is_not_an_id_of_the_list_is_refused(service: RekognitionService) -> None:
    for operation, request in (
        ("ListCollections", {"NextToken": "c/../d"}),
        ("ListFaces", {"CollectionId": "c", "NextToken": "c"}),  # a collection id, not a FaceId
        ("ListUsers", {"CollectionId": "c", "NextToken": "a user"}),
    ):
        with pytest.raises(InvalidPaginationTokenException, match="was not issued by this server"):
            service.call(operation, request, CALLER)
    with pytest.raises(InvalidPaginationTokenException):
        service.face_page("c", CALLER, after="not-a-face-id")


def test_describe_collection_counts_faces_and_users(service: RekognitionService, portraits: Path) -> None:
    before = datetime.now(UTC)
    created = service.call("CreateCollection", {"CollectionId": "empty"}, CALLER)
    after = datetime.now(UTC)
    empty = service.call("DescribeCollection", {"CollectionId": "empty"}, CALLER)
    assert empty == {
        "FaceCount": 0,
        "UserCount": 0,
        "FaceModelVersion": created["FaceModelVersion"],
        "CollectionARN": ARN + "empty",
        "CreationTimestamp": empty["CreationTimestamp"],
    }
    assert before <= empty["CreationTimestamp"] <= after

    ids = index_people(service, portraits, "person_a_1", "person_b_1")
    make_user(service, "a", ids["person_a_1"])
    make_user(service, "nobody")  # a user without faces counts too
    described = service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)
    assert (described["FaceCount"], described["UserCount"], described["CollectionARN"]) == (2, 2, ARN + "c")
    with pytest.raises(ResourceNotFoundException):
        service.call("DescribeCollection", {"CollectionId": "absent"}, CALLER)


def test_delete_collection_takes_its_faces_with_it(service: RekognitionService, portraits: Path) -> None:
    index_people(service, portraits, "person_a_1")
    assert service.call("DeleteCollection", {"CollectionId": "c"}, CALLER) == {"StatusCode": 200}
    assert service.call("ListCollections", {}, CALLER)["CollectionIds"] == []
    with pytest.raises(ResourceNotFoundException):
        service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)
    with pytest.raises(ResourceNotFoundException):
        service.call("DeleteCollection", {"CollectionId": "c"}, CALLER)
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    assert service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)["FaceCount"] == 0


def test_a_collections_thumbnail_setting_is_its_own_until_cleared(service: RekognitionService) -> None:
    service.call("TagResource", {"ResourceArn": ARN + "c", "Tags": {"team": "door"}}, CALLER)
    stored = service.collection("c", CALLER)
    assert (stored.collection_id, stored.arn, stored.tags, stored.keep_face_thumbnails) == (
        "c",
        ARN + "c",
        {"team": "door"},
        None,
    )
    assert service.keeps_face_thumbnails(stored) is False  # the server's setting
    for keep in (True, False, None):
        service.set_keep_face_thumbnails("c", keep, CALLER)
        assert service.collection("c", CALLER).keep_face_thumbnails is keep
    server_keeps = RekognitionService(
        service.engine, service.store, replace(service.settings, keep_face_thumbnails=True)
    )
    assert server_keeps.keeps_face_thumbnails(service.collection("c", CALLER)) is True
    service.set_keep_face_thumbnails("c", False, CALLER)
    assert server_keeps.keeps_face_thumbnails(service.collection("c", CALLER)) is False
    with pytest.raises(ResourceNotFoundException):
        service.collection("absent", CALLER)


# Faces -------------------------------------------------------------------------------


def test_list_faces_pages_continue_after_the_last_face_id(service: RekognitionService, portraits: Path) -> None:
    ids = index_people(service, portraits, "person_a_1", "person_a_2", "person_b_1", "person_b_2")
    everyone = sorted(ids.values())
    version = service.engine.face_model().version
    for size in (1, 2, 3, 4, None):
        pages = walk(service, "ListFaces", {"CollectionId": "c"}, size)
        per_page = size or len(everyone)
        expected = [everyone[i : i + per_page] for i in range(0, len(everyone), per_page)]
        assert [face_ids(page) for page in pages] == expected, size
        assert [page.get("NextToken") for page in pages] == [p[-1] for p in expected[:-1]] + [None], size
        assert all(page["FaceModelVersion"] == version for page in pages), size


def test_list_faces_gives_1000_per_page_without_max_results(service: RekognitionService, portraits: Path) -> None:
    """docs/api.md: default page sizes are 1000. The real face, and 1000 copies of it stored as another
    image's faces would be."""
    (face,) = service.store.get_faces("c", list(index_people(service, portraits, "person_a_1").values()))
    copies = [replace(face, face_id=str(uuid.uuid4()), image_id=str(uuid.uuid4())) for _ in range(1000)]
    service.store.add_faces("c", copies)
    everyone = sorted([face.face_id] + [copy.face_id for copy in copies])
    first, last = walk(service, "ListFaces", {"CollectionId": "c"}, None)
    assert face_ids(first) == everyone[:1000] and first["NextToken"] == everyone[999]
    assert face_ids(last) == everyone[1000:] and "NextToken" not in last


def test_list_faces_filters_by_user_and_by_face_ids(service: RekognitionService, portraits: Path) -> None:
    indexed = service.call(
        "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": portrait(portraits, "person_a_1")}}, CALLER
    )
    ids = {"person_a_1": indexed["FaceRecords"][0]["Face"]["FaceId"]}
    ids |= index_people(service, portraits, "person_a_2", "person_b_1")
    make_user(service, "a", ids["person_a_1"], ids["person_a_2"])
    users_faces = sorted([ids["person_a_1"], ids["person_a_2"]])

    by_user = service.call("ListFaces", {"CollectionId": "c", "UserId": "a"}, CALLER)
    assert face_ids(by_user) == users_faces and "NextToken" not in by_user
    listed = next(f for f in by_user["Faces"] if f["FaceId"] == ids["person_a_1"])
    assert listed == {**indexed["FaceRecords"][0]["Face"], "UserId": "a"}
    paged = walk(service, "ListFaces", {"CollectionId": "c", "UserId": "a"}, 1)
    assert [face_ids(page) for page in paged] == [[users_faces[0]], [users_faces[1]]]

    chosen = [ids["person_b_1"], MISSING, ids["person_a_2"]]
    by_id = service.call("ListFaces", {"CollectionId": "c", "FaceIds": chosen}, CALLER)
    assert face_ids(by_id) == sorted([ids["person_b_1"], ids["person_a_2"]])
    assert {f["FaceId"]: f.get("UserId") for f in by_id["Faces"]} == {ids["person_b_1"]: None, ids["person_a_2"]: "a"}
    both = service.call("ListFaces", {"CollectionId": "c", "FaceIds": chosen, "UserId": "a"}, CALLER)
    assert face_ids(both) == [ids["person_a_2"]]
    with pytest.raises(ResourceNotFoundException):
        service.call("ListFaces", {"CollectionId": "absent"}, CALLER)


def test_delete_faces_deletes_the_free_faces_and_says_why_not_the_others(
    service: RekognitionService, portraits: Path
) -> None:
    ids = index_people(service, portraits, "person_a_1", "person_a_2", "person_b_1")
    make_user(service, "a", ids["person_a_1"])
    asked = [ids["person_b_1"], MISSING, ids["person_a_1"], ids["person_b_1"], ids["person_a_2"], MISSING]
    response = service.call("DeleteFaces", {"CollectionId": "c", "FaceIds": asked}, CALLER)
    assert response == {
        "DeletedFaces": [ids["person_b_1"], ids["person_a_2"]],  # in the request's order, each once
        "UnsuccessfulFaceDeletions": [
            {"FaceId": MISSING, "Reasons": ["FACE_NOT_FOUND"]},
            {"FaceId": ids["person_a_1"], "UserId": "a", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]},
        ],
    }
    assert face_ids(service.call("ListFaces", {"CollectionId": "c"}, CALLER)) == [ids["person_a_1"]]
    assert service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)["FaceCount"] == 1
    again = service.call("DeleteFaces", {"CollectionId": "c", "FaceIds": [ids["person_b_1"]]}, CALLER)
    assert again == {
        "DeletedFaces": [],
        "UnsuccessfulFaceDeletions": [{"FaceId": ids["person_b_1"], "Reasons": ["FACE_NOT_FOUND"]}],
    }
    with pytest.raises(ResourceNotFoundException):
        service.call("DeleteFaces", {"CollectionId": "absent", "FaceIds": [MISSING]}, CALLER)


def test_a_face_page_continues_after_its_last_face_and_filters(service: RekognitionService, portraits: Path) -> None:
    service.set_keep_face_thumbnails("c", True, CALLER)
    ids = index_people(service, portraits, "person_a_1", "person_a_2", "person_b_1")
    make_user(service, "a", ids["person_a_1"], ids["person_a_2"])
    everyone = sorted(ids.values())

    first = service.face_page("c", CALLER, limit=2)
    assert [f.face_id for f in first.faces] == everyone[:2] and first.next_after == everyone[1]
    assert first.with_thumbnail == frozenset(everyone[:2])  # this page's faces only
    last = service.face_page("c", CALLER, after=first.next_after, limit=2)
    assert [f.face_id for f in last.faces] == everyone[2:] and last.next_after is None
    exact = service.face_page("c", CALLER, limit=3)
    assert [f.face_id for f in exact.faces] == everyone and exact.next_after is None
    whole = service.face_page("c", CALLER)
    assert [f.face_id for f in whole.faces] == everyone and whole.next_after is None

    assert [f.face_id for f in service.face_page("c", CALLER, user_id="a").faces] == sorted(
        [ids["person_a_1"], ids["person_a_2"]]
    )
    assert [f.face_id for f in service.face_page("c", CALLER, external_image_id="person_b_1").faces] == [
        ids["person_b_1"]
    ]


def test_face_thumbnails_are_those_of_the_faces_asked_for(service: RekognitionService, portraits: Path) -> None:
    before = index_people(service, portraits, "person_b_1")["person_b_1"]
    service.set_keep_face_thumbnails("c", True, CALLER)
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    kept = service.face_thumbnails("c", [ids["person_a_1"], before, MISSING], CALLER)
    assert set(kept) == {ids["person_a_1"]}
    assert kept[ids["person_a_1"]].startswith(b"\xff\xd8\xff")  # a JPEG
    assert service.face_thumbnails("c", [], CALLER) == {}


# Users -------------------------------------------------------------------------------


@pytest.fixture()
def two_users(service: RekognitionService, portraits: Path) -> dict[str, str]:
    """User a with both of person A's faces, user b with person B's first; B's second face free."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2", "person_b_1", "person_b_2")
    make_user(service, "a", ids["person_a_1"], ids["person_a_2"])
    make_user(service, "b", ids["person_b_1"])
    return ids


def test_disassociate_faces_frees_the_users_faces_and_says_why_not_the_others(
    service: RekognitionService, two_users: dict[str, str]
) -> None:
    ids = two_users
    asked = [ids["person_a_1"], ids["person_b_1"], ids["person_b_2"], MISSING, ids["person_a_1"]]
    response = service.call("DisassociateFaces", {"CollectionId": "c", "UserId": "a", "FaceIds": asked}, CALLER)
    # A face that is no one's counts as disassociated; the user keeps person_a_2, so stays ACTIVE.
    assert sorted(f["FaceId"] for f in response["DisassociatedFaces"]) == sorted([ids["person_a_1"], ids["person_b_2"]])
    assert response["UnsuccessfulFaceDisassociations"] == [
        {"FaceId": ids["person_b_1"], "UserId": "b", "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]},
        {"FaceId": MISSING, "UserId": "a", "Reasons": ["FACE_NOT_FOUND"]},
    ]
    assert response["UserStatus"] == "ACTIVE"
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "a"}, CALLER)) == [ids["person_a_2"]]
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "b"}, CALLER)) == [ids["person_b_1"]]
    with pytest.raises(ResourceNotFoundException):
        service.call("DisassociateFaces", {"CollectionId": "c", "UserId": "nobody", "FaceIds": asked}, CALLER)


def test_a_user_whose_last_face_is_disassociated_is_created_again(service: RekognitionService, portraits: Path) -> None:
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    make_user(service, "a", *ids.values())
    request = {"CollectionId": "c", "UserId": "a"}
    first = service.call("DisassociateFaces", {**request, "FaceIds": [ids["person_a_1"]]}, CALLER)
    assert (first["DisassociatedFaces"], first["UserStatus"]) == ([{"FaceId": ids["person_a_1"]}], "ACTIVE")
    last = service.call("DisassociateFaces", {**request, "FaceIds": [ids["person_a_2"]]}, CALLER)
    assert (last["DisassociatedFaces"], last["UserStatus"]) == ([{"FaceId": ids["person_a_2"]}], "CREATED")
    assert service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"] == [
        {"UserId": "a", "UserStatus": "CREATED"}
    ]


def test_a_repeated_disassociate_faces_answers_like_the_first(service: RekognitionService, portraits: Path) -> None:
    """Bug: DisassociateFaces replaying with its ClientRequestToken and returning no face."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    make_user(service, "a", *ids.values())
    request = {"CollectionId": "c", "UserId": "a", "FaceIds": [ids["person_a_1"]], "ClientRequestToken": "retry-1"}
    first = service.call("DisassociateFaces", request, CALLER)
    expected = {"DisassociatedFaces": [{"FaceId": ids["person_a_1"]}], "UnsuccessfulFaceDisassociations": []}
    assert first == {**expected, "UserStatus": "ACTIVE"}
    assert service.call("DisassociateFaces", request, CALLER) == first
    with pytest.raises(IdempotentParameterMismatchException, match="retry-1"):
        service.call("DisassociateFaces", {**request, "FaceIds": [ids["person_a_2"]]}, CALLER)
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "a"}, CALLER)) == [ids["person_a_2"]]


def test_delete_user_releases_its_faces(service: RekognitionService, portraits: Path) -> None:
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    make_user(service, "a", *ids.values())
    make_user(service, "empty")
    request = {"CollectionId": "c", "UserId": "a", "ClientRequestToken": "delete-a"}
    assert service.call("DeleteUser", request, CALLER) == {}
    assert service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"] == [
        {"UserId": "empty", "UserStatus": "CREATED"}
    ]
    described = service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)
    assert (described["FaceCount"], described["UserCount"]) == (2, 1)
    faces = service.call("ListFaces", {"CollectionId": "c"}, CALLER)["Faces"]
    assert sorted(f["FaceId"] for f in faces) == sorted(ids.values()) and all("UserId" not in f for f in faces)

    assert service.call("DeleteUser", request, CALLER) == {}  # a retry: already done
    with pytest.raises(IdempotentParameterMismatchException):
        service.call("DeleteUser", {**request, "UserId": "empty"}, CALLER)
    with pytest.raises(ResourceNotFoundException):
        service.call("DeleteUser", {"CollectionId": "c", "UserId": "a"}, CALLER)
    assert [u["UserId"] for u in service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"]] == ["empty"]


def test_associate_faces_says_why_of_each_face_it_did_not_associate(
    service: RekognitionService, portraits: Path
) -> None:
    """Each face asked for (once, in the request's order) is associated or named with its reason:
    FACE_NOT_FOUND, ASSOCIATED_TO_A_DIFFERENT_USER, or LOW_MATCH_CONFIDENCE with the face's best
    Similarity to the user's faces (UserMatchThreshold defaults to 75). A face the user already
    has counts as associated."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2", "person_b_1", "impostor_1")
    make_user(service, "a", ids["person_a_1"])
    make_user(service, "b", ids["person_b_1"])
    search = {"CollectionId": "c", "FaceId": ids["person_a_1"], "FaceMatchThreshold": 0.0}
    similarity = {
        m["Face"]["FaceId"]: m["Similarity"] for m in service.call("SearchFaces", search, CALLER)["FaceMatches"]
    }
    assert similarity[ids["impostor_1"]] < 75 <= similarity[ids["person_a_2"]]
    asked = [ids["person_a_1"], ids["impostor_1"], ids["person_a_2"], ids["person_b_1"], MISSING, ids["person_a_2"]]
    response = service.call("AssociateFaces", {"CollectionId": "c", "UserId": "a", "FaceIds": asked}, CALLER)
    assert set(response) == {"AssociatedFaces", "UnsuccessfulFaceAssociations", "UserStatus"}
    assert response["AssociatedFaces"] == [{"FaceId": ids["person_a_1"]}, {"FaceId": ids["person_a_2"]}]
    assert response["UnsuccessfulFaceAssociations"] == [
        {
            "FaceId": ids["impostor_1"],
            "Confidence": pytest.approx(similarity[ids["impostor_1"]]),
            "Reasons": ["LOW_MATCH_CONFIDENCE"],
        },
        {"FaceId": ids["person_b_1"], "UserId": "b", "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]},
        {"FaceId": MISSING, "Reasons": ["FACE_NOT_FOUND"]},
    ]
    assert response["UserStatus"] == "ACTIVE"
    users_faces = sorted([ids["person_a_1"], ids["person_a_2"]])
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "a"}, CALLER)) == users_faces
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "b"}, CALLER)) == [ids["person_b_1"]]


def test_user_match_threshold_is_the_least_similarity_a_face_is_associated_at(
    service: RekognitionService, portraits: Path
) -> None:
    """A face of Similarity exactly UserMatchThreshold to the user's best face is associated; one a hair below is not."""
    ids = index_people(service, portraits, "person_a_1", "impostor_1")
    make_user(service, "a", ids["person_a_1"])
    request = {"CollectionId": "c", "UserId": "a", "FaceIds": [ids["impostor_1"]]}
    refused = service.call("AssociateFaces", request, CALLER)  # at the default threshold, 75
    (unsuccessful,) = refused["UnsuccessfulFaceAssociations"]
    similarity = unsuccessful["Confidence"]
    assert similarity < 75 and refused["AssociatedFaces"] == []
    above = service.call("AssociateFaces", {**request, "UserMatchThreshold": np.nextafter(similarity, 100)}, CALLER)
    assert above["UnsuccessfulFaceAssociations"] == [unsuccessful] and above["AssociatedFaces"] == []
    at = service.call("AssociateFaces", {**request, "UserMatchThreshold": similarity}, CALLER)
    assert (at["AssociatedFaces"], at["UnsuccessfulFaceAssociations"]) == ([{"FaceId": ids["impostor_1"]}], [])
    users_faces = sorted(ids.values())
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "a"}, CALLER)) == users_faces


def test_a_user_given_no_face_stays_created(service: RekognitionService, portraits: Path) -> None:
    """AssociateFaces that associates nothing answers the user's status as it is; of a user that does not exist, it fails."""
    ids = index_people(service, portraits, "person_a_1", "person_b_1")
    make_user(service, "a", ids["person_a_1"])
    make_user(service, "empty")
    request = {"CollectionId": "c", "UserId": "empty", "FaceIds": [MISSING, ids["person_a_1"]]}
    assert service.call("AssociateFaces", request, CALLER) == {
        "AssociatedFaces": [],
        "UnsuccessfulFaceAssociations": [
            {"FaceId": MISSING, "Reasons": ["FACE_NOT_FOUND"]},
            {"FaceId": ids["person_a_1"], "UserId": "a", "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]},
        ],
        "UserStatus": "CREATED",
    }
    assert service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"] == [
        {"UserId": "a", "UserStatus": "ACTIVE"},
        {"UserId": "empty", "UserStatus": "CREATED"},
    ]
    with pytest.raises(ResourceNotFoundException) as caught:
        service.call("AssociateFaces", {**request, "UserId": "nobody"}, CALLER)
    assert caught.value.message == (
        "The user nobody does not exist in collection c; create it with CreateUser or check the UserId."
    )


def test_a_user_holds_at_most_100_faces(service: RekognitionService, portraits: Path) -> None:
    """Rekognition's quota of 100 faces per user: the 100th face is associated, the 101st refused
    with ServiceQuotaExceededException. The faces are copies of one real face, as another image's."""
    (face,) = service.store.get_faces("c", list(index_people(service, portraits, "person_a_1").values()))
    copies = [replace(face, face_id=str(uuid.uuid4()), image_id=str(uuid.uuid4())) for _ in range(101)]
    service.store.add_faces("c", copies)
    make_user(service, "a", face.face_id)
    request = {"CollectionId": "c", "UserId": "a"}
    hundred = service.call("AssociateFaces", {**request, "FaceIds": [c.face_id for c in copies[:99]]}, CALLER)
    assert len(hundred["AssociatedFaces"]) == 99 and hundred["UnsuccessfulFaceAssociations"] == []
    with pytest.raises(ServiceQuotaExceededException) as caught:
        service.call("AssociateFaces", {**request, "FaceIds": [copies[99].face_id, copies[100].face_id]}, CALLER)
    assert caught.value.message == "User a would hold 102 faces; the limit is 100 faces per user."
    with pytest.raises(ServiceQuotaExceededException, match=r"^User a would hold 101 faces; the limit is 100"):
        service.call("AssociateFaces", {**request, "FaceIds": [copies[100].face_id]}, CALLER)
    (page,) = walk(service, "ListFaces", request, None)
    assert len(page["Faces"]) == 100 and copies[100].face_id not in face_ids(page)


def test_a_repeated_create_user_answers_like_the_first(service: RekognitionService) -> None:
    """With its ClientRequestToken, a CreateUser that already ran is not a conflict: it answers {} again."""
    request = {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "create-u"}
    assert service.call("CreateUser", request, CALLER) == {}
    assert service.call("CreateUser", request, CALLER) == {}
    assert service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"] == [
        {"UserId": "u", "UserStatus": "CREATED"}
    ]


def test_a_token_of_one_user_operation_is_refused_for_another_naming_the_first(
    service: RekognitionService, portraits: Path
) -> None:
    """A ClientRequestToken belongs to the operation that spent it, even when the other operation's
    request has the very same members; the refusal names that operation."""
    face = index_people(service, portraits, "person_a_1")["person_a_1"]
    user = {"CollectionId": "c", "UserId": "u"}
    faces = {**user, "FaceIds": [face]}
    for first, then, request in (
        ("CreateUser", "DeleteUser", user),
        ("AssociateFaces", "DisassociateFaces", faces),
        ("DisassociateFaces", "AssociateFaces", faces),
        ("DeleteUser", "CreateUser", user),
    ):
        token = {"ClientRequestToken": f"{first}-1"}
        service.call(first, {**request, **token}, CALLER)
        with pytest.raises(IdempotentParameterMismatchException) as caught:
            service.call(then, {**request, **token}, CALLER)
        assert caught.value.message == (
            f"ClientRequestToken {first}-1 was already used with a different {first} request; "
            "use a new token for a new request."
        )
    assert service.call("ListUsers", {"CollectionId": "c"}, CALLER)["Users"] == []  # DeleteUser's was the last word
    assert "UserId" not in service.call("ListFaces", {"CollectionId": "c"}, CALLER)["Faces"][0]


def test_a_token_is_spent_by_a_request_that_changes_nothing(service: RekognitionService, portraits: Path) -> None:
    """Associating a face the user has, or disassociating a free face, writes nothing, yet the
    ClientRequestToken is the request's from then on: with other faces it is refused."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    make_user(service, "a", ids["person_a_1"])
    user = {"CollectionId": "c", "UserId": "a"}
    for operation, idle, other in (
        ("AssociateFaces", ids["person_a_1"], ids["person_a_2"]),
        ("DisassociateFaces", ids["person_a_2"], ids["person_a_1"]),
    ):
        request = {**user, "FaceIds": [idle], "ClientRequestToken": f"{operation}-1"}
        service.call(operation, request, CALLER)
        with pytest.raises(IdempotentParameterMismatchException, match=f"^ClientRequestToken {operation}-1 was"):
            service.call(operation, {**request, "FaceIds": [other]}, CALLER)
    assert face_ids(service.call("ListFaces", user, CALLER)) == [ids["person_a_1"]]


def test_a_repeated_disassociate_faces_names_again_only_the_faces_it_freed(
    service: RekognitionService, two_users: dict[str, str]
) -> None:
    """The retry of a DisassociateFaces that named a missing face and another user's face answers
    the same DisassociatedFaces, and leaves the other user's face with it."""
    ids = two_users
    asked = [ids["person_a_1"], MISSING, ids["person_b_1"], ids["person_b_2"]]
    request = {"CollectionId": "c", "UserId": "a", "FaceIds": asked, "ClientRequestToken": "retry-1"}
    first = service.call("DisassociateFaces", request, CALLER)
    assert first["DisassociatedFaces"] == [{"FaceId": ids["person_b_2"]}, {"FaceId": ids["person_a_1"]}]
    again = service.call("DisassociateFaces", request, CALLER)
    assert again == first  # the first response, reasons and all, as Rekognition answers a repeat
    assert [u["Reasons"] for u in again["UnsuccessfulFaceDisassociations"]] == [
        ["FACE_NOT_FOUND"],
        ["ASSOCIATED_TO_A_DIFFERENT_USER"],
    ]
    assert face_ids(service.call("ListFaces", {"CollectionId": "c", "UserId": "b"}, CALLER)) == [ids["person_b_1"]]


def test_a_repeated_associate_faces_answers_with_the_first_response(
    service: RekognitionService, two_users: dict[str, str]
) -> None:
    """Rekognition returns the same response to a request repeated with its ClientRequestToken:
    the faces it could not associate, and why, included."""
    ids = two_users
    make_user(service, "c")
    asked = [ids["person_b_2"], MISSING, ids["person_b_1"]]
    request = {"CollectionId": "c", "UserId": "c", "FaceIds": asked, "ClientRequestToken": "retry-2"}
    first = service.call("AssociateFaces", request, CALLER)
    assert [u["Reasons"] for u in first["UnsuccessfulFaceAssociations"]] == [
        ["FACE_NOT_FOUND"],
        ["ASSOCIATED_TO_A_DIFFERENT_USER"],
    ]
    assert service.call("AssociateFaces", request, CALLER) == first


def test_a_repeat_of_a_request_whose_response_was_not_kept_answers_from_the_faces(
    service: RekognitionService, two_users: dict[str, str]
) -> None:
    """A token recorded without its response (by a Visage before responses were kept, or a server
    stopped between the write and keeping it): the repeat names the request's faces as they now are."""
    ids = two_users
    make_user(service, "c")
    store = service.store
    for operation, user, faces in (
        ("AssociateFaces", "c", [ids["person_b_2"]]),
        ("DisassociateFaces", "a", [ids["person_a_1"]]),
    ):
        request = {"CollectionId": "c", "UserId": user, "FaceIds": [*faces, MISSING], "ClientRequestToken": operation}
        body = {k: v for k, v in request.items() if k != "ClientRequestToken"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        write = store.associate_faces if operation == "AssociateFaces" else store.disassociate_faces
        write("c", user, faces, token=RequestToken(operation, operation, digest))
        again = service.call(operation, request, CALLER)
        done, unsuccessful = (
            ("AssociatedFaces", "UnsuccessfulFaceAssociations")
            if operation == "AssociateFaces"
            else ("DisassociatedFaces", "UnsuccessfulFaceDisassociations")
        )
        assert again == {done: [{"FaceId": f} for f in faces], unsuccessful: [], "UserStatus": "ACTIVE"}


def test_associate_faces_scores_a_collection_with_its_own_face_models_similarity(
    service: RekognitionService, portraits: Path
) -> None:
    """A collection made under another face model than the server's (dlib) gives the Confidence of
    a refused face on that model's scale, as its SearchFaces does, not on the server's (sface)."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    service.store.create_collection(Collection("d", ARN + "d", "dlib", "dlib-1", datetime.now(UTC)))
    stored = {face.face_id: face for face in service.store.get_faces("c", list(ids.values()))}
    copies = {
        name: replace(stored[i], face_id=str(uuid.uuid4()), image_id=str(uuid.uuid4())) for name, i in ids.items()
    }
    service.store.add_faces("d", list(copies.values()))
    by_model: dict[str, float] = {}
    for collection_id, faces in (("c", ids), ("d", {name: face.face_id for name, face in copies.items()})):
        service.call("CreateUser", {"CollectionId": collection_id, "UserId": "a"}, CALLER)
        request = {"CollectionId": collection_id, "UserId": "a", "UserMatchThreshold": 100.0}
        service.call("AssociateFaces", {**request, "FaceIds": [faces["person_a_1"]]}, CALLER)
        refused = service.call("AssociateFaces", {**request, "FaceIds": [faces["person_a_2"]]}, CALLER)
        search = {"CollectionId": collection_id, "FaceId": faces["person_a_1"], "FaceMatchThreshold": 0.0}
        (match,) = service.call("SearchFaces", search, CALLER)["FaceMatches"]
        (unsuccessful,) = refused["UnsuccessfulFaceAssociations"]
        assert unsuccessful["Confidence"] == pytest.approx(match["Similarity"]), collection_id
        by_model[collection_id] = unsuccessful["Confidence"]
    assert abs(by_model["c"] - by_model["d"]) > 1


# Tags --------------------------------------------------------------------------------


def test_untag_resource_removes_exactly_the_keys_named(service: RekognitionService) -> None:
    tags = {"team": "door", "site": "north", "keep": "me"}
    service.call("TagResource", {"ResourceArn": ARN + "c", "Tags": tags}, CALLER)
    untag = {"ResourceArn": ARN + "c", "TagKeys": ["team", "site", "absent"]}
    assert service.call("UntagResource", untag, CALLER) == {}
    assert service.call("ListTagsForResource", {"ResourceArn": ARN + "c"}, CALLER) == {"Tags": {"keep": "me"}}
    elsewhere = "arn:aws:rekognition:eu-west-1:000000000000:collection/c"
    with pytest.raises(ResourceNotFoundException, match=f"did you mean {ARN}c"):
        service.call("UntagResource", {**untag, "ResourceArn": elsewhere, "TagKeys": ["keep"]}, CALLER)
    with pytest.raises(InvalidParameterException, match="is not a collection ARN"):
        service.call("UntagResource", {**untag, "ResourceArn": "c", "TagKeys": ["keep"]}, CALLER)
    assert service.call("ListTagsForResource", {"ResourceArn": ARN + "c"}, CALLER) == {"Tags": {"keep": "me"}}


# Detection ---------------------------------------------------------------------------


def test_detect_faces_returns_the_default_attributes_unless_more_are_asked_for(
    service: RekognitionService, portraits: Path
) -> None:
    image = {"Bytes": portrait(portraits, "person_a_1")}
    every = DEFAULT_ATTRIBUTES | {"AgeRange", "Gender", "EyesOpen", "MouthOpen", "Smile"}
    for attributes, keys in (
        (None, DEFAULT_ATTRIBUTES),
        (["DEFAULT"], DEFAULT_ATTRIBUTES),
        (["SMILE"], DEFAULT_ATTRIBUTES | {"Smile"}),  # the defaults are always there
        (["ALL"], every),
        (["DEFAULT", "ALL"], every),
    ):
        request = {"Image": image, **({"Attributes": attributes} if attributes else {})}
        response = service.call("DetectFaces", request, CALLER)
        assert list(response) == ["FaceDetails"], attributes
        (face,) = response["FaceDetails"]
        assert set(face) == keys, attributes


# Images ------------------------------------------------------------------------------


@pytest.fixture()
def s3_root(tmp_path: Path, portraits: Path) -> Path:
    """A local S3 folder with person_a_1.jpg as s3://photos/a.jpg and its base64 text as s3://photos/a.b64."""
    bucket = tmp_path / "s3" / "photos"
    bucket.mkdir(parents=True)
    (bucket / "a.jpg").write_bytes(portrait(portraits, "person_a_1"))
    (bucket / "a.b64").write_bytes(base64.b64encode(portrait(portraits, "person_a_1")))
    return tmp_path / "s3"


def test_an_image_has_exactly_one_of_bytes_or_s3_object(engine: Engine, tmp_path: Path, s3_root: Path) -> None:
    service = make_service(engine, tmp_path / "data", s3_root=s3_root)
    jpeg = (s3_root / "photos" / "a.jpg").read_bytes()
    s3_object = {"Bucket": "photos", "Name": "a.jpg"}
    from_bytes, from_s3 = service.image({"Bytes": jpeg}), service.image({"S3Object": s3_object})
    assert (from_bytes.width, from_bytes.height) == (from_s3.width, from_s3.height)
    assert np.array_equal(from_bytes.rgb, from_s3.rgb)
    for neither_or_both in ({}, {"Bytes": jpeg, "S3Object": s3_object}):
        with pytest.raises(InvalidParameterException, match="Image must have exactly one of Bytes or S3Object"):
            service.image(neither_or_both)


@pytest.mark.parametrize("name", ["a\x00b", "a" * 300, "../outside.jpg", "missing.jpg"])
def test_an_s3_name_the_local_folder_cannot_hold_is_an_invalid_s3_object(
    engine: Engine, tmp_path: Path, s3_root: Path, name: str
) -> None:
    """The model gives S3ObjectName no pattern: a NUL byte or a name too long for the file
    system is InvalidS3ObjectException, as a missing object is, never a 500."""
    service = make_service(engine, tmp_path / "data", s3_root=s3_root)
    with pytest.raises(InvalidS3ObjectException):
        service.image({"S3Object": {"Bucket": "photos", "Name": name}})


def test_bytes_and_s3_objects_have_their_own_size_limits(engine: Engine, tmp_path: Path, s3_root: Path) -> None:
    jpeg = (s3_root / "photos" / "a.jpg").read_bytes()
    s3_object = {"S3Object": {"Bucket": "photos", "Name": "a.jpg"}}
    small = make_service(
        engine, tmp_path / "small", s3_root=s3_root, max_image_bytes=len(jpeg) - 1, max_s3_image_bytes=len(jpeg)
    )
    with pytest.raises(ImageTooLargeException):
        small.image({"Bytes": jpeg})
    assert small.image(s3_object).width > 0  # S3's own, larger limit
    exact = make_service(engine, tmp_path / "exact", s3_root=s3_root, max_image_bytes=len(jpeg))
    assert exact.image({"Bytes": jpeg}).width > 0  # the limit itself is allowed


def test_the_audit_log_keeps_the_sha256_of_each_image_however_it_came(
    engine: Engine, tmp_path: Path, s3_root: Path, portraits: Path
) -> None:
    service = make_service(engine, tmp_path / "data", s3_root=s3_root)
    source = portrait(portraits, "person_a_2")
    target = {"S3Object": {"Bucket": "photos", "Name": "a.jpg"}}
    service.call("CompareFaces", {"SourceImage": {"Bytes": source}, "TargetImage": target}, CALLER)
    (record,) = service.store.audit_records()
    assert record.probe_sha256 == hashlib.sha256(source).hexdigest()
    assert record.details == {"target_sha256": hashlib.sha256((s3_root / "photos" / "a.jpg").read_bytes()).hexdigest()}


def test_base64_text_of_an_image_in_bytes_is_refused_with_a_hint(engine: Engine, tmp_path: Path, s3_root: Path) -> None:
    service = make_service(engine, tmp_path / "data", s3_root=s3_root)
    text = (s3_root / "photos" / "a.b64").read_bytes()
    hint = r"The data is not a PNG or JPEG image .* It is base64 text of an image: Image\.Bytes takes the image's raw"
    with pytest.raises(InvalidImageFormatException, match=hint):
        service.image({"Bytes": text})
    # An S3 object is read raw by Visage itself, no SDK in between: no hint; nor for other bytes.
    for image in ({"S3Object": {"Bucket": "photos", "Name": "a.b64"}}, {"Bytes": b"plain text, not an image"}):
        with pytest.raises(InvalidImageFormatException) as refused:
            service.image(image)
        assert "base64" not in str(refused.value), image


def test_base64_of_an_image_is_told_from_other_bytes(portraits: Path) -> None:
    jpeg = portrait(portraits, "person_a_1")
    png = b"\x89PNG\r\n\x1a\n" + bytes(24)
    assert _is_base64_of_an_image(base64.b64encode(jpeg))
    assert _is_base64_of_an_image(base64.b64encode(png))
    assert _is_base64_of_an_image(base64.b64encode(jpeg)[:16])
    for other in (jpeg, base64.b64encode(b"GIF89a and more"), base64.b64encode(jpeg)[:15], b"", b"\xff\xd8"):
        assert not _is_base64_of_an_image(other), other[:20]


def test_a_face_found_again_is_paired_with_the_stored_face_of_its_box() -> None:
    """IndexFaces of an image already indexed (same bytes, same ExternalImageId) answers with
    the stored face of each face found again: the one whose box overlaps its box most (IoU at
    least SAME_FACE_OVERLAP), each stored face for one face at most. A face with no such stored
    face (MaxFaces was smaller before, or it was deleted) is to be stored: None."""

    def stored(left: float, top: float, side: float) -> StoredFace:
        box = BoundingBox(left, top, side, side)
        return StoredFace(str(uuid.uuid4()), "image", box, 99.0, np.zeros(1, np.float32))

    def found(left: float, top: float, side: float) -> Face:
        return Face(FaceDetail(BoundingBox(left, top, side, side), 99.0, (), Pose(0, 0, 0), Quality(50, 50)))

    a, b = stored(0.1, 0.1, 0.2), stored(0.5, 0.5, 0.2)
    same_a, near_b, elsewhere = found(0.1, 0.1, 0.2), found(0.52, 0.5, 0.2), found(0.1, 0.6, 0.2)
    assert _match_stored([a, b], [near_b, elsewhere, same_a]) == [b, None, a]
    assert _match_stored([a], [found(0.11, 0.1, 0.2), same_a]) == [None, a]  # a answers for its best match only
    assert _match_stored([], [same_a]) == [None]
    assert _match_stored([a, b], []) == []


# Access keys and the audit log -------------------------------------------------------


def test_a_caller_is_made_of_its_key(service: RekognitionService) -> None:
    key, _ = service.keys.create(Policy.read_only(), "reader", by="test")
    assert Caller.of(key) == Caller(key.access_key_id, Policy.read_only(), "reader")
    assert Caller.local("visage index") == Caller("visage index", Policy.admin(), "visage index")


def test_a_key_manager_manages_only_keys_no_stronger_than_itself(service: RekognitionService) -> None:
    """visage:ManageKeys beside a Deny: the key may not make, rotate or revoke a key that is
    allowed what it is not (an admin key, a key without its Deny), and each refusal is audited."""
    arn = service.collection_arn("staff")
    manager_policy = Policy.parse(
        {
            "Statement": [
                {"Effect": "Allow", "Action": ["visage:ManageKeys", "rekognition:*"], "Resource": "*"},
                {"Effect": "Deny", "Action": "rekognition:Delete*", "Resource": arn},
            ]
        }
    )
    manager_key, _ = service.keys.create(manager_policy, "manager", by="test")
    admin_key, _ = service.keys.create(Policy.admin(), "admin", by="test")
    manager = Caller.of(manager_key)
    searcher = Policy.parse({"Statement": [{"Effect": "Allow", "Action": "rekognition:Search*", "Resource": arn}]})
    made, _ = service.create_key(manager, searcher, "searcher")  # allowed no more than the manager
    for refused in (
        lambda: service.create_key(manager, Policy.admin(), "escalated"),
        lambda: service.create_key(manager, Policy.for_collection(arn), "no deny"),
        lambda: service.rotate_key(manager, admin_key.access_key_id),
        lambda: service.revoke_key(manager, admin_key.access_key_id),
    ):
        with pytest.raises(AccessDeniedException, match="allowed no more than itself"):
            refused()
    assert service.keys.get(admin_key.access_key_id).revoked_at is None
    assert [k.name for k in service.keys.keys()] == ["manager", "admin", "searcher"]
    refusals = service.store.audit_records(outcome="refused")
    assert [r.operation for r in refusals] == [
        "CreateAccessKey",
        "CreateAccessKey",
        "RotateAccessKey",
        "RevokeAccessKey",
    ]
    service.rotate_key(manager, made.access_key_id)
    service.revoke_key(manager, manager_key.access_key_id)  # its own


def test_authenticate_checks_the_pair_and_notes_the_keys_use(service: RekognitionService) -> None:
    key, pair = service.keys.create(Policy.read_only(), "reader", by="test")
    _, other = service.keys.create(Policy.admin(), "other", by="test")
    assert service.keys.get(key.access_key_id).last_used_at is None
    caller = service.authenticate(pair.access_key_id, pair.secret_access_key)
    assert caller == Caller(pair.access_key_id, Policy.read_only(), "reader")
    assert service.keys.get(key.access_key_id).last_used_at is not None
    wrong = f"{UNKNOWN_ACCESS_KEY} The access key id or secret access key is wrong, or the key was revoked."
    for key_id, secret in (
        (pair.access_key_id, other.secret_access_key),
        ("VSAKNOSUCHKEY0000000", pair.secret_access_key),
    ):
        with pytest.raises(UnrecognizedClientException) as refused:
            service.authenticate(key_id, secret)
        assert refused.value.message == wrong  # the same words whichever half is wrong
    assert service.keys.get(other.access_key_id).last_used_at is None  # its secret did not sign in
    service.keys.revoke(pair.access_key_id, by="test")
    with pytest.raises(UnrecognizedClientException) as refused:
        service.authenticate(pair.access_key_id, pair.secret_access_key)
    assert refused.value.message == wrong


def test_caller_reads_the_key_from_the_store_at_each_request(service: RekognitionService) -> None:
    key, pair = service.keys.create(Policy.for_collection(ARN + "c"), "door", by="test")
    assert service.caller(pair.access_key_id) == Caller(pair.access_key_id, key.policy, "door")
    assert service.keys.get(pair.access_key_id).last_used_at is not None
    service.keys.revoke(pair.access_key_id, by="test")
    with pytest.raises(UnrecognizedClientException, match=f"The access key {pair.access_key_id} is unknown or was"):
        service.caller(pair.access_key_id)
    with pytest.raises(UnrecognizedClientException, match="VSAKNOSUCHKEY"):
        service.caller("VSAKNOSUCHKEY")


def test_keys_are_managed_and_audited_under_the_callers_key(service: RekognitionService) -> None:
    admin = Caller.local("VSAKADMIN")
    key, pair = service.create_key(admin, Policy.read_only(), "reader")
    assert (key.access_key_id, key.name, key.policy, key.active) == (
        pair.access_key_id,
        "reader",
        Policy.read_only(),
        True,
    )
    assert [k.access_key_id for k in service.list_keys(admin)] == [key.access_key_id]
    rotated, new_pair = service.rotate_key(admin, key.access_key_id)
    assert (rotated.name, rotated.policy, rotated.access_key_id) == ("reader", key.policy, new_pair.access_key_id)
    assert [(k.access_key_id, k.active) for k in service.list_keys(admin)] == [
        (key.access_key_id, False),
        (rotated.access_key_id, True),
    ]
    revoked = service.revoke_key(admin, rotated.access_key_id)
    assert (revoked.access_key_id, revoked.active) == (rotated.access_key_id, False)
    records = service.read_audit_log(admin)
    assert [(r.operation, r.access_key_id, r.details["key"]) for r in records] == [
        ("CreateAccessKey", "VSAKADMIN", key.access_key_id),
        ("RotateAccessKey", "VSAKADMIN", rotated.access_key_id),
        ("RevokeAccessKey", "VSAKADMIN", rotated.access_key_id),
    ]


def test_managing_keys_needs_visage_manage_keys(service: RekognitionService) -> None:
    target, _ = service.keys.create(Policy.admin(), "ops", by="test")
    reader = Caller("VSAKREADER", Policy.read_only())
    for refused in (
        lambda: service.create_key(reader, Policy.admin(), "escalate"),
        lambda: service.list_keys(reader),
        lambda: service.revoke_key(reader, target.access_key_id),
        lambda: service.rotate_key(reader, target.access_key_id),
    ):
        with pytest.raises(AccessDeniedException) as denied:
            refused()
        assert denied.value.message == (
            "User: VSAKREADER is not authorized to perform: visage:ManageKeys on resource: * "
            "because no identity-based policy allows the visage:ManageKeys action"
        )
    assert [(r.operation, r.access_key_id, r.collection_id, r.details) for r in refusals(service)] == [
        (operation, "VSAKREADER", None, {"action": "visage:ManageKeys", "resource": "*", "reason": "no allow"})
        for operation in ("CreateAccessKey", "ListAccessKeys", "RevokeAccessKey", "RotateAccessKey")
    ]
    assert [(k.access_key_id, k.active) for k in service.keys.keys()] == [(target.access_key_id, True)]


def test_the_audit_log_is_read_and_verified_with_visage_read_audit_log(service: RekognitionService) -> None:
    reader, door = Caller("VSAKREADER", Policy.read_only()), Caller("VSAKDOOR", Policy.for_collection(ARN + "c"))
    with pytest.raises(AccessDeniedException, match="visage:ReadAuditLog on resource: \\*"):
        service.read_audit_log(door)
    with pytest.raises(AccessDeniedException, match="visage:ReadAuditLog on resource: \\*"):
        service.verify_audit_log(door)
    assert [r.operation for r in refusals(service)] == ["ReadAuditLog", "VerifyAuditLog"]
    middle = datetime.now(UTC)
    service.create_key(Caller.local("VSAKADMIN"), Policy.read_only(), "reader")

    assert [r.operation for r in service.read_audit_log(reader)] == [
        "ReadAuditLog",
        "VerifyAuditLog",
        "CreateAccessKey",
    ]
    assert [r.operation for r in service.read_audit_log(reader, middle)] == ["CreateAccessKey"]
    assert [r.operation for r in service.read_audit_log(reader, operation="VerifyAuditLog")] == ["VerifyAuditLog"]
    report = service.verify_audit_log(reader)
    assert report.ok and report.records == 3
    assert service.verify_audit_log(reader, anchor=report.head_hash).ok
    cut = service.verify_audit_log(reader, anchor="0" * 64)
    assert not cut.ok and cut.broken is not None and cut.broken.problem == "removed"


def test_visages_collection_methods_are_checked_on_the_collections_arn(service: RekognitionService) -> None:
    service.call("CreateCollection", {"CollectionId": "other"}, CALLER)
    door = Caller("VSAKDOOR", Policy.for_collection(ARN + "other"))
    for action, refused in (
        ("rekognition:DescribeCollection", lambda: service.collection("c", door)),
        ("visage:ConfigureCollection", lambda: service.set_keep_face_thumbnails("c", True, door)),
        ("rekognition:ListFaces", lambda: service.face_page("c", door)),
        ("rekognition:ListFaces", lambda: service.face_thumbnails("c", [MISSING], door)),
    ):
        with pytest.raises(AccessDeniedException) as denied:
            refused()
        assert denied.value.message == (
            f"User: VSAKDOOR is not authorized to perform: {action} on resource: {ARN}c "
            f"because no identity-based policy allows the {action} action"
        )
    assert [(r.operation, r.access_key_id, r.collection_id, r.details) for r in refusals(service)] == [
        (action.split(":")[1], "VSAKDOOR", "c", {"action": action, "resource": ARN + "c", "reason": "no allow"})
        for action in (
            "rekognition:DescribeCollection",
            "visage:ConfigureCollection",
            "rekognition:ListFaces",
            "rekognition:ListFaces",
        )
    ]
    assert service.collection("c", CALLER).keep_face_thumbnails is None  # the refused call changed nothing
    service.set_keep_face_thumbnails("other", True, door)  # its own collection
    assert service.collection("other", door).keep_face_thumbnails is True
    assert service.face_page("other", door).faces == []


def test_an_explicit_deny_is_named_in_the_refusal(service: RekognitionService) -> None:
    service.call("CreateCollection", {"CollectionId": "other"}, CALLER)
    denied_c = policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "visage:ConfigureCollection", "Resource": ARN + "c"},
    )
    caller = Caller("VSAKDENIED", denied_c)
    with pytest.raises(AccessDeniedException) as denied:
        service.set_keep_face_thumbnails("c", True, caller)
    assert denied.value.message == (
        f"User: VSAKDENIED is not authorized to perform: visage:ConfigureCollection on resource: {ARN}c "
        "with an explicit deny in an identity-based policy"
    )
    (record,) = refusals(service)
    assert record.details["reason"] == "explicit deny"
    service.set_keep_face_thumbnails("other", True, caller)
    assert service.collection("other", caller).keep_face_thumbnails is True


# SearchUsers -----------------------------------------------------------------------


@pytest.fixture()
def users(service: RekognitionService, portraits: Path) -> dict[str, str]:
    """Users of c: "a" (person_a_1), "a-again" (person_a_2, the same person) and "b" (person_b_1,
    person_b_2); the impostor's face is no user's. The FaceIds by portrait."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2", "person_b_1", "person_b_2", "impostor_1")
    make_user(service, "a", ids["person_a_1"])
    make_user(service, "a-again", ids["person_a_2"])
    make_user(service, "b", ids["person_b_1"], ids["person_b_2"])
    return ids


def test_search_users_by_user_finds_the_other_users_like_its_faces(
    service: RekognitionService, users: dict[str, str]
) -> None:
    """Searched by UserId: the user's own faces are the probes, the user itself is no match, and
    UserMatchThreshold defaults to 80. The answer names the searched user and the model version."""
    response = service.call("SearchUsers", {"CollectionId": "c", "UserId": "a"}, CALLER)
    version = service.call("DescribeCollection", {"CollectionId": "c"}, CALLER)["FaceModelVersion"]
    assert set(response) == {"FaceModelVersion", "SearchedUser", "UserMatches"}
    assert (response["FaceModelVersion"], response["SearchedUser"]) == (version, {"UserId": "a"})
    (match,) = response["UserMatches"]
    assert match["User"] == {"UserId": "a-again", "UserStatus": "ACTIVE"}
    assert 80 <= match["Similarity"] < 100  # another photo: not the face itself
    everyone = service.call("SearchUsers", {"CollectionId": "c", "UserId": "a", "UserMatchThreshold": 0}, CALLER)
    assert [m["User"]["UserId"] for m in everyone["UserMatches"]] == ["a-again", "b"]


def test_search_users_by_face_finds_the_users_like_it(
    service: RekognitionService, users: dict[str, str], portraits: Path
) -> None:
    """Searched by FaceId: the answer names the searched face; its own user is a match."""
    response = service.call("SearchUsers", {"CollectionId": "c", "FaceId": users["person_b_2"]}, CALLER)
    assert set(response) == {"FaceModelVersion", "SearchedFace", "UserMatches"}
    assert response["SearchedFace"] == {"FaceId": users["person_b_2"]}
    assert [(m["User"], m["Similarity"] >= 80) for m in response["UserMatches"]] == [
        ({"UserId": "b", "UserStatus": "ACTIVE"}, True)
    ]


def test_search_users_is_audited_with_its_probe(
    service: RekognitionService, users: dict[str, str], portraits: Path
) -> None:
    """By face: the SHA-256 of the image the face came from, and the FaceId; by user: no image, the UserId."""
    service.call("SearchUsers", {"CollectionId": "c", "FaceId": users["person_b_2"]}, CALLER)
    service.call("SearchUsers", {"CollectionId": "c", "UserId": "a"}, CALLER)
    by_face, by_user = [r for r in service.store.audit_records(None) if r.operation == "SearchUsers"]
    sha = hashlib.sha256(portrait(portraits, "person_b_2")).hexdigest()
    assert (by_face.probe_sha256, by_face.details) == (sha, {"searched_face_id": users["person_b_2"]})
    assert (by_user.probe_sha256, by_user.details) == (None, {"searched_user_id": "a"})


@pytest.mark.parametrize("probe", [{}, {"UserId": "a", "FaceId": MISSING}], ids=["neither", "both"])
def test_search_users_needs_exactly_one_of_face_id_or_user_id(
    service: RekognitionService, users: dict[str, str], probe: dict[str, str]
) -> None:
    with pytest.raises(InvalidParameterException, match=r"^SearchUsers needs exactly one of FaceId or UserId\.$"):
        service.call("SearchUsers", {"CollectionId": "c", **probe}, CALLER)


def test_search_users_of_a_missing_user_is_not_found(service: RekognitionService, users: dict[str, str]) -> None:
    with pytest.raises(ResourceNotFoundException):
        service.call("SearchUsers", {"CollectionId": "c", "UserId": "nobody"}, CALLER)


@pytest.mark.parametrize("operation", ["SearchFaces", "SearchUsers"])
def test_searching_by_a_face_that_is_not_in_the_collection_is_refused_naming_it(
    service: RekognitionService, users: dict[str, str], operation: str
) -> None:
    """Rekognition's text, then the FaceId and the collection."""
    with pytest.raises(InvalidParameterException) as caught:
        service.call(operation, {"CollectionId": "c", "FaceId": MISSING}, CALLER)
    assert caught.value.message == f"faceId was not found in the collection. Face {MISSING} is not in collection c."


def test_search_users_ranks_users_by_similarity_then_by_user_id(service: RekognitionService, portraits: Path) -> None:
    """UserMatches come best first, not in UserId order; users of equal Similarity (two users holding
    faces of the same image) in UserId order, whichever face comes first in the store. A user whose
    Similarity is exactly UserMatchThreshold is a match."""
    ids = index_people(service, portraits, "person_a_2", "person_b_1", "impostor_1")
    twins = sorted(index(service, portrait(portraits, "person_a_1"), ExternalImageId=n) for n in ("one", "two"))
    make_user(service, "m", twins[1])
    make_user(service, "n", twins[0])  # its face comes first in FaceId order
    make_user(service, "z", ids["impostor_1"])
    make_user(service, "a", ids["person_b_1"])
    request = {"CollectionId": "c", "FaceId": ids["person_a_2"], "UserMatchThreshold": 0.0}
    matches = service.call("SearchUsers", request, CALLER)["UserMatches"]
    assert [m["User"]["UserId"] for m in matches] == ["m", "n", "z", "a"]
    similarities = [m["Similarity"] for m in matches]
    assert similarities[0] == similarities[1] > similarities[2] > similarities[3]
    at_the_last = service.call("SearchUsers", {**request, "UserMatchThreshold": similarities[3]}, CALLER)
    assert at_the_last["UserMatches"] == matches
    above_it = {**request, "UserMatchThreshold": float(np.nextafter(similarities[3], 100.0))}
    assert service.call("SearchUsers", above_it, CALLER)["UserMatches"] == matches[:3]


def test_faces_of_no_user_never_crowd_the_users_out_of_search_users(
    service: RekognitionService, portraits: Path
) -> None:
    """SearchUsers weighs only the faces users hold: it reads MaxUsers x 100 faces (a user holds at
    most 100), and 100 faces of no user more like the probe than the user's face leave the user found."""
    ids = index_people(service, portraits, "person_a_1", "person_a_2")
    make_user(service, "a", ids["person_a_1"])
    (probe,) = service.store.get_faces("c", [ids["person_a_2"]])
    service.store.add_faces("c", [replace(probe, face_id=str(uuid.uuid4())) for _ in range(MAX_FACES_PER_USER)])
    request = {"CollectionId": "c", "FaceId": ids["person_a_2"], "MaxUsers": 1}
    (match,) = service.call("SearchUsers", request, CALLER)["UserMatches"]
    assert match["User"]["UserId"] == "a" and match["Similarity"] >= 80


def test_users_of_a_collection_of_another_face_model_are_scored_by_its_calibration(
    service: RekognitionService, engine: Engine, portraits: Path
) -> None:
    """In a dlib collection on an SFace server, a user's Similarity is that of its face as SearchFaces
    gives it: dlib's map from cosine to Similarity, not the server's model's."""
    version = face_model_entry("dlib").version
    service.store.create_collection(Collection("d", service.collection_arn("d"), "dlib", version, datetime.now(UTC)))

    def index_into_d(name: str) -> str:
        request = {"CollectionId": "d", "Image": {"Bytes": portrait(portraits, name)}}
        (record,) = service.call("IndexFaces", request, CALLER)["FaceRecords"]
        return str(record["Face"]["FaceId"])

    ids = {name: index_into_d(name) for name in ("person_a_1", "person_a_2", "person_b_1")}
    for user, name in (("a", "person_a_1"), ("b", "person_b_1")):
        service.call("CreateUser", {"CollectionId": "d", "UserId": user}, CALLER)
        service.call("AssociateFaces", {"CollectionId": "d", "UserId": user, "FaceIds": [ids[name]]}, CALLER)
    request = {"CollectionId": "d", "FaceId": ids["person_a_2"]}
    faces = service.call("SearchFaces", {**request, "FaceMatchThreshold": 0.0}, CALLER)["FaceMatches"]
    by_face = {m["Face"]["FaceId"]: m["Similarity"] for m in faces}
    users = service.call("SearchUsers", {**request, "UserMatchThreshold": 0.0}, CALLER)["UserMatches"]
    assert [(m["User"]["UserId"], m["Similarity"]) for m in users] == [
        ("a", by_face[ids["person_a_1"]]),
        ("b", by_face[ids["person_b_1"]]),
    ]
