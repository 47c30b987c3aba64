"""Two real servers on one PostgreSQL database (``visage serve --store postgresql://...``), through boto3."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from visage.keys import Credentials

from .conftest import RunningServer


def faces_by_external_id(client: Any, collection_id: str) -> dict[str, str]:
    faces = client.list_faces(CollectionId=collection_id, MaxResults=100)["Faces"]
    return {face["FaceId"]: face["ExternalImageId"] for face in faces}


def best_match(client: Any, collection_id: str, image: bytes) -> tuple[str, float]:
    matches = client.search_faces_by_image(CollectionId=collection_id, Image={"Bytes": image}, FaceMatchThreshold=80)[
        "FaceMatches"
    ]
    assert matches, "no face matched"
    return matches[0]["Face"]["ExternalImageId"], matches[0]["Similarity"]


def test_two_servers_share_one_postgresql_database(postgres_dsn: str, portraits: Path, tmp_path: Path) -> None:
    people = {path.stem: path.read_bytes() for path in portraits.glob("*.jpg")}
    data, s3 = tmp_path / "data", tmp_path / "s3"
    s3.mkdir()
    first = RunningServer(data, s3, ("--store", postgres_dsn)).start()
    second: RunningServer | None = None
    try:
        second = RunningServer(data, s3, ("--store", postgres_dsn)).start()  # the same keys, another process
        one, two = first.client(), second.client()

        one.create_collection(CollectionId="staff")
        for name in ("person_a_1", "person_b_1", "impostor_1"):
            indexed = one.index_faces(
                CollectionId="staff", Image={"Bytes": people[name]}, ExternalImageId=name, MaxFaces=1
            )
            assert len(indexed["FaceRecords"]) == 1, name

        # The second server sees what the first stored, and both find the same people.
        assert [c for c in two.list_collections()["CollectionIds"]] == ["staff"]
        assert two.describe_collection(CollectionId="staff")["FaceCount"] == 3
        assert faces_by_external_id(two, "staff") == faces_by_external_id(one, "staff")
        assert best_match(one, "staff", people["person_a_2"])[0] == "person_a_1"
        assert best_match(two, "staff", people["person_a_2"]) == best_match(one, "staff", people["person_a_2"])
        assert best_match(two, "staff", people["person_b_2"])[0] == "person_b_1"

        # And the other way round: a write through the second is seen by the first.
        impostor = [face_id for face_id, name in faces_by_external_id(one, "staff").items() if name == "impostor_1"]
        assert two.delete_faces(CollectionId="staff", FaceIds=impostor)["DeletedFaces"] == impostor
        assert sorted(faces_by_external_id(one, "staff").values()) == ["person_a_1", "person_b_1"]
        two.create_user(CollectionId="staff", UserId="alice")
        (alice_face,) = [
            face_id for face_id, name in faces_by_external_id(two, "staff").items() if name == "person_a_1"
        ]
        two.associate_faces(CollectionId="staff", UserId="alice", FaceIds=[alice_face])
        found = one.search_users_by_image(CollectionId="staff", Image={"Bytes": people["person_a_2"]})
        assert found["UserMatches"][0]["User"]["UserId"] == "alice"

        assert not (data / "visage.db").exists()  # nothing went to SQLite
        assert_revocation_reaches_both(one_server=first, other_server=second, postgres_dsn=postgres_dsn)
    finally:
        if second is not None:
            second.stop()
        first.stop()


def assert_revocation_reaches_both(one_server: RunningServer, other_server: RunningServer, postgres_dsn: str) -> None:
    """A key revoked with the CLI is refused by the next request to either server."""
    where = ("--store", postgres_dsn, "--data-dir", str(one_server.data_dir))
    made = subprocess.run(
        [sys.executable, "-m", "visage.cli", "keys", "create", "--read-only", *where],
        capture_output=True,
        text=True,
        check=True,
    )
    pair = dict(line.split("=", 1) for line in made.stdout.split())
    key = Credentials(pair["AWS_ACCESS_KEY_ID"], pair["AWS_SECRET_ACCESS_KEY"])
    clients = [server.client(credentials=key) for server in (one_server, other_server)]
    for client in clients:
        assert client.list_collections()["CollectionIds"] == ["staff"]
    subprocess.run([sys.executable, "-m", "visage.cli", "keys", "revoke", key.access_key_id, *where], check=True)
    for client in clients:
        with pytest.raises(ClientError) as refused:
            client.list_collections()
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_an_unknown_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s3").mkdir()
    server = RunningServer(tmp_path / "data", tmp_path / "s3", ("--store", "mysql://somewhere/visage"))
    with pytest.raises(RuntimeError, match="postgresql://"):
        server.start()


def test_a_write_through_one_server_is_searched_on_the_other_at_once(
    postgres_dsn: str, portraits: Path, tmp_path: Path
) -> None:
    """With big collections searched through each server's own vector index (here above 2
    faces), the first search on another server after IndexFaces or DeleteFaces answered
    already folds the write in: the delay is one request, far under the 1 s asked for."""
    people = {path.stem: path.read_bytes() for path in portraits.glob("*.jpg")}
    data, s3 = tmp_path / "data", tmp_path / "s3"
    s3.mkdir()
    small = {"VISAGE_EXACT_SEARCH_LIMIT": "2"}
    first = RunningServer(data, s3, ("--store", postgres_dsn), env=small).start()
    second: RunningServer | None = None
    try:
        second = RunningServer(data, s3, ("--store", postgres_dsn), env=small).start()
        one, two = first.client(), second.client()
        one.create_collection(CollectionId="crowd")
        for name in ("solvay_conference_1927", "person_b_1", "impostor_1"):
            one.index_faces(CollectionId="crowd", Image={"Bytes": people[name]}, ExternalImageId=name)
        assert two.describe_collection(CollectionId="crowd")["FaceCount"] > 2
        assert best_match(two, "crowd", people["person_b_2"])[0] == "person_b_1"  # two's index is built

        delays = {}
        indexed = one.index_faces(
            CollectionId="crowd", Image={"Bytes": people["person_a_1"]}, ExternalImageId="person_a_1", MaxFaces=1
        )
        acknowledged = time.perf_counter()
        assert best_match(two, "crowd", people["person_a_2"])[0] == "person_a_1"
        delays["indexed"] = time.perf_counter() - acknowledged

        face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
        assert one.delete_faces(CollectionId="crowd", FaceIds=[face_id])["DeletedFaces"] == [face_id]
        acknowledged = time.perf_counter()
        matches = two.search_faces_by_image(
            CollectionId="crowd", Image={"Bytes": people["person_a_2"]}, FaceMatchThreshold=0, MaxFaces=100
        )["FaceMatches"]
        delays["deleted"] = time.perf_counter() - acknowledged
        assert face_id not in [m["Face"]["FaceId"] for m in matches] and matches
        print(f"seen by the other server after: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in delays.items())}")
    finally:
        if second is not None:
            second.stop()
        first.stop()
