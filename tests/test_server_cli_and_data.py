"""The real AWS CLI against the server, identification on LFW, and a restart."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from visage.evaluation.intervals import binomial_range

from .conftest import RunningServer


def aws(server: RunningServer, *args: str) -> dict[str, Any]:
    """Run the real AWS CLI (awscli from PyPI) against the server."""
    executable = Path(sys.executable).with_name("aws")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.credentials.secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    result = subprocess.run(
        [str(executable), "rekognition", *args, "--endpoint-url", server.url, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_aws_cli(server: RunningServer, portraits: Path) -> None:
    bucket = server.s3_root / "cli-bucket"
    bucket.mkdir(exist_ok=True)
    for name in ("person_a_1", "person_a_2", "impostor_1"):
        shutil.copy(portraits / f"{name}.jpg", bucket / f"{name}.jpg")

    def image(name: str) -> str:
        return json.dumps({"S3Object": {"Bucket": "cli-bucket", "Name": f"{name}.jpg"}})

    detected = aws(server, "detect-faces", "--image", image("person_a_1"), "--attributes", "ALL")
    assert len(detected["FaceDetails"]) == 1 and "Gender" in detected["FaceDetails"][0]
    created = aws(server, "create-collection", "--collection-id", "cli")
    assert created["StatusCode"] == 200
    for name in ("person_a_1", "impostor_1"):
        indexed = aws(
            server, "index-faces", "--collection-id", "cli", "--image", image(name), "--external-image-id", name
        )
        assert len(indexed["FaceRecords"]) == 1
    found = aws(server, "search-faces-by-image", "--collection-id", "cli", "--image", image("person_a_2"))
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["person_a_1"]
    listed = aws(server, "list-faces", "--collection-id", "cli")
    assert sorted(f["ExternalImageId"] for f in listed["Faces"]) == ["impostor_1", "person_a_1"]


def _lfw_people(lfw: Path, count: int, per_person: int) -> list[tuple[str, list[Path]]]:
    root = lfw / "lfw-deepfunneled"
    people = sorted(p for p in root.iterdir() if len(list(p.glob("*.jpg"))) >= per_person)
    chosen = random.Random(2026).sample(people, count)
    return [(p.name, sorted(p.glob("*.jpg"))[:per_person]) for p in chosen]


def test_identification_on_lfw(server: RunningServer, rekognition: Any, lfw: Path) -> None:
    """Index two images each of 100 LFW people; search with a third: top-1 right for >= 97.

    97 is derived, not chosen: benchmarks/identification_rate.py measured this very protocol
    on 60 other draws of 100 people (5,963 of 6,000 right, 99.38 %; no draw under 97), and
    97 is the lower end of the central 99 % binomial range of 100 probes at that rate.
    """
    rekognition.create_collection(CollectionId="lfw-identification")
    people = _lfw_people(lfw, 100, 3)
    for name, images in people:
        for image in images[:2]:
            rekognition.index_faces(
                CollectionId="lfw-identification",
                Image={"Bytes": image.read_bytes()},
                ExternalImageId=name,
                MaxFaces=1,
                QualityFilter="NONE",
            )
    correct = 0
    for name, images in people:
        response = rekognition.search_faces_by_image(
            CollectionId="lfw-identification", Image={"Bytes": images[2].read_bytes()}, FaceMatchThreshold=0, MaxFaces=1
        )
        top = response["FaceMatches"][0]["Face"]["ExternalImageId"] if response["FaceMatches"] else None
        correct += top == name
    print(f"LFW identification: top-1 correct for {correct} of 100 people")
    measured = json.loads((Path(__file__).parent.parent / "benchmarks/results/identification_rate.json").read_text())
    assert measured["floor_of_100"] == binomial_range(100, measured["correct"] / measured["probes"], 0.99)[0] == 97
    assert correct >= measured["floor_of_100"]


def test_restart_keeps_everything(tmp_path: Path, portraits: Path) -> None:
    (tmp_path / "s3").mkdir()
    first = RunningServer(tmp_path / "data", tmp_path / "s3").start()
    credentials = first.credentials
    try:
        client = first.client()
        client.create_collection(CollectionId="kept", Tags={"keep": "yes"})
        face_id = client.index_faces(CollectionId="kept", Image={"Bytes": (portraits / "person_b_1.jpg").read_bytes()})[
            "FaceRecords"
        ][0]["Face"]["FaceId"]
        client.create_user(CollectionId="kept", UserId="ardern")
        client.associate_faces(CollectionId="kept", UserId="ardern", FaceIds=[face_id])
    finally:
        first.stop()

    second = RunningServer(tmp_path / "data", tmp_path / "s3").start()
    try:
        assert second.credentials is None  # the key file survived: no new key was made
        client = second.client(credentials=credentials)
        described = client.describe_collection(CollectionId="kept")
        assert described["FaceCount"] == 1 and described["UserCount"] == 1
        assert client.list_tags_for_resource(ResourceArn=described["CollectionARN"])["Tags"] == {"keep": "yes"}
        (face,) = client.list_faces(CollectionId="kept")["Faces"]
        assert face["FaceId"] == face_id and face["UserId"] == "ardern"
        found = client.search_faces_by_image(
            CollectionId="kept", Image={"Bytes": (portraits / "person_b_2.jpg").read_bytes()}
        )
        assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [face_id]
    finally:
        second.stop()
