"""The real server, driven by the real boto3 client: every operation, success and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from .conftest import RunningServer, encode


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


def error_message(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return excinfo.value.response["Error"]["Message"]


NO_FACES = "There are no faces in the image. Should be at least 1."  # Rekognition's text, as clients match it


@pytest.fixture(scope="module")
def people(portraits: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in portraits.glob("*.jpg")}


@pytest.fixture()
def collection(rekognition: Any, request: pytest.FixtureRequest) -> Any:
    name = f"test-{request.node.name}".replace("[", "-").replace("]", "")[:200]
    rekognition.create_collection(CollectionId=name)
    yield name
    try:
        rekognition.delete_collection(CollectionId=name)
    except ClientError:
        pass


# Stateless ---------------------------------------------------------------------------


def test_detect_faces(rekognition: Any, astronaut_jpeg: bytes) -> None:
    response = rekognition.detect_faces(Image={"Bytes": astronaut_jpeg})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]
    (face,) = response["FaceDetails"]
    assert set(face) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
    assert len(face["Landmarks"]) == 30
    full = rekognition.detect_faces(Image={"Bytes": astronaut_jpeg}, Attributes=["ALL"])["FaceDetails"][0]
    assert full["Gender"]["Value"] == "Female" and "AgeRange" in full and "Smile" in full
    assert "Emotions" not in full


def test_detect_faces_eye_direction(rekognition: Any, people: dict[str, bytes]) -> None:
    """EyeDirection on the wire, asked for by name or with ALL."""
    (face,) = rekognition.detect_faces(Image={"Bytes": people["person_a_2"]}, Attributes=["EYE_DIRECTION"])[
        "FaceDetails"
    ]
    assert set(face) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "EyeDirection"}
    gaze = face["EyeDirection"]
    assert set(gaze) == {"Yaw", "Pitch", "Confidence"}
    assert abs(gaze["Yaw"]) < 15 and abs(gaze["Pitch"]) < 15 and 0 <= gaze["Confidence"] <= 100
    full = rekognition.detect_faces(Image={"Bytes": people["person_a_2"]}, Attributes=["ALL"])["FaceDetails"][0]
    assert full["EyeDirection"] == gaze


def test_detect_faces_bad_images(rekognition: Any, astronaut_rgb: np.ndarray, astronaut_jpeg: bytes) -> None:
    with pytest.raises(ClientError) as gif:
        rekognition.detect_faces(Image={"Bytes": encode(astronaut_rgb, "GIF")})
    assert error_code(gif) == "InvalidImageFormatException"
    assert error_message(gif).startswith("Request has invalid image format. ")
    assert "GIF" in error_message(gif)
    with pytest.raises(rekognition.exceptions.InvalidImageFormatException):
        rekognition.detect_faces(Image={"Bytes": astronaut_jpeg[:5000]})


def test_compare_faces(rekognition: Any, people: dict[str, bytes]) -> None:
    same = rekognition.compare_faces(
        SourceImage={"Bytes": people["person_b_1"]}, TargetImage={"Bytes": people["person_b_2"]}
    )
    assert len(same["FaceMatches"]) == 1 and same["FaceMatches"][0]["Similarity"] >= 80
    assert set(same["SourceImageFace"]) == {"BoundingBox", "Confidence"}
    other = rekognition.compare_faces(
        SourceImage={"Bytes": people["person_b_1"]}, TargetImage={"Bytes": people["impostor_2"]}, SimilarityThreshold=50
    )
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1


def test_compare_faces_without_a_face_is_invalid_parameter(rekognition: Any, people: dict[str, bytes]) -> None:
    from skimage import data

    with pytest.raises(rekognition.exceptions.InvalidParameterException) as no_source:
        rekognition.compare_faces(
            SourceImage={"Bytes": encode(data.coffee())}, TargetImage={"Bytes": people["person_a_1"]}
        )
    assert error_message(no_source) == f"{NO_FACES} No face was found in the source image."
    with pytest.raises(rekognition.exceptions.InvalidParameterException) as no_target:
        rekognition.compare_faces(
            SourceImage={"Bytes": people["person_a_1"]}, TargetImage={"Bytes": encode(data.coffee())}
        )
    assert error_message(no_target) == f"{NO_FACES} No face was found in the target image."


# Collections ---------------------------------------------------------------------------


def test_collection_lifecycle(rekognition: Any) -> None:
    created = rekognition.create_collection(CollectionId="life", Tags={"team": "a"})
    assert created["StatusCode"] == 200
    assert created["CollectionArn"].endswith(":collection/life")
    assert created["FaceModelVersion"] == "sface-1"
    with pytest.raises(rekognition.exceptions.ResourceAlreadyExistsException):
        rekognition.create_collection(CollectionId="life")
    described = rekognition.describe_collection(CollectionId="life")
    assert described["FaceCount"] == 0 and described["UserCount"] == 0
    assert described["CollectionARN"] == created["CollectionArn"]
    assert described["CreationTimestamp"].year >= 2024
    assert "life" in rekognition.list_collections()["CollectionIds"]
    assert rekognition.delete_collection(CollectionId="life")["StatusCode"] == 200
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException) as missing:
        rekognition.describe_collection(CollectionId="life")
    assert error_message(missing).startswith("The collection id: life does not exist. ")
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_collection(CollectionId="life")


def test_list_collections_paginates(rekognition: Any) -> None:
    names = [f"page-{i:02d}" for i in range(7)]
    for name in names:
        rekognition.create_collection(CollectionId=name)
    try:
        seen = []
        for page in rekognition.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 3}):
            assert len(page["CollectionIds"]) <= 3
            assert len(page["FaceModelVersions"]) == len(page["CollectionIds"])
            seen += page["CollectionIds"]
        assert [n for n in seen if n.startswith("page-")] == names
        with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
            rekognition.list_collections(NextToken="not a token!")
    finally:
        for name in names:
            rekognition.delete_collection(CollectionId=name)


# Faces ---------------------------------------------------------------------------------


def test_index_list_search_delete(rekognition: Any, collection: str, people: dict[str, bytes]) -> None:
    indexed = rekognition.index_faces(
        CollectionId=collection,
        Image={"Bytes": people["person_a_1"]},
        ExternalImageId="macron-2014",
        DetectionAttributes=["ALL"],
    )
    (record,) = indexed["FaceRecords"]
    face_id = record["Face"]["FaceId"]
    assert record["Face"]["ExternalImageId"] == "macron-2014"
    assert "Gender" in record["FaceDetail"]
    assert indexed["FaceModelVersion"] == "sface-1" and indexed["UnindexedFaces"] == []
    for name in ("person_b_1", "impostor_1", "impostor_2"):
        rekognition.index_faces(CollectionId=collection, Image={"Bytes": people[name]}, ExternalImageId=name)

    listed = rekognition.list_faces(CollectionId=collection)
    assert len(listed["Faces"]) == 4 and listed["FaceModelVersion"] == "sface-1"
    assert rekognition.describe_collection(CollectionId=collection)["FaceCount"] == 4

    by_image = rekognition.search_faces_by_image(CollectionId=collection, Image={"Bytes": people["person_a_2"]})
    assert [m["Face"]["FaceId"] for m in by_image["FaceMatches"]] == [face_id]
    assert by_image["FaceMatches"][0]["Similarity"] >= 80
    assert 0 < by_image["SearchedFaceBoundingBox"]["Width"] <= 1

    by_face = rekognition.search_faces(CollectionId=collection, FaceId=face_id, FaceMatchThreshold=0, MaxFaces=2)
    assert by_face["SearchedFaceId"] == face_id
    assert len(by_face["FaceMatches"]) == 2 and face_id not in [m["Face"]["FaceId"] for m in by_face["FaceMatches"]]
    similarities = [m["Similarity"] for m in by_face["FaceMatches"]]
    assert similarities == sorted(similarities, reverse=True)

    deleted = rekognition.delete_faces(
        CollectionId=collection, FaceIds=[face_id, "00000000-0000-0000-0000-000000000000"]
    )
    assert deleted["DeletedFaces"] == [face_id]
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    with pytest.raises(rekognition.exceptions.InvalidParameterException) as gone:  # as Rekognition answers
        rekognition.search_faces(CollectionId=collection, FaceId=face_id)
    assert error_message(gone).startswith("faceId was not found in the collection. ")
    assert (
        rekognition.search_faces_by_image(CollectionId=collection, Image={"Bytes": people["person_a_2"]})["FaceMatches"]
        == []
    )


def test_index_faces_max_faces_and_reasons(rekognition: Any, collection: str, portraits: Path) -> None:
    group = (portraits / "solvay_conference_1927.jpg").read_bytes()
    response = rekognition.index_faces(
        CollectionId=collection, Image={"Bytes": group}, MaxFaces=5, QualityFilter="NONE"
    )
    assert len(response["FaceRecords"]) == 5
    reasons = [u["Reasons"] for u in response["UnindexedFaces"]]
    assert len(reasons) == 24 and all(r == ["EXCEEDS_MAX_FACES"] for r in reasons)

    def area(box: dict[str, float]) -> float:
        return box["Width"] * box["Height"]

    kept = [area(r["Face"]["BoundingBox"]) for r in response["FaceRecords"]]
    assert min(kept) >= max(area(u["FaceDetail"]["BoundingBox"]) for u in response["UnindexedFaces"])
    # The same image with the same ExternalImageId does not store its faces twice.
    again = rekognition.index_faces(CollectionId=collection, Image={"Bytes": group}, MaxFaces=5, QualityFilter="NONE")
    assert {r["Face"]["FaceId"] for r in again["FaceRecords"]} == {r["Face"]["FaceId"] for r in response["FaceRecords"]}
    assert rekognition.describe_collection(CollectionId=collection)["FaceCount"] == 5
    # Asked for more of its faces, the five stored answer for themselves and the three others are stored.
    more = rekognition.index_faces(CollectionId=collection, Image={"Bytes": group}, MaxFaces=8, QualityFilter="NONE")
    ids = [r["Face"]["FaceId"] for r in more["FaceRecords"]]
    assert len(ids) == len(set(ids)) == 8 and set(ids) >= {r["Face"]["FaceId"] for r in response["FaceRecords"]}
    assert rekognition.describe_collection(CollectionId=collection)["FaceCount"] == 8
    assert len({r["Face"]["ImageId"] for r in more["FaceRecords"]}) == 1  # one image


def test_index_faces_quality_filter_high_drops_small_faces(rekognition: Any, collection: str, portraits: Path) -> None:
    group = (portraits / "solvay_conference_1927.jpg").read_bytes()
    response = rekognition.index_faces(
        CollectionId=collection, Image={"Bytes": group}, QualityFilter="HIGH", MaxFaces=100
    )
    assert response["UnindexedFaces"], "HIGH should refuse some of the small, soft 1927 faces"
    for unindexed in response["UnindexedFaces"]:
        assert set(unindexed["Reasons"]) <= QUALITY_REASONS


QUALITY_REASONS = {
    "EXTREME_POSE",
    "LOW_BRIGHTNESS",
    "LOW_SHARPNESS",
    "LOW_CONFIDENCE",
    "SMALL_BOUNDING_BOX",
    "LOW_FACE_QUALITY",
}


def test_index_faces_errors(rekognition: Any, people: dict[str, bytes]) -> None:
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.index_faces(CollectionId="no-such-collection", Image={"Bytes": people["person_a_1"]})


def test_search_faces_by_image_without_face(rekognition: Any, collection: str) -> None:
    from skimage import data

    with pytest.raises(rekognition.exceptions.InvalidParameterException) as caught:
        rekognition.search_faces_by_image(CollectionId=collection, Image={"Bytes": encode(data.coffee())})
    assert error_message(caught) == f"{NO_FACES} No face was found in the image."


def test_list_faces_paginates(rekognition: Any, collection: str, portraits: Path) -> None:
    group = (portraits / "solvay_conference_1927.jpg").read_bytes()
    rekognition.index_faces(CollectionId=collection, Image={"Bytes": group}, QualityFilter="NONE")
    pages = list(
        rekognition.get_paginator("list_faces").paginate(CollectionId=collection, PaginationConfig={"PageSize": 10})
    )
    ids = [f["FaceId"] for page in pages for f in page["Faces"]]
    assert len(pages) == 3 and len(ids) == 29 and len(set(ids)) == 29


# Users ---------------------------------------------------------------------------------


def test_users(rekognition: Any, collection: str, people: dict[str, bytes]) -> None:
    ids = {
        name: rekognition.index_faces(CollectionId=collection, Image={"Bytes": people[name]})["FaceRecords"][0]["Face"][
            "FaceId"
        ]
        for name in ("person_a_1", "person_a_2", "person_b_1", "person_b_2", "impostor_1")
    }
    rekognition.create_user(CollectionId=collection, UserId="macron")
    rekognition.create_user(CollectionId=collection, UserId="ardern")
    with pytest.raises(rekognition.exceptions.ConflictException):
        rekognition.create_user(CollectionId=collection, UserId="macron")
    users = rekognition.list_users(CollectionId=collection)["Users"]
    assert {u["UserId"]: u["UserStatus"] for u in users} == {"macron": "CREATED", "ardern": "CREATED"}

    first = rekognition.associate_faces(CollectionId=collection, UserId="macron", FaceIds=[ids["person_a_1"]])
    assert first["AssociatedFaces"] == [{"FaceId": ids["person_a_1"]}] and first["UserStatus"] == "ACTIVE"
    # The second face must look like the first: Ardern's does not.
    second = rekognition.associate_faces(
        CollectionId=collection, UserId="macron", FaceIds=[ids["person_a_2"], ids["person_b_1"]]
    )
    assert second["AssociatedFaces"] == [{"FaceId": ids["person_a_2"]}]
    (refused,) = second["UnsuccessfulFaceAssociations"]
    assert refused["FaceId"] == ids["person_b_1"] and refused["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
    rekognition.associate_faces(
        CollectionId=collection, UserId="ardern", FaceIds=[ids["person_b_1"], ids["person_b_2"]]
    )
    taken = rekognition.associate_faces(CollectionId=collection, UserId="ardern", FaceIds=[ids["person_a_1"]])
    assert taken["UnsuccessfulFaceAssociations"][0]["Reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]

    listed = rekognition.list_faces(CollectionId=collection, UserId="macron")["Faces"]
    assert {f["FaceId"] for f in listed} == {ids["person_a_1"], ids["person_a_2"]}
    assert all(f["UserId"] == "macron" for f in listed)

    # A face of a user cannot be deleted until it is disassociated.
    blocked = rekognition.delete_faces(CollectionId=collection, FaceIds=[ids["person_a_2"]])
    assert blocked["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]

    found = rekognition.search_users_by_image(CollectionId=collection, Image={"Bytes": people["person_a_2"]})
    assert [m["User"]["UserId"] for m in found["UserMatches"]] == ["macron"]
    assert found["UserMatches"][0]["User"]["UserStatus"] == "ACTIVE"
    assert "FaceDetail" in found["SearchedFace"]
    by_face = rekognition.search_users(CollectionId=collection, FaceId=ids["person_b_2"])
    assert [m["User"]["UserId"] for m in by_face["UserMatches"]] == ["ardern"]
    assert by_face["SearchedFace"] == {"FaceId": ids["person_b_2"]}
    by_user = rekognition.search_users(CollectionId=collection, UserId="ardern", UserMatchThreshold=0)
    assert by_user["SearchedUser"] == {"UserId": "ardern"}
    assert [m["User"]["UserId"] for m in by_user["UserMatches"]] == ["macron"]
    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.search_users(CollectionId=collection, UserId="ardern", FaceId=ids["person_b_2"])

    out = rekognition.disassociate_faces(
        CollectionId=collection, UserId="macron", FaceIds=[ids["person_a_2"], ids["person_b_1"]]
    )
    assert out["DisassociatedFaces"] == [{"FaceId": ids["person_a_2"]}]
    assert out["UnsuccessfulFaceDisassociations"][0]["Reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]

    rekognition.delete_user(CollectionId=collection, UserId="macron")
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.delete_user(CollectionId=collection, UserId="macron")
    assert "UserId" not in rekognition.list_faces(CollectionId=collection, FaceIds=[ids["person_a_1"]])["Faces"][0]


def test_search_users_by_image_without_face_is_empty(rekognition: Any, collection: str) -> None:
    from skimage import data

    response = rekognition.search_users_by_image(CollectionId=collection, Image={"Bytes": encode(data.coffee())})
    assert response["UserMatches"] == [] and "SearchedFace" not in response


def test_search_users_by_image_says_why_the_other_faces_were_not_searched(
    rekognition: Any, collection: str, portraits: Path
) -> None:
    group = (portraits / "solvay_conference_1927.jpg").read_bytes()
    response = rekognition.search_users_by_image(CollectionId=collection, Image={"Bytes": group}, QualityFilter="HIGH")
    reasons = [u["Reasons"] for u in response["UnsearchedFaces"]]
    assert "FaceDetail" in response["SearchedFace"] and len(reasons) == 28
    refused = [r for r in reasons if r != ["FACE_NOT_LARGEST"]]
    assert 0 < len(refused) < 28  # HIGH refuses the small, soft faces; the others passed but are not the largest
    assert all(set(r) <= QUALITY_REASONS for r in refused)


def test_user_requests_are_idempotent(rekognition: Any, collection: str) -> None:
    rekognition.create_user(CollectionId=collection, UserId="u1", ClientRequestToken="token-1")
    rekognition.create_user(CollectionId=collection, UserId="u1", ClientRequestToken="token-1")  # a retry: fine
    with pytest.raises(rekognition.exceptions.IdempotentParameterMismatchException):
        rekognition.create_user(CollectionId=collection, UserId="u2", ClientRequestToken="token-1")
    assert [u["UserId"] for u in rekognition.list_users(CollectionId=collection)["Users"]] == ["u1"]


def test_at_most_100_faces_per_user(
    rekognition: Any, collection: str, portraits: Path, astronaut_rgb: np.ndarray
) -> None:
    # 101 faces of one person: the astronaut, shifted by a pixel each time (distinct images).
    face_ids = []
    for i in range(101):
        shifted = np.ascontiguousarray(np.roll(astronaut_rgb, i, axis=1))
        record = rekognition.index_faces(
            CollectionId=collection, Image={"Bytes": encode(shifted)}, QualityFilter="NONE"
        )
        face_ids.append(record["FaceRecords"][0]["Face"]["FaceId"])
    rekognition.create_user(CollectionId=collection, UserId="astronaut")
    rekognition.associate_faces(CollectionId=collection, UserId="astronaut", FaceIds=face_ids[:100])
    with pytest.raises(rekognition.exceptions.ServiceQuotaExceededException):
        rekognition.associate_faces(CollectionId=collection, UserId="astronaut", FaceIds=face_ids[100:])


# Tags ----------------------------------------------------------------------------------


def test_tags(rekognition: Any, collection: str) -> None:
    arn = rekognition.describe_collection(CollectionId=collection)["CollectionARN"]
    rekognition.tag_resource(ResourceArn=arn, Tags={"owner": "lab", "env": "test"})
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"owner": "lab", "env": "test"}
    rekognition.untag_resource(ResourceArn=arn, TagKeys=["env"])
    assert rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"owner": "lab"}
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.list_tags_for_resource(ResourceArn=arn.replace(collection, "missing-collection"))


# Images from S3Object ----------------------------------------------------------------


def test_s3_object_from_local_root(
    rekognition: Any, server: RunningServer, collection: str, people: dict[str, bytes]
) -> None:
    bucket = server.s3_root / "photos"
    (bucket / "sub").mkdir(parents=True, exist_ok=True)
    (bucket / "sub" / "a.jpg").write_bytes(people["person_a_1"])
    response = rekognition.index_faces(
        CollectionId=collection, Image={"S3Object": {"Bucket": "photos", "Name": "sub/a.jpg"}}
    )
    assert len(response["FaceRecords"]) == 1
    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException) as missing:
        rekognition.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "missing.jpg"}})
    assert error_message(missing).startswith(
        "Unable to get object metadata from S3. Check object key, region and/or access permissions. "
    )
    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException):
        rekognition.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "../../data/keys.json"}})


# The audit log -----------------------------------------------------------------------


def test_searches_are_audited(
    rekognition: Any, server: RunningServer, collection: str, people: dict[str, bytes]
) -> None:
    import json
    import subprocess
    import sys

    face_id = rekognition.index_faces(CollectionId=collection, Image={"Bytes": people["person_b_1"]})["FaceRecords"][0][
        "Face"
    ]["FaceId"]
    rekognition.search_faces_by_image(
        CollectionId=collection, Image={"Bytes": people["person_b_2"]}, FaceMatchThreshold=90
    )
    exported = subprocess.run(
        [sys.executable, "-m", "visage.cli", "audit-log", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records = [json.loads(line) for line in exported.splitlines()]
    mine = [r for r in records if r["collection_id"] == collection]
    (record,) = mine
    assert record["operation"] == "SearchFacesByImage" and record["threshold"] == 90
    assert record["face_ids"] == [face_id] and record["match_count"] == 1 and record["best_similarity"] >= 90
    assert record["access_key_id"] == server.credentials.access_key_id
    assert "Bytes" not in exported and "person_b" not in exported
    csv_out = subprocess.run(
        [sys.executable, "-m", "visage.cli", "audit-log", "--data-dir", str(server.data_dir), "--format", "csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert csv_out.splitlines()[0].startswith("time,access_key_id,operation")
