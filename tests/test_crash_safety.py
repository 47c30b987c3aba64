"""Several server processes on one SQLite file, concurrent writers, and a SIGKILL mid-flight
(also of servers on PostgreSQL).

The servers run with a tiny exact-search limit, so that searches go through the vector
index and the index is checked against the database too.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from visage.store.postgres import PostgresStore
from visage.store.sqlite import SQLiteStore

from .conftest import RunningServer

SMALL_EXACT_LIMIT = {"VISAGE_EXACT_SEARCH_LIMIT": "20"}


def lfw_images(lfw: Path, count: int, seed: int) -> list[Path]:
    """One image each of ``count`` different LFW people."""
    people = sorted((lfw / "lfw-deepfunneled").iterdir())
    return [sorted(p.glob("*.jpg"))[0] for p in random.Random(seed).sample(people, count)]


def test_concurrent_writes_and_searches_on_four_workers(tmp_path: Path, lfw: Path) -> None:
    (tmp_path / "s3").mkdir()
    server = RunningServer(tmp_path / "data", tmp_path / "s3", ("--workers", "4"), env=SMALL_EXACT_LIMIT).start()
    images = lfw_images(lfw, 80, seed=11)
    indexed: dict[str, str] = {}  # face id -> external id
    deleted: set[str] = set()
    problems: list[str] = []
    lock = threading.Lock()
    try:
        server.client().create_collection(CollectionId="busy")

        def writer(part: list[Path]) -> None:
            client = server.client()
            for path in part:
                try:
                    response = client.index_faces(
                        CollectionId="busy",
                        Image={"Bytes": path.read_bytes()},
                        ExternalImageId=path.stem,
                        MaxFaces=1,
                        QualityFilter="NONE",
                    )
                    face_id = response["FaceRecords"][0]["Face"]["FaceId"]
                    with lock:
                        indexed[face_id] = path.stem
                    if len(indexed) % 5 == 0:  # delete every fifth face again
                        client.delete_faces(CollectionId="busy", FaceIds=[face_id])
                        with lock:
                            deleted.add(face_id)
                except ClientError as error:
                    problems.append(str(error))

        def searcher(stop: threading.Event) -> None:
            client = server.client()
            probe = images[0].read_bytes()
            while not stop.is_set():
                try:
                    client.search_faces_by_image(
                        CollectionId="busy", Image={"Bytes": probe}, FaceMatchThreshold=0, MaxFaces=5
                    )
                except ClientError as error:
                    problems.append(str(error))

        stop = threading.Event()
        searchers = [threading.Thread(target=searcher, args=(stop,)) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(images[i::4],)) for i in range(4)]
        for t in searchers + writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in searchers:
            t.join()

        assert not problems, problems[:3]
        assert not any("locked" in p for p in problems)
        client = server.client()
        listed = {
            f["FaceId"]
            for page in client.get_paginator("list_faces").paginate(CollectionId="busy")
            for f in page["Faces"]
        }
        assert listed == set(indexed) - deleted
        assert client.describe_collection(CollectionId="busy")["FaceCount"] == len(listed)
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_loses_no_acknowledged_face(
    tmp_path: Path, lfw: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "s3").mkdir()
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgresql" else ""
    where = ("--store", dsn) if dsn else ()
    server = RunningServer(
        tmp_path / "data", tmp_path / "s3", ("--workers", "2", *where), env=SMALL_EXACT_LIMIT
    ).start()
    credentials = server.credentials
    images = lfw_images(lfw, 400, seed=12)
    acknowledged: dict[str, str] = {}  # face id -> external id, for every 200
    lock = threading.Lock()
    stop = threading.Event()
    server.client().create_collection(CollectionId="crash")

    def writer(part: list[Path]) -> None:
        client = server.client()
        for path in part:
            if stop.is_set():
                return
            try:
                response = client.index_faces(
                    CollectionId="crash",
                    Image={"Bytes": path.read_bytes()},
                    ExternalImageId=path.stem,
                    MaxFaces=1,
                    QualityFilter="NONE",
                )
            except Exception:
                return
            with lock:
                for record in response["FaceRecords"]:
                    acknowledged[record["Face"]["FaceId"]] = path.stem

    threads = [threading.Thread(target=writer, args=(images[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    while len(acknowledged) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop(signal.SIGKILL)  # the whole process group, while calls are in flight
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 60

    restarted = RunningServer(tmp_path / "data", tmp_path / "s3", where, env=SMALL_EXACT_LIMIT).start()
    try:
        client = restarted.client(credentials=credentials)
        faces = [f for page in client.get_paginator("list_faces").paginate(CollectionId="crash") for f in page["Faces"]]
        by_id = {f["FaceId"]: f for f in faces}
        assert set(acknowledged) <= set(by_id), "a face whose IndexFaces answered 200 was lost"
        for face in faces:  # no face without its metadata
            assert face["ImageId"] and face["ExternalImageId"] and 0 < face["BoundingBox"]["Width"] <= 1
        # Searchable: each acknowledged image finds its own face first.
        for _face_id, external in list(acknowledged.items())[:40]:
            path = next(p for p in images if p.stem == external)
            found = client.search_faces_by_image(CollectionId="crash", Image={"Bytes": path.read_bytes()}, MaxFaces=1)
            assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == external
    finally:
        restarted.stop()

    # The vector index agrees with the database.
    store = (
        PostgresStore(dsn, exact_search_limit=20)
        if dsn
        else SQLiteStore(tmp_path / "data" / "visage.db", exact_search_limit=20)
    )
    count = store.count("crash")[0]
    store.search("crash", np.ones(128, np.float32) / np.sqrt(128), 1, -1.0)
    indexes = store.indexes if isinstance(store, PostgresStore) else store.searcher.indexes
    (ann,) = indexes._ann.values()
    assert len(ann.index) == count == len(by_id)
    store.close()
