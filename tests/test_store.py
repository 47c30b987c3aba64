"""Conformance tests of the store backends (visage.store.base.Store).

The shared tests run against every backend through the ``open_store`` fixture;
a backend passes them all or it is not a Visage store. Tests of one backend's
own machinery (SQLite's pragmas, schema version, retries) are at the end, in
their own section, and open that backend directly.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from visage.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ThrottlingException,
)
from visage.faces import BoundingBox
from visage.store import collection_indexes, sqlite_search
from visage.store.base import (
    AuditRecord,
    Collection,
    JobResult,
    RequestToken,
    Review,
    Store,
    StoredFace,
    StoredKey,
    User,
    VideoJob,
)
from visage.store.collection_indexes import CollectionIndexes
from visage.store.postgres import MIGRATIONS as POSTGRES_MIGRATIONS
from visage.store.postgres import PostgresStore, exact_search_sql
from visage.store.sql import dialect_sql
from visage.store.sqlite import MIGRATIONS, SQLiteStore

from .conftest import TestPostgres

DIM = 128
UTC = UTC
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


# Fixtures ------------------------------------------------------------------------------


# ``open_store`` and ``store``, which run a test on each backend, are in tests/conftest.py.


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20250301)


@pytest.fixture
def cid(store: Store) -> str:
    """A fresh empty collection."""
    store.create_collection(collection("faces"))
    return "faces"


# Builders ------------------------------------------------------------------------------


def collection(collection_id: str, tags: dict[str, str] | None = None, created_at: datetime = T0) -> Collection:
    return Collection(
        collection_id=collection_id,
        arn=f"aws:rekognition:us-east-1:000000000000:collection/{collection_id}",
        face_model="sface",
        face_model_version="sface-1",
        created_at=created_at,
        tags=tags or {},
    )


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def with_cosines(rng: np.random.Generator, query: np.ndarray, cosines: Sequence[float]) -> np.ndarray:
    """Random unit vectors whose cosines with ``query`` are ``cosines`` (up to float32 rounding)."""
    q = query.astype(np.float64)
    out = []
    for c in cosines:
        w = rng.standard_normal(q.shape)
        w -= (w @ q) * q
        w /= np.linalg.norm(w)
        out.append(c * q + math.sqrt(1 - c * c) * w)
    return np.array(out, dtype=np.float32).reshape(len(out), len(q))


def face(
    vector: np.ndarray,
    face_id: str | None = None,
    user_id: str | None = None,
    external_image_id: str | None = None,
    image_hash: str | None = None,
    image_id: str | None = None,
) -> StoredFace:
    return StoredFace(
        face_id=face_id or str(uuid.uuid4()),
        image_id=image_id or str(uuid.uuid4()),
        bounding_box=BoundingBox(left=0.125, top=0.25, width=0.3, height=1 / 3),
        confidence=99.87654321,
        vector=vector,
        external_image_id=external_image_id,
        user_id=user_id,
        image_hash=image_hash,
    )


def review(
    collection_id: str, face_id: str, decision: str = "same", probe: str = "ab" * 32, **kwargs: object
) -> Review:
    values: dict[str, object] = {
        "time": T0,
        "access_key_id": "VSAKREVIEWER",
        "collection_id": collection_id,
        "probe_sha256": probe,
        "face_id": face_id,
        "similarity": 99.5,
        "decision": decision,
        "note": "",
        **kwargs,
    }
    return Review(**values)  # type: ignore[arg-type]


def decided(r: Review, **details: object) -> AuditRecord:
    """The audit record of decision ``r`` (as the service writes it, in short)."""
    return AuditRecord(
        r.time,
        r.access_key_id,
        "ReviewMatch",
        r.collection_id,
        None,
        0,
        r.similarity,
        [r.face_id],
        probe_sha256=r.probe_sha256,
        details={"decision": r.decision, **details},
    )


def random_faces(rng: np.random.Generator, n: int, **kwargs: str | None) -> list[StoredFace]:
    return [face(v, **kwargs) for v in unit_vectors(rng, n)]


def ids(faces: Sequence[StoredFace]) -> list[str]:
    return [f.face_id for f in faces]


def assert_same_faces(got: Sequence[StoredFace], want: Sequence[StoredFace]) -> None:
    """Equal faces, in the same order, vectors included (the dataclass compares all but vectors)."""
    assert list(got) == list(want)
    for g, w in zip(got, want):
        assert g.vector.dtype == np.float32
        np.testing.assert_array_equal(g.vector, w.vector)


# Brute-force search reference ------------------------------------------------------------


def brute_force(
    faces: Sequence[StoredFace],
    query: np.ndarray,
    limit: int,
    min_score: float,
    exclude_face_id: str | None = None,
    with_user_only: bool = False,
) -> list[tuple[str, float]]:
    """(face_id, exact cosine) of the best faces: products of float32 are exact in float64, fsum rounds once."""
    q = query.astype(np.float64)
    scored = [
        (math.fsum(f.vector.astype(np.float64) * q), f.face_id)
        for f in faces
        if f.face_id != exclude_face_id and (f.user_id is not None or not with_user_only)
    ]
    scored.sort(key=lambda sf: (-sf[0], sf[1]))
    return [(face_id, score) for score, face_id in scored if score >= min_score][:limit]


def assert_search_matches(
    store: Store, collection_id: str, faces: Sequence[StoredFace], query: np.ndarray, **kwargs: object
) -> None:
    got = store.search(collection_id, query, **kwargs)  # type: ignore[arg-type]
    want = brute_force(faces, query, **kwargs)  # type: ignore[arg-type]
    assert [s.face.face_id for s in got] == [face_id for face_id, _ in want]
    assert [s.score for s in got] == pytest.approx([score for _, score in want], abs=1e-5)
    assert all(s.score >= kwargs["min_score"] for s in got)  # type: ignore[operator]
    by_id = {f.face_id: f for f in faces}
    assert_same_faces([s.face for s in got], [by_id[s.face.face_id] for s in got])


def tied_faces(
    rng: np.random.Generator, query: np.ndarray, n: int, distinct: int, users: float = 0.5
) -> list[StoredFace]:
    """``n`` faces over ``distinct`` vectors (so equal vectors tie exactly), some with a user.

    Their cosines with ``query`` are distinct multiples of 1/256, so faces of different
    vectors never tie, even after float32 rounding; ``min_score`` values between two
    multiples are therefore safe to compare with the exact reference.
    """
    cosines = rng.choice(np.arange(-255, 256), size=distinct, replace=False) / 256
    vectors = with_cosines(rng, query, cosines)
    picks = rng.integers(0, distinct, size=n)
    return [face(vectors[i], user_id="u1" if rng.random() < users else None) for i in picks]


# Collections ---------------------------------------------------------------------------


def test_create_and_get_collection(store: Store) -> None:
    in_paris = datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    created = collection("c1", tags={"team": "vision"}, created_at=in_paris)
    store.create_collection(created)
    got = store.get_collection("c1")
    assert got == created
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_duplicate_collection_is_rejected(store: Store) -> None:
    store.create_collection(collection("c1"))
    with pytest.raises(ResourceAlreadyExistsException, match="c1"):
        store.create_collection(collection("c1", tags={"other": "tags"}))
    assert store.get_collection("c1").tags == {}


def test_list_collections_pages_in_id_order(store: Store) -> None:
    names = ["b", "a", "c-2", "c-10", "Z", "d", "e"]
    for name in names:
        store.create_collection(collection(name, tags={"name": name}))
    pages, after = [], None
    while page := store.list_collections(after, 3):
        assert len(page) <= 3
        pages.append(page)
        after = page[-1].collection_id
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [c for page in pages for c in page]
    assert [c.collection_id for c in listed] == sorted(names)
    assert all(c.tags == {"name": c.collection_id} for c in listed)
    assert store.list_collections(None, 0) == []
    assert [c.collection_id for c in store.list_collections("c-2", 2)] == ["d", "e"]


def test_delete_collection_removes_its_faces_users_tags_and_tokens(store: Store, rng: np.random.Generator) -> None:
    store.create_collection(collection("c1", tags={"k": "v"}))
    store.create_collection(collection("keep"))
    faces = random_faces(rng, 3)
    store.add_faces("c1", faces)
    store.add_faces("keep", random_faces(rng, 2))
    store.create_user("c1", "alice", RequestToken("t1", "CreateUser", "digest"))
    store.associate_faces("c1", "alice", ids(faces[:1]))
    store.search("c1", faces[0].vector, 10, 0.0)  # warm any cache

    store.delete_collection("c1")
    with pytest.raises(ResourceNotFoundException, match="c1"):
        store.get_collection("c1")
    with pytest.raises(ResourceNotFoundException, match="c1"):
        store.delete_collection("c1")
    assert [c.collection_id for c in store.list_collections(None, 10)] == ["keep"]
    assert store.count("keep") == (2, 0)

    store.create_collection(collection("c1"))  # the same id again starts empty
    assert store.get_collection("c1").tags == {}
    assert store.count("c1") == (0, 0)
    assert store.list_faces("c1", None, 10) == []
    assert store.search("c1", faces[0].vector, 10, -1.0) == []
    assert store.get_token("c1", "t1") is None


MISSING = "no-such-collection"
_VECTOR = np.eye(DIM, dtype=np.float32)[0]
CALLS_ON_MISSING: dict[str, Callable[[Store], object]] = {
    "delete_collection": lambda s: s.delete_collection(MISSING),
    "get_collection": lambda s: s.get_collection(MISSING),
    "count": lambda s: s.count(MISSING),
    "add_faces": lambda s: s.add_faces(MISSING, [face(_VECTOR)]),
    "add_faces_empty": lambda s: s.add_faces(MISSING, []),
    "list_faces": lambda s: s.list_faces(MISSING, None, 10),
    "get_faces": lambda s: s.get_faces(MISSING, ["f"]),
    "delete_faces": lambda s: s.delete_faces(MISSING, ["f"]),
    "find_image": lambda s: s.find_image(MISSING, "hash", None),
    "search": lambda s: s.search(MISSING, _VECTOR, 10, 0.0),
    "create_user": lambda s: s.create_user(MISSING, "u"),
    "delete_user": lambda s: s.delete_user(MISSING, "u"),
    "get_user": lambda s: s.get_user(MISSING, "u"),
    "list_users": lambda s: s.list_users(MISSING, None, 10),
    "associate_faces": lambda s: s.associate_faces(MISSING, "u", ["f"]),
    "disassociate_faces": lambda s: s.disassociate_faces(MISSING, "u", ["f"]),
    "set_tags": lambda s: s.set_tags(MISSING, {"k": "v"}),
    "remove_tags": lambda s: s.remove_tags(MISSING, ["k"]),
    "get_token": lambda s: s.get_token(MISSING, "token"),
    "get_thumbnails": lambda s: s.get_thumbnails(MISSING, ["f"]),
    "set_keep_face_thumbnails": lambda s: s.set_keep_face_thumbnails(MISSING, True),
    "add_review": lambda s: s.add_review(review(MISSING, "f"), decided(review(MISSING, "f"))),
    "reviews": lambda s: s.reviews(MISSING),
}


@pytest.mark.parametrize("call", CALLS_ON_MISSING.values(), ids=CALLS_ON_MISSING.keys())
def test_missing_collection_is_not_found(store: Store, call: Callable[[Store], object]) -> None:
    store.create_collection(collection("other"))
    with pytest.raises(ResourceNotFoundException, match=MISSING):
        call(store)


# Faces ---------------------------------------------------------------------------------


def test_faces_round_trip(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = [
        face(unit_vectors(rng, 1)[0], user_id=None, external_image_id="photo.jpg", image_hash="ab" * 32),
        face(unit_vectors(rng, 1)[0]),
    ]
    store.add_faces(cid, faces)
    got = sorted(store.get_faces(cid, ids(faces)), key=lambda f: ids(faces).index(f.face_id))
    assert_same_faces(got, faces)
    assert store.count(cid) == (2, 0)


def test_add_faces_is_atomic(store: Store, cid: str, rng: np.random.Generator) -> None:
    first = random_faces(rng, 2)
    store.add_faces(cid, first)
    batch = random_faces(rng, 3)
    clash = face(unit_vectors(rng, 1)[0], face_id=first[1].face_id)
    with pytest.raises(ConflictException, match=first[1].face_id):
        store.add_faces(cid, [*batch, clash])
    with pytest.raises(ConflictException, match=batch[0].face_id):
        store.add_faces(cid, [*batch, batch[0]])  # a face twice in one batch
    assert store.count(cid) == (2, 0)
    assert store.get_faces(cid, ids(batch)) == []
    assert_same_faces(store.get_faces(cid, ids(first[1:])), first[1:])  # the original is untouched


def test_list_faces_pages_and_filters(store: Store, cid: str, rng: np.random.Generator) -> None:
    store.create_user(cid, "alice")
    faces = random_faces(rng, 7)
    store.add_faces(cid, faces[:4])
    store.add_faces(cid, faces[4:])
    store.associate_faces(cid, "alice", ids(faces[1:4]))
    ordered = sorted(ids(faces))

    pages, after = [], None
    while page := store.list_faces(cid, after, 3):
        pages.append(ids(page))
        after = page[-1].face_id
    assert pages == [ordered[0:3], ordered[3:6], ordered[6:]]

    alice = sorted(ids(faces[1:4]))
    assert ids(store.list_faces(cid, None, 10, user_id="alice")) == alice
    assert ids(store.list_faces(cid, alice[0], 1, user_id="alice")) == alice[1:2]
    assert store.list_faces(cid, None, 10, user_id="bob") == []

    wanted = [faces[0].face_id, faces[5].face_id, "not-a-face"]
    assert ids(store.list_faces(cid, None, 10, face_ids=wanted)) == sorted(wanted[:2])
    assert ids(store.list_faces(cid, None, 10, user_id="alice", face_ids=[faces[0].face_id, faces[2].face_id])) == [
        faces[2].face_id
    ]
    assert store.list_faces(cid, None, 10, face_ids=[]) == []
    assert store.list_faces(cid, None, 0) == []
    assert all(f.user_id == "alice" for f in store.list_faces(cid, None, 10, user_id="alice"))


def test_get_faces_returns_only_existing(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 3)
    store.add_faces(cid, faces)
    got = store.get_faces(cid, [faces[2].face_id, "missing", faces[0].face_id])
    assert sorted(ids(got)) == sorted([faces[0].face_id, faces[2].face_id])
    assert store.get_faces(cid, []) == []


def test_delete_faces_returns_only_existing(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 4)
    store.add_faces(cid, faces)
    deleted = store.delete_faces(cid, [faces[0].face_id, "missing", faces[3].face_id])
    assert sorted(deleted) == sorted([faces[0].face_id, faces[3].face_id])
    assert store.delete_faces(cid, [faces[0].face_id]) == []
    assert sorted(ids(store.list_faces(cid, None, 10))) == sorted(ids(faces[1:3]))


def test_faces_are_scoped_to_their_collection(store: Store, cid: str, rng: np.random.Generator) -> None:
    store.create_collection(collection("other"))
    faces = random_faces(rng, 2)
    store.add_faces(cid, faces)
    store.add_faces("other", [face(faces[0].vector, face_id=faces[0].face_id)])  # same id elsewhere is fine
    assert store.delete_faces("other", ids(faces)) == [faces[0].face_id]
    assert store.count(cid) == (2, 0)


def test_find_image_matches_hash_and_external_id(store: Store, cid: str, rng: np.random.Generator) -> None:
    h, other = "1" * 64, "2" * 64
    v = unit_vectors(rng, 5)
    same = [face(v[0], image_hash=h, external_image_id="a.jpg"), face(v[1], image_hash=h, external_image_id="a.jpg")]
    unnamed = face(v[2], image_hash=h)
    others = [face(v[3], image_hash=h, external_image_id="b.jpg"), face(v[4], image_hash=other)]
    store.add_faces(cid, [*same, unnamed, *others])
    assert sorted(ids(store.find_image(cid, h, "a.jpg"))) == sorted(ids(same))
    assert ids(store.find_image(cid, h, None)) == [unnamed.face_id]
    assert store.find_image(cid, h, "c.jpg") == []
    assert store.find_image(cid, "3" * 64, None) == []


# Search --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 10, "min_score": -1.0},
        {"limit": 1, "min_score": -1.0},
        {"limit": 1000, "min_score": -1.0},
        {"limit": 7, "min_score": 0.5 / 256},
        {"limit": 50, "min_score": 100.5 / 256},
        {"limit": 5, "min_score": 1.0},  # nothing scores that high
        {"limit": 0, "min_score": -1.0},
        {"limit": 8, "min_score": -1.0, "with_user_only": True},
        {"limit": 8, "min_score": -0.5 / 256, "with_user_only": True},
    ],
)
def test_search_matches_brute_force_with_ties(
    store: Store, cid: str, rng: np.random.Generator, kwargs: dict[str, object]
) -> None:
    query = unit_vectors(rng, 1)[0]
    faces = tied_faces(rng, query, n=300, distinct=60)  # about 5 faces per vector: ties everywhere
    store.create_user(cid, "u1")
    store.add_faces(cid, faces)
    assert_search_matches(store, cid, faces, query, **kwargs)
    excluded = brute_force(faces, query, 3, -1.0)[1][0]
    assert_search_matches(store, cid, faces, query, exclude_face_id=excluded, **kwargs)


def test_search_breaks_a_tie_cut_by_the_limit_by_face_id(store: Store, cid: str, rng: np.random.Generator) -> None:
    query = unit_vectors(rng, 1)[0]
    v = with_cosines(rng, query, [0.9, 0.5])
    faces = [face(v[0]), *(face(v[1]) for _ in range(9))]
    store.add_faces(cid, faces)
    got = store.search(cid, query, 4, 0.0)
    assert [s.face.face_id for s in got] == [faces[0].face_id, *sorted(ids(faces[1:]))[:3]]
    assert got[1].score == got[2].score == got[3].score


def test_search_scores_equal_vectors_equally(store: Store, cid: str, rng: np.random.Generator) -> None:
    # Equal vectors must tie exactly wherever they sit (a BLAS matrix product may round rows differently).
    twin = unit_vectors(rng, 1)[0]
    faces = [*random_faces(rng, 10), *(face(twin) for _ in range(1021))]  # twins in every row position
    store.add_faces(cid, faces)
    for query in unit_vectors(rng, 5):
        got = store.search(cid, query, len(faces), -1.0)
        twins = [s for s in got if np.array_equal(s.face.vector, twin)]
        assert len({s.score for s in twins}) == 1
        assert [s.face.face_id for s in twins] == sorted(s.face.face_id for s in twins)


def test_search_random_vectors(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 500)
    store.add_faces(cid, faces)
    probe = faces[17]
    assert_search_matches(store, cid, faces, unit_vectors(rng, 1)[0], limit=20, min_score=-1.0)
    got = store.search(cid, probe.vector, 5, 0.0)
    assert got[0].face.face_id == probe.face_id and got[0].score == pytest.approx(1.0, abs=1e-5)
    assert_search_matches(store, cid, faces, probe.vector, limit=20, min_score=0.0, exclude_face_id=probe.face_id)


def test_search_min_score_is_inclusive(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 50)
    store.add_faces(cid, faces)
    query = unit_vectors(rng, 1)[0]
    ranked = store.search(cid, query, 50, -1.0)
    for s in (ranked[0].score, ranked[10].score, ranked[-1].score):
        got = store.search(cid, query, 50, s)
        assert [x.face.face_id for x in got] == [x.face.face_id for x in ranked if x.score >= s]
        assert got[-1].score == s
        just_above = math.nextafter(s, 2.0)  # rounds to s in float32: compare as given, not as float32
        assert [x.face.face_id for x in store.search(cid, query, 50, just_above)] == [
            x.face.face_id for x in ranked if x.score > s
        ]


def test_search_of_an_empty_collection(store: Store, cid: str) -> None:
    assert store.search(cid, _VECTOR, 10, -1.0) == []


def test_search_follows_writes(store: Store, cid: str, rng: np.random.Generator) -> None:
    query = unit_vectors(rng, 1)[0]
    faces = tied_faces(rng, query, n=40, distinct=30, users=0)
    store.create_user(cid, "u1")
    store.add_faces(cid, faces[:20])
    assert_search_matches(store, cid, faces[:20], query, limit=10, min_score=-1.0)
    store.add_faces(cid, faces[20:])
    assert_search_matches(store, cid, faces, query, limit=10, min_score=-1.0)
    best = store.search(cid, query, 3, -1.0)
    store.delete_faces(cid, [best[0].face.face_id])
    alive = [f for f in faces if f.face_id != best[0].face.face_id]
    assert_search_matches(store, cid, alive, query, limit=10, min_score=-1.0)
    assert store.search(cid, query, 10, -1.0, with_user_only=True) == []
    store.associate_faces(cid, "u1", [best[2].face.face_id])
    assert [s.face.face_id for s in store.search(cid, query, 10, -1.0, with_user_only=True)] == [best[2].face.face_id]
    store.disassociate_faces(cid, "u1", [best[2].face.face_id])
    assert store.search(cid, query, 10, -1.0, with_user_only=True) == []


def test_search_sees_writes_of_another_instance(open_store: Callable[[], Store], rng: np.random.Generator) -> None:
    mine, theirs = open_store(), open_store()
    mine.create_collection(collection("c1"))
    query = unit_vectors(rng, 1)[0]
    faces = tied_faces(rng, query, n=30, distinct=30, users=0)
    mine.add_faces("c1", faces[:10])
    assert_search_matches(mine, "c1", faces[:10], query, limit=100, min_score=-1.0)  # cached now

    theirs.add_faces("c1", faces[10:])
    assert_search_matches(mine, "c1", faces, query, limit=100, min_score=-1.0)
    gone = ids(faces[::3])
    theirs.delete_faces("c1", gone)
    alive = [f for f in faces if f.face_id not in gone]
    assert_search_matches(mine, "c1", alive, query, limit=100, min_score=-1.0)

    theirs.create_user("c1", "u1")
    theirs.associate_faces("c1", "u1", ids(alive[:2]))
    got = mine.search("c1", query, 100, -1.0, with_user_only=True)
    assert sorted(s.face.face_id for s in got) == sorted(ids(alive[:2]))
    assert all(s.face.user_id == "u1" for s in got)

    # Deleted and created again with as many writes: must not pass for the cached collection.
    theirs.delete_collection("c1")
    with pytest.raises(ResourceNotFoundException):
        mine.search("c1", query, 100, -1.0)
    theirs.create_collection(collection("c1"))
    fresh = tied_faces(rng, query, n=10, distinct=10, users=0)
    theirs.add_faces("c1", fresh)
    assert_search_matches(mine, "c1", fresh, query, limit=100, min_score=-1.0)


def test_search_cache_is_not_fooled_by_a_recreated_collection(
    open_store: Callable[[], Store], rng: np.random.Generator
) -> None:
    mine, theirs = open_store(), open_store()
    mine.create_collection(collection("c1"))
    query = unit_vectors(rng, 1)[0]
    old = tied_faces(rng, query, n=5, distinct=5, users=0)
    mine.add_faces("c1", old)
    assert_search_matches(mine, "c1", old, query, limit=10, min_score=-1.0)
    theirs.delete_collection("c1")  # mine does not search in between
    theirs.create_collection(collection("c1"))
    new = tied_faces(rng, query, n=5, distinct=5, users=0)
    theirs.add_faces("c1", new)  # the same number of writes as before
    assert_search_matches(mine, "c1", new, query, limit=10, min_score=-1.0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.lists(st.sampled_from(["add", "add many", "delete", "associate", "disassociate"]), max_size=10),
)
def test_search_follows_any_writes_of_two_instances(
    open_store: Callable[[], Store], seed: int, steps: list[str]
) -> None:
    """Whatever mix of writes either instance makes, each search (of either, cached or not)
    answers as brute force over the faces as they are."""
    rng = np.random.default_rng(seed)
    instances = [open_store(), open_store()]
    cid = f"mix-{uuid.uuid4()}"  # the database is shared by the examples
    instances[0].create_collection(collection(cid))
    instances[0].create_user(cid, "u1")
    query = unit_vectors(rng, 1)[0]
    pool = iter(tied_faces(rng, query, n=200, distinct=60, users=0))
    held: dict[str, StoredFace] = {}
    for step in ["add", *steps]:
        writer = instances[int(rng.integers(2))]
        alive = sorted(held)
        if step.startswith("add"):
            new = [next(pool) for _ in range(20 if step == "add many" else 2)]
            writer.add_faces(cid, new)
            held.update((f.face_id, f) for f in new)
        elif step == "delete" and alive:
            gone = [alive[int(i)] for i in rng.choice(len(alive), size=min(3, len(alive)), replace=False)]
            writer.delete_faces(cid, gone)
            for face_id in gone:
                del held[face_id]
        elif step == "associate" and (free := [i for i in alive if held[i].user_id is None]):
            writer.associate_faces(cid, "u1", free[:2])
            held.update((i, replace(held[i], user_id="u1")) for i in free[:2])
        elif step == "disassociate" and (taken := [i for i in alive if held[i].user_id == "u1"]):
            writer.disassociate_faces(cid, "u1", taken[:1])
            held[taken[0]] = replace(held[taken[0]], user_id=None)
        for searcher in instances:
            assert_search_matches(searcher, cid, list(held.values()), query, limit=8, min_score=-1.0)
            assert_search_matches(
                searcher, cid, list(held.values()), query, limit=8, min_score=-1.0, with_user_only=True
            )


def change_log_length(store: Store, collection_id: str) -> int:
    sql_ = "SELECT count(*) FROM face_changes c JOIN collections k ON k.pk = c.collection_pk WHERE k.collection_id = ?"
    return int(
        store._run(lambda con: dialect_sql(con, store.dialect, sql_, (collection_id,)).fetchone()[0], write=False)
    )  # type: ignore[attr-defined]


def test_writes_to_other_collections_do_not_trim_a_collections_log(
    store: Store, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite numbers every collection's changes in one sequence: a collection's log is trimmed
    by how many changes it holds, not by how far the numbers moved on in between."""
    monkeypatch.setattr(collection_indexes, "KEEP_CHANGES", 20)
    for name in ("quiet", "busy"):
        store.create_collection(collection(name))
    store.add_faces("quiet", random_faces(rng, 5))
    for _ in range(30):  # 60 changes, and no face left
        (face_,) = random_faces(rng, 1)
        store.add_faces("busy", [face_])
        store.delete_faces("busy", [face_.face_id])
    store.add_faces("quiet", random_faces(rng, 1))
    assert change_log_length(store, "quiet") == 6
    assert change_log_length(store, "busy") <= 2 * 20 + 1


@pytest.mark.parametrize("searched", [True, False], ids=["searched", "never-searched"])
def test_the_change_log_of_a_small_collection_is_trimmed(
    open_store: Callable[[], Store], rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, searched: bool
) -> None:
    """No vector index reads a small collection's log: the writes themselves trim it to
    about as many changes as the collection has faces (at least KEEP_CHANGES), whether or
    not it is searched, instead of letting it grow with every write. An instance whose
    cache the trim left behind reads the collection whole again, and answers right."""
    monkeypatch.setattr(collection_indexes, "KEEP_CHANGES", 20)
    mine, behind = open_store(), open_store()
    mine.create_collection(collection("c1"))
    query = unit_vectors(rng, 1)[0]
    faces = tied_faces(rng, query, n=10, distinct=10, users=0)
    mine.add_faces("c1", faces)
    assert_search_matches(behind, "c1", faces, query, limit=5, min_score=-1.0)  # caches the first ten
    for _ in range(60):
        new = face(unit_vectors(rng, 1)[0])
        mine.add_faces("c1", [new])
        mine.delete_faces("c1", [faces[0].face_id])
        faces = [*faces[1:], new]
        if searched:
            assert_search_matches(mine, "c1", faces, query, limit=5, min_score=-1.0)
        assert change_log_length(mine, "c1") <= 2 * 20 + 1  # one change a write: trimmed when it reaches 41
    assert change_log_length(mine, "c1") >= 20  # what the log keeps
    assert_search_matches(behind, "c1", faces, query, limit=5, min_score=-1.0)
    assert_search_matches(mine, "c1", faces, query, limit=5, min_score=-1.0)


def test_cached_vectors_are_caught_up_not_reread(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write to a small collection costs the embedded store's next search the changed
    faces only: its cached vectors of the collection are read whole once. (PostgreSQL
    scans a small collection in SQL and keeps no vectors in memory.)"""
    store = SQLiteStore(tmp_path / "visage.db")
    reads: list[bool] = []  # users_only of each whole read
    load = sqlite_search._Exact.load.__func__  # type: ignore[attr-defined]

    def counted(cls: type, con: sqlite3.Connection, stamp: tuple[int, int], users_only: bool = False) -> object:
        reads.append(users_only)
        return load(cls, con, stamp, users_only)

    monkeypatch.setattr(sqlite_search._Exact, "load", classmethod(counted))
    store.create_collection(collection("c1"))
    store.create_user("c1", "u1")
    query = unit_vectors(rng, 1)[0]
    faces = tied_faces(rng, query, n=30, distinct=30, users=0)
    assert store.search("c1", query, 5, -1.0) == []  # cached: no faces
    store.add_faces("c1", faces[:20])
    assert_search_matches(store, "c1", faces[:20], query, limit=5, min_score=-1.0)
    store.add_faces("c1", faces[20:])
    store.delete_faces("c1", ids(faces[:5]))
    assert_search_matches(store, "c1", faces[5:], query, limit=5, min_score=-1.0)
    store.associate_faces("c1", "u1", ids(faces[5:7]))
    assert_search_matches(store, "c1", faces[5:], query, limit=5, min_score=-1.0)
    assert reads == [False]
    users = [replace(f, user_id="u1") for f in faces[5:7]]
    assert_search_matches(store, "c1", users, query, limit=5, min_score=-1.0, with_user_only=True)
    assert reads == [False, True]  # users' faces: read whole after any write

    # A search in a transaction older than the cache (another thread caught it up meanwhile)
    # starts from the version the cache replaced, not from a whole read.
    older = sqlite3.connect(store.path, isolation_level=None)
    older.execute("BEGIN")
    before = older.execute("SELECT count(*) FROM faces").fetchone()[0]  # its snapshot, from here on
    store.add_faces("c1", [face(unit_vectors(rng, 1)[0])])
    assert len(store.search("c1", query, 50, -1.0)) == before + 1  # the cache moves on
    _, best = store.searcher.top(older, "c1", query, 50, -1.0, None, False)
    older.rollback()
    assert [face_id for face_id, _ in best] == [face_id for face_id, _ in brute_force(faces[5:], query, 50, -1.0)]
    assert reads == [False, True]
    assert "c1" in store.searcher._older
    store.search("c1", query, 5, -1.0)  # finds the cache current: the version before is let go
    assert "c1" not in store.searcher._older
    store.close()


# Big collections: through the vector index each process keeps, fed by the change log -------

BIG = 300  # the exact-search limit of these tests: bigger collections go through the vector index


def vector_indexes(store: Store) -> CollectionIndexes:
    return store.searcher.indexes if isinstance(store, SQLiteStore) else store.indexes  # type: ignore[attr-defined]


def clustered_faces(rng: np.random.Generator, people: int, per_person: int) -> list[StoredFace]:
    """Face-like vectors: a few noisy samples around each person's centre."""
    centres = unit_vectors(rng, people).astype(np.float64)
    samples = np.repeat(centres, per_person, axis=0) + 0.08 * rng.standard_normal((people * per_person, DIM))
    return [face(v) for v in (samples / np.linalg.norm(samples, axis=1, keepdims=True)).astype(np.float32)]


def assert_best_is_found(store: Store, collection_id: str, faces: Sequence[StoredFace], probes: Sequence[int]) -> None:
    """Each probe face, searched for, comes first with its exact score; nothing else is returned above it."""
    for i in probes:
        got = store.search(collection_id, faces[i].vector, 5, -1.0)
        want = brute_force(faces, faces[i].vector, 5, -1.0)
        assert got[0].face.face_id == want[0][0] == faces[i].face_id
        assert [s.score for s in got] == pytest.approx([score for _, score in want], abs=1e-6)


def test_indexed_search_sees_writes_of_another_instance(
    open_store: Callable[..., Store], rng: np.random.Generator
) -> None:
    mine, theirs = open_store(exact_search_limit=BIG), open_store(exact_search_limit=BIG)
    mine.create_collection(collection("big"))
    faces = clustered_faces(rng, 200, 2)
    mine.add_faces("big", faces)
    assert_best_is_found(mine, "big", faces, range(0, 400, 37))  # builds mine's index
    assert len(vector_indexes(mine)._ann) == 1

    newcomers = clustered_faces(rng, 10, 1)
    theirs.add_faces("big", newcomers)
    gone = ids(faces[::50])
    assert theirs.delete_faces("big", gone) == gone
    alive = [f for f in faces if f.face_id not in gone] + newcomers
    assert_best_is_found(mine, "big", alive, range(len(alive) - 10, len(alive)))
    for f in faces[::50]:
        assert f.face_id not in ids([s.face for s in mine.search("big", f.vector, 20, -1.0)])
    (index,) = [ann.index for ann in vector_indexes(mine)._ann.values()]
    assert len(index) == len(alive) == mine.count("big")[0]  # caught up, not rebuilt from scratch alone

    # A delete of the whole collection: the other instance follows, and at its next search of
    # a big collection (at most every sweep_seconds) lets go of the deleted one's index.
    mine.create_collection(collection("other"))
    mine.add_faces("other", clustered_faces(rng, 200, 2))
    theirs.delete_collection("big")
    with pytest.raises(ResourceNotFoundException):
        mine.search("big", faces[0].vector, 5, -1.0)
    indexes = vector_indexes(mine)
    (big_pk,) = indexes.held
    mine.search("other", faces[0].vector, 5, -1.0)
    assert big_pk in indexes.held and len(indexes.held) == 2  # not yet: the last look was under a minute ago
    if indexes.index_dir is not None:  # a save made after the delete's discard (by a search begun before it)
        index.save(indexes.index_dir, str(big_pk))
        assert list(indexes.index_dir.glob(f"{big_pk}.*"))
    indexes.sweep_seconds = 0.0
    indexes._next_sweep = 0.0
    mine.search("other", faces[0].vector, 5, -1.0)
    assert big_pk not in indexes.held and len(indexes.held) == 1
    if indexes.index_dir is not None:
        assert not list(indexes.index_dir.glob(f"{big_pk}.*"))


def test_indexed_search_is_exact_among_its_candidates(
    open_store: Callable[..., Store], rng: np.random.Generator
) -> None:
    store = open_store(exact_search_limit=BIG)
    store.create_collection(collection("big"))
    faces = [face(v, user_id="u1" if i % 40 == 0 else None) for i, v in enumerate(unit_vectors(rng, 600))]
    store.create_user("big", "u1")
    store.add_faces("big", faces)
    for query in [*unit_vectors(rng, 5), faces[17].vector]:
        got = store.search("big", query, 10, -1.0)
        exact = dict(brute_force(faces, query, len(faces), -1.0))
        assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
        assert all(s.score == pytest.approx(exact[s.face.face_id], abs=1e-6) for s in got)
        # Users' faces are few, and searched exactly even in a big collection.
        assert_search_matches(store, "big", faces, query, limit=5, min_score=-1.0, with_user_only=True)
    best = store.search("big", faces[17].vector, 3, 0.0, exclude_face_id=faces[17].face_id)
    assert faces[17].face_id not in ids([s.face for s in best])
    assert all(s.score >= 0.25 for s in store.search("big", faces[3].vector, 50, 0.25))


def test_an_index_that_disagrees_with_the_database_is_rebuilt(
    open_store: Callable[..., Store], rng: np.random.Generator
) -> None:
    store = open_store(exact_search_limit=BIG)
    store.create_collection(collection("big"))
    faces = clustered_faces(rng, 200, 2)
    store.add_faces("big", faces)
    assert_best_is_found(store, "big", faces, [5])
    (pk,) = vector_indexes(store)._ann
    lost = vector_indexes(store)._ann[pk].index
    key = int(lost.search(faces[5].vector, 1, -1.0).keys[0])
    lost.remove(np.array([key]))  # the index lost a face the database holds
    assert_best_is_found(store, "big", faces, [5])
    assert vector_indexes(store)._ann[pk].index is not lost  # rebuilt

    # The log trimmed past what the index applied (a process that was away too long): rebuilt too.
    behind = vector_indexes(store)._ann[pk].index
    other = open_store(exact_search_limit=BIG)
    newcomer = clustered_faces(rng, 1, 1)
    other.add_faces("big", newcomer)
    trim = (
        "UPDATE collections SET changes_trimmed_to ="
        " (SELECT max(seq) FROM face_changes WHERE face_changes.collection_pk = collections.pk)",
        "DELETE FROM face_changes",
    )
    for statement in trim:
        other._run(lambda con, q=statement: dialect_sql(con, other.dialect, q), write=True)  # type: ignore[attr-defined]
    assert store.search("big", newcomer[0].vector, 1, -1.0)[0].face.face_id == newcomer[0].face_id
    assert vector_indexes(store)._ann[pk].index is not behind


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 80),
    distinct=st.integers(1, 40),
    limit=st.integers(0, 90),
    min_step=st.integers(-256, 255),
    exclude=st.booleans(),
    with_user_only=st.booleans(),
)
def test_search_equals_brute_force_property(
    store: Store,
    seed: int,
    n: int,
    distinct: int,
    limit: int,
    min_step: int,
    exclude: bool,
    with_user_only: bool,
) -> None:
    rng = np.random.default_rng(seed)
    collection_id = f"prop-{uuid.uuid4()}"  # the store is shared by the examples
    store.create_collection(collection(collection_id))
    query = unit_vectors(rng, 1)[0]
    faces = tied_faces(rng, query, n=n, distinct=distinct)
    store.add_faces(collection_id, faces)
    assert_search_matches(
        store,
        collection_id,
        faces,
        query,
        limit=limit,
        min_score=(min_step + 0.5) / 256,
        exclude_face_id=faces[len(faces) // 2].face_id if exclude and faces else None,
        with_user_only=with_user_only,
    )


# Users ---------------------------------------------------------------------------------


def test_users_lifecycle(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 4)
    store.add_faces(cid, faces)
    store.create_user(cid, "alice")
    with pytest.raises(ConflictException, match="alice"):
        store.create_user(cid, "alice")
    assert store.get_user(cid, "alice") == User("alice", "CREATED", 0)

    store.associate_faces(cid, "alice", ids(faces[:3]))
    assert store.get_user(cid, "alice") == User("alice", "ACTIVE", 3)
    assert store.count(cid) == (4, 1)
    store.disassociate_faces(cid, "alice", ids(faces[:2]))
    assert store.get_user(cid, "alice") == User("alice", "ACTIVE", 1)
    store.disassociate_faces(cid, "alice", ids(faces[2:3]))
    assert store.get_user(cid, "alice") == User("alice", "CREATED", 0)
    assert all(f.user_id is None for f in store.list_faces(cid, None, 10))


def test_disassociate_touches_only_that_users_faces(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 2)
    store.add_faces(cid, faces)
    store.create_user(cid, "alice")
    store.create_user(cid, "bob")
    store.associate_faces(cid, "alice", ids(faces[:1]))
    store.associate_faces(cid, "bob", ids(faces[1:]))
    store.disassociate_faces(cid, "alice", ids(faces))
    assert {f.face_id: f.user_id for f in store.list_faces(cid, None, 10)} == {
        faces[0].face_id: None,
        faces[1].face_id: "bob",
    }


def test_associate_leaves_another_users_face_theirs(store: Store, cid: str, rng: np.random.Generator) -> None:
    """A face another user took after the service checked it (a request at the same time) stays theirs."""
    faces = random_faces(rng, 2)
    store.add_faces(cid, faces)
    store.create_user(cid, "alice")
    store.create_user(cid, "bob")
    store.associate_faces(cid, "bob", ids(faces[:1]))
    store.associate_faces(cid, "alice", ids(faces))
    assert {f.face_id: f.user_id for f in store.list_faces(cid, None, 10)} == {
        faces[0].face_id: "bob",
        faces[1].face_id: "alice",
    }


def test_associate_past_max_faces_writes_nothing(store: Store, cid: str, rng: np.random.Generator) -> None:
    """The limit is checked in the write itself, so two requests at once cannot together pass it."""
    faces = random_faces(rng, 5)
    store.add_faces(cid, faces)
    store.create_user(cid, "alice")
    store.associate_faces(cid, "alice", ids(faces[:2]), max_faces=3)
    with pytest.raises(ServiceQuotaExceededException) as refused:
        store.associate_faces(cid, "alice", ids(faces[2:]), max_faces=3)
    assert refused.value.message == "User alice would hold 5 faces; the limit is 3 faces per user."
    assert store.get_user(cid, "alice") == User("alice", "ACTIVE", 2)
    store.associate_faces(cid, "alice", ids(faces[2:3]), max_faces=3)  # up to the limit is fine
    assert store.get_user(cid, "alice") == User("alice", "ACTIVE", 3)


def test_delete_user_keeps_its_faces(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 3)
    store.add_faces(cid, faces)
    store.create_user(cid, "alice")
    store.associate_faces(cid, "alice", ids(faces[:2]))
    store.delete_user(cid, "alice")
    with pytest.raises(ResourceNotFoundException, match="alice"):
        store.get_user(cid, "alice")
    with pytest.raises(ResourceNotFoundException, match="alice"):
        store.delete_user(cid, "alice")
    assert store.count(cid) == (3, 0)
    assert all(f.user_id is None for f in store.list_faces(cid, None, 10))
    store.create_user(cid, "alice")  # the id is free again, with no faces
    assert store.get_user(cid, "alice") == User("alice", "CREATED", 0)


def test_face_writes_on_a_missing_user_are_not_found(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 1)
    store.add_faces(cid, faces)
    for call in (store.associate_faces, store.disassociate_faces):
        with pytest.raises(ResourceNotFoundException, match="ghost"):
            call(cid, "ghost", ids(faces))
    assert store.list_faces(cid, None, 10)[0].user_id is None


def test_list_users_pages_with_counts(store: Store, cid: str, rng: np.random.Generator) -> None:
    names = ["mallory", "alice", "bob", "eve", "carol", "dave", "trent"]
    for name in names:
        store.create_user(cid, name)
    faces = random_faces(rng, 2)
    store.add_faces(cid, faces)
    store.associate_faces(cid, "carol", ids(faces))
    pages, after = [], None
    while page := store.list_users(cid, after, 3):
        pages.append(page)
        after = page[-1].user_id
    assert [len(p) for p in pages] == [3, 3, 1]
    users = [u for page in pages for u in page]
    assert [u.user_id for u in users] == sorted(names)
    assert {u.user_id: (u.status, u.face_count) for u in users}["carol"] == ("ACTIVE", 2)
    assert all(u.status == "CREATED" and u.face_count == 0 for u in users if u.user_id != "carol")
    assert store.list_users(cid, "trent", 10) == []


# Tokens --------------------------------------------------------------------------------


def test_tokens_are_recorded_with_user_writes(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 1)
    store.add_faces(cid, faces)
    tokens = [
        RequestToken("t-create", "CreateUser", "d1"),
        RequestToken("t-assoc", "AssociateFaces", "d2"),
        RequestToken("t-disassoc", "DisassociateFaces", "d3"),
        RequestToken("t-delete", "DeleteUser", "d4"),
    ]
    store.create_user(cid, "alice", tokens[0])
    store.associate_faces(cid, "alice", ids(faces), tokens[1])
    store.disassociate_faces(cid, "alice", ids(faces), tokens[2])
    store.delete_user(cid, "alice", tokens[3])
    for token in tokens:
        assert store.get_token(cid, token.token) == token
    assert store.get_token(cid, "never-used") is None
    store.create_collection(collection("other"))
    assert store.get_token("other", "t-create") is None  # tokens belong to one collection


def test_a_failed_write_records_no_token(store: Store, cid: str) -> None:
    store.create_user(cid, "alice")
    with pytest.raises(ConflictException):
        store.create_user(cid, "alice", RequestToken("t1", "CreateUser", "d"))
    with pytest.raises(ResourceNotFoundException):
        store.delete_user(cid, "bob", RequestToken("t2", "DeleteUser", "d"))
    assert store.get_token(cid, "t1") is None
    assert store.get_token(cid, "t2") is None


def test_a_replayed_token_skips_the_write(store: Store, cid: str) -> None:
    # Two identical requests that both passed the service's get_token check: the second is a no-op.
    token = RequestToken("t1", "CreateUser", "d")
    store.create_user(cid, "alice", token)
    store.create_user(cid, "alice", token)  # no ConflictException
    assert store.count(cid) == (0, 1)
    with pytest.raises(IdempotentParameterMismatchException, match="t1"):
        store.create_user(cid, "bob", RequestToken("t1", "CreateUser", "other digest"))
    with pytest.raises(IdempotentParameterMismatchException, match="t1"):
        store.delete_user(cid, "alice", RequestToken("t1", "DeleteUser", "d"))
    assert store.count(cid) == (0, 1)


def test_a_token_keeps_the_response_it_was_answered_with(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 1)
    store.add_faces(cid, faces)
    store.create_user(cid, "alice")
    token = RequestToken("t1", "AssociateFaces", "d")
    store.associate_faces(cid, "alice", ids(faces), token=token)
    assert store.get_token(cid, "t1") == token and store.get_token(cid, "t1").response is None
    store.set_token_response(cid, "t1", '{"UserStatus": "ACTIVE"}')
    kept = store.get_token(cid, "t1")
    assert (kept.operation, kept.request_digest, kept.response) == ("AssociateFaces", "d", '{"UserStatus": "ACTIVE"}')
    store.associate_faces(cid, "alice", ids(faces), token=token)  # the same request again: still a replay
    assert store.get_token(cid, "t2") is None


# Tags ----------------------------------------------------------------------------------


def test_tags(store: Store) -> None:
    store.create_collection(collection("c1", tags={"a": "1"}))
    store.set_tags("c1", {"b": "2", "a": "one"})
    assert store.get_collection("c1").tags == {"a": "one", "b": "2"}
    store.remove_tags("c1", ["a", "not-there"])
    assert store.get_collection("c1").tags == {"b": "2"}
    assert store.list_collections(None, 10)[0].tags == {"b": "2"}
    store.set_tags("c1", {})
    assert store.get_collection("c1").tags == {"b": "2"}


# Audit log -----------------------------------------------------------------------------


# Thumbnails and reviews ------------------------------------------------------------------


def test_collection_keeps_its_thumbnail_setting(store: Store) -> None:
    store.create_collection(replace(collection("on"), keep_face_thumbnails=True))
    store.create_collection(collection("default"))
    assert store.get_collection("on").keep_face_thumbnails is True
    assert store.get_collection("default").keep_face_thumbnails is None
    store.set_keep_face_thumbnails("default", False)
    assert store.get_collection("default").keep_face_thumbnails is False
    store.set_keep_face_thumbnails("on", None)
    assert [c.keep_face_thumbnails for c in store.list_collections(None, 10)] == [False, None]


def test_faces_keep_when_they_were_indexed(store: Store, cid: str, rng: np.random.Generator) -> None:
    moment = datetime(2026, 5, 4, 3, 2, 1, 654321, tzinfo=timezone(timedelta(hours=2)))
    stamped = [replace(f, indexed_at=moment) for f in random_faces(rng, 2)]
    store.add_faces(cid, stamped)
    got = store.get_faces(cid, ids(stamped))
    assert {f.indexed_at for f in got} == {moment}
    assert all(f.indexed_at is not None and f.indexed_at.utcoffset() == timedelta(0) for f in got)


def test_thumbnails_are_stored_with_their_faces_and_go_with_them(
    store: Store, cid: str, rng: np.random.Generator
) -> None:
    faces = random_faces(rng, 3)
    jpegs = {faces[0].face_id: b"\xff\xd8first", faces[1].face_id: b"\xff\xd8second"}
    store.add_faces(cid, faces, thumbnails=jpegs)
    assert store.get_thumbnails(cid, ids(faces)) == jpegs
    assert store.get_thumbnails(cid, []) == {}
    store.delete_faces(cid, ids(faces[:1]))
    assert store.get_thumbnails(cid, ids(faces)) == {faces[1].face_id: b"\xff\xd8second"}


def test_a_failed_add_faces_keeps_no_thumbnail(store: Store, cid: str, rng: np.random.Generator) -> None:
    first = random_faces(rng, 1)
    store.add_faces(cid, first)
    batch = [*random_faces(rng, 1), replace(first[0], vector=unit_vectors(rng, 1)[0])]  # the second id is taken
    with pytest.raises(ConflictException):
        store.add_faces(cid, batch, thumbnails={batch[0].face_id: b"jpeg"})
    assert store.get_thumbnails(cid, ids(batch)) == {}


def test_deleting_a_user_deletes_its_faces_thumbnails_but_not_its_faces(
    store: Store, cid: str, rng: np.random.Generator
) -> None:
    faces = random_faces(rng, 3)
    store.add_faces(cid, faces, thumbnails={f.face_id: f.face_id.encode() for f in faces})
    store.create_user(cid, "alice")
    store.associate_faces(cid, "alice", ids(faces[:2]))
    store.delete_user(cid, "alice")
    assert len(store.get_faces(cid, ids(faces))) == 3
    assert store.get_thumbnails(cid, ids(faces)) == {faces[2].face_id: faces[2].face_id.encode()}


def test_thumbnails_and_reviews_go_with_their_collection(store: Store, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 2)
    store.create_collection(collection("c1"))
    store.add_faces("c1", faces, thumbnails={faces[0].face_id: b"jpeg"})
    store.add_review(review("c1", faces[0].face_id), decided(review("c1", faces[0].face_id)))
    store.delete_collection("c1")
    store.create_collection(collection("c1"))
    store.add_faces("c1", faces)  # the same face ids in the new collection
    assert store.get_thumbnails("c1", ids(faces)) == {}
    assert store.reviews("c1") == []


def test_reviews_are_kept_in_order_and_outlive_their_face(store: Store, cid: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 2)
    store.add_faces(cid, faces)
    other = "cd" * 32
    written = [
        review(cid, faces[0].face_id, "same", note="same scar <b>over</b> the left eye"),
        review(cid, faces[1].face_id, "different", similarity=99.125, time=T0 + timedelta(seconds=1)),
        review(cid, faces[1].face_id, "cannot_tell", probe=other, time=T0 + timedelta(seconds=2)),
    ]
    for r in written:
        store.add_review(r, decided(r))
    store.delete_faces(cid, ids(faces))
    assert store.reviews(cid) == written
    assert store.reviews(cid, probe_sha256=other) == written[2:]
    assert [a.details["decision"] for a in store.audit_records(operation="ReviewMatch")] == [
        r.decision for r in written
    ]
    with pytest.raises(Exception, match=r"(?i)check"):  # the database refuses a decision it does not know
        store.add_review(review(cid, faces[0].face_id, "maybe"), decided(review(cid, faces[0].face_id, "maybe")))
    # A decision and its audit record are written together or not at all.
    assert len(store.audit_records(operation="ReviewMatch")) == len(written)
    unwritable = review(cid, faces[0].face_id, time=T0 + timedelta(seconds=3))
    with pytest.raises(TypeError):
        store.add_review(unwritable, decided(unwritable, note=object()))  # its record cannot be written
    assert store.reviews(cid) == written


def test_audit_records_are_kept_in_time_order(store: Store) -> None:
    def record(minutes: int, operation: str, **kwargs: object) -> AuditRecord:
        base = {
            "time": T0 + timedelta(minutes=minutes),
            "access_key_id": "AKIDEXAMPLE",
            "operation": operation,
            "collection_id": "c1",
            "threshold": 80.0,
            "match_count": 2,
            "best_similarity": 99.5,
            "face_ids": ["f1", "f2"],
            "user_ids": ["u1"],
        }
        return AuditRecord(**{**base, **kwargs})  # type: ignore[arg-type]

    late = record(10, "SearchUsers")
    early = record(0, "SearchFaces")
    middle = record(
        5,
        "SearchFacesByImage",
        collection_id=None,
        threshold=None,
        match_count=0,
        best_similarity=None,
        face_ids=[],
        user_ids=[],
    )
    tie = record(5, "CompareFaces")
    for r in (late, early, middle, tie):
        store.append_audit(r)
    assert store.audit_records() == [early, middle, tie, late]
    assert store.audit_records(since=T0 + timedelta(minutes=5)) == [middle, tie, late]
    assert store.audit_records(since=T0 + timedelta(minutes=5, microseconds=1)) == [late]
    in_paris = (T0 + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=1)))
    assert store.audit_records(since=in_paris) == [middle, tie, late]
    assert all(r.time.utcoffset() == timedelta(0) for r in store.audit_records())


def audit(minutes: int = 0, **kwargs: object) -> AuditRecord:
    base: dict[str, object] = {
        "time": T0 + timedelta(minutes=minutes),
        "access_key_id": "VSAKEXAMPLE",
        "operation": "SearchFacesByImage",
        "collection_id": "c1",
        "threshold": 80.0,
        "match_count": 1,
        "best_similarity": 99.25,
        "face_ids": ["f1"],
        "user_ids": [],
    }
    return AuditRecord(**{**base, **kwargs})  # type: ignore[arg-type]


def test_audit_records_carry_probe_outcome_and_details(store: Store) -> None:
    searched = audit(probe_sha256="ab" * 32, details={"target_sha256": "cd" * 32, "n": 2, "nested": {"ok": True}})
    refused = audit(1, outcome="refused", threshold=None, match_count=0, best_similarity=None, face_ids=[])
    store.append_audit(searched)
    store.append_audit(refused)
    assert store.audit_records() == [searched, refused]
    assert [r.seq for r in store.audit_records()] == [1, 2]


def test_audit_records_filter_and_page(store: Store) -> None:
    records = [
        audit(i, access_key_id=f"K{i % 2}", operation=("SearchFaces", "CompareFaces")[i % 3 == 0], outcome="ok")
        for i in range(10)
    ]
    records[4] = replace(records[4], outcome="refused", collection_id="c2")
    for r in records:
        store.append_audit(r)
    assert store.audit_records(access_key_id="K1") == records[1::2]
    assert store.audit_records(operation="CompareFaces") == [records[i] for i in (0, 3, 6, 9)]
    assert store.audit_records(outcome="refused") == [records[4]]
    assert store.audit_records(collection_id="c2") == [records[4]]
    assert store.audit_records(until=T0 + timedelta(minutes=3)) == records[:3]
    assert store.audit_records(T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5), access_key_id="K0") == [
        records[2],
        records[4],
    ]
    assert store.audit_records(limit=3, offset=2) == records[2:5]
    assert store.audit_records(newest_first=True, limit=2) == [records[9], records[8]]
    assert store.audit_records(offset=8) == records[8:]


def test_audit_log_is_a_hash_chain(store: Store) -> None:
    from visage.store.audit_chain import GENESIS, record_hash

    appended = [store.append_audit(audit(i, details={"i": i})) for i in range(5)]
    entries = store.audit_entries()
    assert entries == appended
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert entries[0].prev_hash == GENESIS
    for before, entry in itertools.pairwise(entries):
        assert entry.prev_hash == before.hash
    for entry in entries:
        assert entry.hash == record_hash(entry.record, entry.prev_hash or "")
    assert store.audit_entries(after_seq=entries[1].seq, limit=2) == entries[2:4]


_AUDIT_WRITER = """
import sys
from datetime import UTC, datetime
from visage.store.base import AuditRecord
from visage.store.postgres import PostgresStore
from visage.store.sqlite import SQLiteStore

where, writer, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = PostgresStore(where) if where.startswith("postgresql://") else SQLiteStore(where)
for i in range(n):
    store.append_audit(AuditRecord(datetime.now(UTC), writer, "SearchFaces", "c1", 80.0, 0, None, [], [], details={"i": i}))
store.close()
"""


def test_concurrent_appends_never_fork_the_chain(
    open_store: Callable[[], Store], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Threads of one process and several processes append at once: one chain, nothing lost."""
    from visage.store.audit_chain import read_chain, verify

    main = open_store()
    where = request.getfixturevalue("postgres_dsn") if isinstance(main, PostgresStore) else str(main.path)  # type: ignore[attr-defined]
    processes = [subprocess.Popen([sys.executable, "-c", _AUDIT_WRITER, where, f"process-{i}", "40"]) for i in range(3)]
    errors: list[BaseException] = []

    def append(name: str) -> None:
        try:
            for i in range(40):
                main.append_audit(audit(details={"i": i}, access_key_id=name))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=append, args=(f"thread-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]
    assert errors == []
    entries = main.audit_entries(limit=1000)
    assert len(entries) == 7 * 40
    assert len({e.prev_hash for e in entries}) == len(entries)  # no two records follow the same one
    report = verify(read_chain(main))
    assert report.ok and report.records == 280 and report.head_hash == entries[-1].hash


# Access keys ---------------------------------------------------------------------------


def stored_key(key_id: str = "VSAKAAAAAAAAAAAAAAAA", created: datetime = T0, **kwargs: object) -> StoredKey:
    base: dict[str, object] = {
        "access_key_id": key_id,
        "name": "ci",
        "secret": "gAAAA-sealed",
        "policy": '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["*"],"Resource":["*"]}]}',
        "created_at": created,
    }
    return StoredKey(**{**base, **kwargs})  # type: ignore[arg-type]


def test_access_keys_round_trip_and_list_oldest_first(store: Store) -> None:
    late, early = stored_key("VSAKBBBBBBBBBBBBBBBB", T0 + timedelta(hours=1)), stored_key()
    store.add_access_key(late)
    store.add_access_key(early)
    assert store.get_access_key(early.access_key_id) == early
    assert store.get_access_key("VSAKNOSUCHKEYATALLXX") is None
    assert store.list_access_keys() == [early, late]
    with pytest.raises(ConflictException):
        store.add_access_key(replace(early, name="again"))
    assert store.get_access_key(early.access_key_id) == early


def test_revoking_a_key_keeps_its_first_revocation_time(store: Store) -> None:
    store.add_access_key(stored_key())
    revoked = store.revoke_access_key("VSAKAAAAAAAAAAAAAAAA", T0 + timedelta(minutes=1))
    assert revoked == stored_key(revoked_at=T0 + timedelta(minutes=1))
    again = store.revoke_access_key("VSAKAAAAAAAAAAAAAAAA", T0 + timedelta(minutes=2))
    assert again.revoked_at == T0 + timedelta(minutes=1)
    with pytest.raises(ResourceNotFoundException):
        store.revoke_access_key("VSAKNOSUCHKEYATALLXX", T0)


def test_rotating_a_key_revokes_it_and_adds_the_new_one_at_once(store: Store) -> None:
    store.add_access_key(stored_key())
    new = stored_key("VSAKCCCCCCCCCCCCCCCC", T0 + timedelta(days=1))
    store.rotate_access_key("VSAKAAAAAAAAAAAAAAAA", new)
    assert store.list_access_keys() == [stored_key(revoked_at=new.created_at), new]
    with pytest.raises(ResourceNotFoundException, match="active"):  # already revoked: nothing changes
        store.rotate_access_key("VSAKAAAAAAAAAAAAAAAA", stored_key("VSAKDDDDDDDDDDDDDDDD"))
    with pytest.raises(ConflictException):  # the new id is taken: the old key stays active
        store.rotate_access_key("VSAKCCCCCCCCCCCCCCCC", stored_key())
    assert store.get_access_key("VSAKCCCCCCCCCCCCCCCC") == new
    assert store.get_access_key("VSAKDDDDDDDDDDDDDDDD") is None


def test_a_change_of_keys_and_its_audit_record_are_written_together(store: Store) -> None:
    """Adding, revoking and rotating a key append its audit record in the same transaction:
    a record that cannot be written leaves the key as it was."""

    def record(operation: str, **details: object) -> AuditRecord:
        return AuditRecord(T0, "VSAKADMIN", operation, None, None, 0, None, details=details)

    broken = record("broken", note=object())  # not JSON: its insert fails
    with pytest.raises(TypeError):
        store.add_access_key(stored_key(), broken)
    assert store.list_access_keys() == []
    store.add_access_key(stored_key(), record("CreateAccessKey"))
    with pytest.raises(TypeError):
        store.revoke_access_key("VSAKAAAAAAAAAAAAAAAA", T0, broken)
    with pytest.raises(TypeError):
        store.rotate_access_key("VSAKAAAAAAAAAAAAAAAA", stored_key("VSAKCCCCCCCCCCCCCCCC"), broken)
    assert store.list_access_keys() == [stored_key()]
    store.revoke_access_key("VSAKAAAAAAAAAAAAAAAA", T0, record("RevokeAccessKey"))
    assert [r.operation for r in store.audit_records()] == ["CreateAccessKey", "RevokeAccessKey"]


def test_last_use_only_moves_forward(store: Store) -> None:
    store.add_access_key(stored_key())
    store.touch_access_key("VSAKAAAAAAAAAAAAAAAA", T0 + timedelta(minutes=5))
    store.touch_access_key("VSAKAAAAAAAAAAAAAAAA", T0 + timedelta(minutes=3))
    key = store.get_access_key("VSAKAAAAAAAAAAAAAAAA")
    assert key is not None and key.last_used_at == T0 + timedelta(minutes=5)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone"):
        store.create_collection(collection("c1", created_at=datetime(2025, 1, 1)))


# Persistence and concurrency -------------------------------------------------------------


def test_data_survives_reopening(open_store: Callable[[], Store], rng: np.random.Generator) -> None:
    first = open_store()
    first.create_collection(collection("c1", tags={"k": "v"}))
    faces = random_faces(rng, 20, image_hash="f" * 64)
    first.add_faces("c1", faces)
    first.create_user("c1", "alice", RequestToken("t1", "CreateUser", "d"))
    first.associate_faces("c1", "alice", ids(faces[:2]))
    audit = AuditRecord(T0, "AKID", "SearchFaces", "c1", 90.0, 1, 95.0, ids(faces[:1]), [])
    first.append_audit(audit)
    query = unit_vectors(rng, 1)[0]
    before = first.search("c1", query, 5, -1.0)
    first.close()

    second = open_store()
    assert second.get_collection("c1") == collection("c1", tags={"k": "v"})
    expected = [replace(f, user_id="alice") if f in faces[:2] else f for f in faces]
    assert_same_faces(second.list_faces("c1", None, 100), sorted(expected, key=lambda f: f.face_id))
    assert second.get_user("c1", "alice") == User("alice", "ACTIVE", 2)
    assert second.get_token("c1", "t1") == RequestToken("t1", "CreateUser", "d")
    assert second.audit_records() == [audit]
    assert second.search("c1", query, 5, -1.0) == before


def test_concurrent_writers_on_one_database(open_store: Callable[[], Store], rng: np.random.Generator) -> None:
    main = open_store()
    main.create_collection(collection("c1"))
    writers = [open_store() for _ in range(4)]
    batches = [[[f] for f in random_faces(rng, 50)] for _ in writers]
    errors: list[BaseException] = []
    query = unit_vectors(rng, 1)[0]
    done = threading.Event()

    def write(store: Store, faces: list[list[StoredFace]]) -> None:
        try:
            for batch in faces:
                store.add_faces("c1", batch)
        except BaseException as error:
            errors.append(error)

    def search() -> None:
        try:
            while not done.is_set():
                main.search("c1", query, 10, -1.0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(s, b)) for s, b in zip(writers, batches)]
    reader = threading.Thread(target=search)
    for t in [*threads, reader]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()

    assert errors == []
    everything = [f for batch in batches for [f] in batch]
    assert main.count("c1") == (200, 0)
    assert sorted(ids(main.list_faces("c1", None, 1000))) == sorted(ids(everything))
    assert_search_matches(main, "c1", everything, query, limit=200, min_score=-1.0)


def test_associations_at_once_cannot_together_pass_a_users_limit(
    open_store: Callable[[], Store], rng: np.random.Generator
) -> None:
    """Instances (servers) associating faces with one user at once: each counts the user's faces
    in its write, and the writes of one user take turns, so the limit holds."""
    main = open_store()
    main.create_collection(collection("c1"))
    faces = random_faces(rng, 40)
    main.add_faces("c1", faces)
    main.create_user("c1", "alice")
    main.associate_faces("c1", "alice", ids(faces[:8]))
    writers = [open_store() for _ in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(writers))

    def associate(store: Store, mine: list[StoredFace]) -> None:
        barrier.wait()
        try:
            store.associate_faces("c1", "alice", ids(mine), max_faces=10)
            outcomes.append("ok")
        except ServiceQuotaExceededException:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=associate, args=(w, faces[8 + 2 * n : 10 + 2 * n])) for n, w in enumerate(writers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]
    assert main.get_user("c1", "alice") == User("alice", "ACTIVE", 10)


def test_threads_sharing_one_instance(store: Store, cid: str, rng: np.random.Generator) -> None:
    errors: list[BaseException] = []
    faces = random_faces(rng, 80)

    def work(part: list[StoredFace]) -> None:
        try:
            for f in part:
                store.add_faces(cid, [f])
                assert any(s.face.face_id == f.face_id for s in store.search(cid, f.vector, 1, 0.99))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(faces[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count(cid) == (80, 0)


# Video jobs ------------------------------------------------------------------------------


def video_job(
    n: int = 0, token: str | None = None, digest: str = "d", operation: str = "StartFaceDetection"
) -> VideoJob:
    return VideoJob(
        job_id=f"job{n:04d}",
        operation=operation,
        request={"Video": {"S3Object": {"Bucket": "b", "Name": f"v{n}.mp4"}}, "JobTag": "t"},
        access_key_id="AKID",
        created_at=T0 + timedelta(seconds=n),
        client_token=token,
        request_digest=digest,
    )


def detection(t: int, index: int | None = None) -> JobResult:
    return JobResult(timestamp_ms=t, body={"Timestamp": t, "Face": {"Confidence": 99.5}}, person_index=index)


LEASE = T0 + timedelta(days=3650)  # a lease that does not run out during the test


def test_jobs_are_queued_with_idempotent_tokens_and_a_limit(store: Store) -> None:
    first = store.create_job(video_job(1, token="tok"), max_active=2)
    assert store.get_job("job0001") == first and first.status == "QUEUED"
    # The same token and request: the same job, nothing queued, even when the queue is full.
    store.create_job(video_job(2), max_active=2)
    assert store.create_job(video_job(3, token="tok"), max_active=2) == first
    with pytest.raises(IdempotentParameterMismatchException, match="job0001"):
        store.create_job(video_job(4, token="tok", digest="other"), max_active=2)
    with pytest.raises(LimitExceededException, match="2 video jobs"):
        store.create_job(video_job(5), max_active=2)
    assert [j.job_id for j in store.list_jobs(10)] == ["job0002", "job0001"]
    assert [j.job_id for j in store.list_jobs(1, offset=1)] == ["job0001"]  # a page further
    assert store.list_jobs(10, offset=2) == []
    with pytest.raises(ResourceNotFoundException, match="job9999"):
        store.get_job("job9999")
    # A finished job no longer counts towards the limit.
    claimed = store.claim_job("w1", LEASE)
    assert claimed is not None and claimed.job_id == "job0001"
    store.finish_job("job0001", "w1", "SUCCEEDED")
    store.create_job(video_job(6), max_active=2)


def test_a_job_runs_saves_pages_and_finishes(store: Store) -> None:
    store.create_job(video_job(1, operation="StartFaceSearch"), max_active=20)
    job = store.claim_job("w1", LEASE)
    assert job is not None and (job.status, job.worker, job.attempts) == ("RUNNING", "w1", 1)
    assert store.claim_job("w2", LEASE) is None  # one queued job, taken once
    metadata = {"Codec": "h264", "DurationMillis": 9176}
    first = [detection(0, 0), detection(0, 1), detection(200, 0)]
    assert store.save_job_progress("job0001", "w1", LEASE, 0.5, first, video_metadata=metadata)
    assert store.save_job_progress("job0001", "w1", LEASE, 0.9, [detection(400, 1), detection(400, 2)])
    assert not store.save_job_progress("job0001", "w2", LEASE, 0.9, [detection(600, 0)])  # not its job
    running = store.get_job("job0001")
    assert (running.progress, running.video_metadata) == (0.9, metadata)

    by_time = store.job_results("job0001", by_person=False, after=None, limit=2)
    assert [(r.timestamp_ms, r.person_index, r.seq) for r in by_time] == [(0, 0, 1), (0, 1, 2)]
    rest = store.job_results("job0001", by_person=False, after=(0, by_time[-1].seq), limit=10)
    assert [(r.timestamp_ms, r.person_index) for r in rest] == [(200, 0), (400, 1), (400, 2)]
    assert rest[0].body == {"Timestamp": 200, "Face": {"Confidence": 99.5}}
    by_person = store.job_results("job0001", by_person=True, after=None, limit=3)
    assert [(r.person_index, r.timestamp_ms) for r in by_person] == [(0, 0), (0, 200), (1, 0)]
    last = by_person[-1]
    rest = store.job_results("job0001", by_person=True, after=(last.person_index or 0, last.seq), limit=10)
    assert [(r.person_index, r.timestamp_ms) for r in rest] == [(1, 400), (2, 400)]

    assert store.finish_job("job0001", "w2", "SUCCEEDED") is None  # not its job
    searched = AuditRecord(T0, "VSAKVIDEO", "StartFaceSearch", "c1", 80.0, 1, 99.0, ["f1"])
    with pytest.raises(TypeError):  # its audit record cannot be written: the job does not end either
        store.finish_job("job0001", "w1", "SUCCEEDED", audit=replace(searched, details={"x": object()}))
    assert store.get_job("job0001").status == "RUNNING"
    done = store.finish_job("job0001", "w1", "SUCCEEDED", renumber={2: 0}, audit=searched)  # person 2 was person 0
    assert [r.operation for r in store.audit_records()] == ["StartFaceSearch"]
    assert done is not None and (done.status, done.progress, done.worker) == ("SUCCEEDED", 1.0, None)
    renumbered = store.job_results("job0001", by_person=True, after=None, limit=10)
    assert [(r.person_index, r.timestamp_ms) for r in renumbered] == [(0, 0), (0, 200), (0, 400), (1, 0), (1, 400)]
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert not store.save_job_progress("job0001", "w1", LEASE, 1.0, [detection(800)])  # finished
    failed_job = store.create_job(video_job(2), max_active=20)
    assert store.claim_job("w1", LEASE) is not None
    failed = store.finish_job(failed_job.job_id, "w1", "FAILED", "The MP4 file is truncated.")
    assert failed is not None and (failed.status, failed.status_message) == ("FAILED", "The MP4 file is truncated.")


def test_abandoned_jobs_are_restarted_then_failed(store: Store) -> None:
    store.create_job(video_job(1), max_active=20)
    now = datetime.now(UTC)
    assert store.claim_job("dead", now - timedelta(seconds=1)) is not None
    store.save_job_progress("job0001", "dead", now - timedelta(seconds=1), 0.3, [detection(0)])
    assert store.expire_jobs(now, max_attempts=2, message="stopped twice") == []
    requeued = store.get_job("job0001")
    assert (requeued.status, requeued.worker, requeued.attempts) == ("QUEUED", None, 1)
    again = store.claim_job("w2", now - timedelta(seconds=1))
    assert again is not None and again.attempts == 2
    assert store.job_results("job0001", False, None, 10) == []  # the first attempt's results are gone
    (failed,) = store.expire_jobs(now, max_attempts=2, message="stopped twice")
    assert (failed.job_id, failed.status, failed.status_message) == ("job0001", "FAILED", "stopped twice")
    assert store.claim_job("w3", LEASE) is None
    # A clean shutdown puts a job back without counting the attempt.
    store.create_job(video_job(2), max_active=20)
    taken = store.claim_job("w4", LEASE)
    assert taken is not None
    store.release_job(taken.job_id, "w4")
    assert (store.get_job(taken.job_id).status, store.get_job(taken.job_id).attempts) == ("QUEUED", 0)


def test_finished_jobs_are_purged_after_retention(store: Store) -> None:
    for n in (1, 2, 3):
        store.create_job(video_job(n, token=f"tok{n}"), max_active=20)
    for worker in ("w1", "w2"):
        job = store.claim_job(worker, LEASE)
        assert job is not None
        store.save_job_progress(job.job_id, worker, LEASE, 1.0, [detection(0)])
        store.finish_job(job.job_id, worker, "SUCCEEDED")
    assert store.purge_jobs(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert store.purge_jobs(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert [j.job_id for j in store.list_jobs(10)] == ["job0003"]  # still queued: kept
    with pytest.raises(ResourceNotFoundException):
        store.job_results("job0001", False, None, 10)
    # The purged job's token may start a new job.
    assert store.create_job(video_job(4, token="tok1"), max_active=20).job_id == "job0004"


def test_each_job_is_claimed_once_by_concurrent_workers(open_store: Callable[[], Store]) -> None:
    main = open_store()
    for n in range(12):
        main.create_job(video_job(n), max_active=100)
    stores = [main, open_store()]  # two server processes
    claimed: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def work(store: Store, worker: str) -> None:
        try:
            while (job := store.claim_job(worker, LEASE)) is not None:
                claimed.append((job.job_id, worker))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(stores[i % 2], f"w{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(job_id for job_id, _ in claimed) == [f"job{n:04d}" for n in range(12)]
    assert all(main.get_job(job_id).worker == worker for job_id, worker in claimed)


def test_jobs_survive_reopening(open_store: Callable[[], Store]) -> None:
    first = open_store()
    first.create_job(video_job(1, token="tok"), max_active=20)
    first.claim_job("w1", LEASE)
    first.save_job_progress("job0001", "w1", LEASE, 0.25, [detection(0, 3)], video_metadata={"Codec": "h264"})
    first.close()
    second = open_store()
    job = second.get_job("job0001")
    assert (job.status, job.progress, job.video_metadata, job.client_token) == (
        "RUNNING",
        0.25,
        {"Codec": "h264"},
        "tok",
    )
    assert job.request == video_job(1).request and job.lease_until == LEASE
    assert [(r.timestamp_ms, r.person_index) for r in second.job_results("job0001", True, None, 10)] == [(0, 3)]


# SQLite only -----------------------------------------------------------------------------


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "visage.db") as store, store._connection() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert con.execute("PRAGMA busy_timeout").fetchone()[0] >= 30_000


def test_sqlite_schema_version_and_idempotent_migrations(tmp_path: Path) -> None:
    path = tmp_path / "visage.db"
    SQLiteStore(path).close()
    SQLiteStore(path).close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        SQLiteStore(path)


def assert_chained_by_migration_3(store: Store) -> None:
    """The two records of a schema-2 database, read back unchanged and chained, and the chain goes on."""
    from visage.store.audit_chain import read_chain, verify

    assert [r.operation for r in store.audit_records()] == ["SearchFaces", "CompareFaces"]
    assert store.audit_records()[0] == audit(access_key_id="VSAKOLD", operation="SearchFaces", best_similarity=91.5)
    store.append_audit(audit(2))
    report = verify(read_chain(store))
    assert report.ok and report.records == 3
    assert store.list_access_keys() == []


def test_sqlite_migration_3_chains_the_audit_records_already_written(tmp_path: Path) -> None:
    path = tmp_path / "visage.db"
    with sqlite3.connect(path) as con:  # a database of schema version 2, with two records
        for statements in MIGRATIONS[:2]:
            for statement in statements:
                assert isinstance(statement, str)
                con.execute(statement)
        for minutes, operation in ((0, "SearchFaces"), (1, "CompareFaces")):
            con.execute(
                "INSERT INTO audit_log (time, access_key_id, operation, collection_id, threshold, match_count,"
                " best_similarity, face_ids, user_ids) VALUES (?, 'VSAKOLD', ?, 'c1', 80.0, 1, 91.5, '[\"f1\"]', '[]')",
                ((T0 + timedelta(minutes=minutes)).isoformat(timespec="microseconds"), operation),
            )
        con.execute("PRAGMA user_version = 2")
    with SQLiteStore(path) as store:
        assert_chained_by_migration_3(store)


def test_sqlite_opens_a_database_made_before_migration_4(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "visage.db"
    with sqlite3.connect(path) as con:
        for statements in MIGRATIONS[:3]:
            for statement in statements:
                statement(con) if callable(statement) else con.execute(statement)
        con.execute("PRAGMA user_version = 3")
        con.execute(
            "INSERT INTO collections (collection_id, arn, face_model, face_model_version, created_at)"
            " VALUES ('c1', 'arn', 'sface', 'sface-1', ?)",
            (T0.isoformat(timespec="microseconds"),),
        )
        con.execute(
            "INSERT INTO faces (collection_pk, face_id, image_id, bbox_left, bbox_top, bbox_width, bbox_height,"
            " confidence, vector) VALUES (1, 'f1', 'i1', 0, 0, 1, 1, 99, ?)",
            (unit_vectors(rng, 1)[0].tobytes(),),
        )
    with SQLiteStore(path) as store:
        (old,) = store.list_faces("c1", None, 10)
        assert (old.face_id, old.indexed_at) == ("f1", None)
        assert store.get_collection("c1").keep_face_thumbnails is None
        store.add_faces("c1", random_faces(rng, 1), thumbnails={})
        assert store.count("c1") == (2, 0)


def test_sqlite_deleting_a_collection_leaves_no_rows_behind(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "visage.db"
    with SQLiteStore(path) as store:
        store.create_collection(collection("c1", tags={"k": "v"}))
        faces = random_faces(rng, 3)
        store.add_faces("c1", faces, thumbnails={f.face_id: b"jpeg" for f in faces})
        store.add_review(review("c1", faces[0].face_id), decided(review("c1", faces[0].face_id)))
        store.create_user("c1", "alice", RequestToken("t1", "CreateUser", "d"))
        store.associate_faces("c1", "alice", ids(faces))
        store.delete_collection("c1")
    with sqlite3.connect(path) as con:
        for table in ("collections", "tags", "faces", "users", "request_tokens", "face_thumbnails", "reviews"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_sqlite_waits_for_a_held_write_lock(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "visage.db"
    store = SQLiteStore(path)
    store.create_collection(collection("c1"))
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(1.0, blocker.execute, args=("COMMIT",))
    timer.start()
    store.add_faces("c1", random_faces(rng, 1))  # waits for the lock, does not fail
    timer.join()
    blocker.close()
    assert store.count("c1") == (1, 0)
    store.close()


def test_sqlite_retries_busy_transactions(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "visage.db", retry_for=0.3)
    attempts: list[int] = []

    def flaky(con: sqlite3.Connection) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    def stuck(con: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database is locked")

    assert store._run(flaky, write=True) == "done"
    assert len(attempts) == 3
    with pytest.raises(ThrottlingException, match="locked"):
        store._run(stuck, write=True)
    store.close()


_KILLED_WRITER = """
import sys, time, uuid
import numpy as np
from visage.faces import BoundingBox
from visage.store.base import StoredFace
from visage.store.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
vector = np.zeros(128, dtype=np.float32)
vector[0] = 1
box = BoundingBox(0.1, 0.1, 0.5, 0.5)
store.add_faces("c1", [StoredFace(sys.argv[2], str(uuid.uuid4()), box, 99.0, vector)])
print("stored", flush=True)
time.sleep(60)
"""


def test_sqlite_a_stored_face_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "visage.db"
    with SQLiteStore(path) as store:
        store.create_collection(collection("c1"))
    face_id = str(uuid.uuid4())
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path), face_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "stored"
    finally:
        writer.kill()  # SIGKILL: no atexit, no close, no checkpoint
        writer.wait()
    with SQLiteStore(path) as store:
        assert ids(store.list_faces("c1", None, 10)) == [face_id]


# PostgreSQL only -------------------------------------------------------------------------
# Each test gets a fresh database (the postgres_dsn fixture in tests/conftest.py).


def pg_rows(dsn: str, query: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(query, params or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description is not None else []


def test_postgres_migrations_are_versioned_and_idempotent(postgres_dsn: str) -> None:
    tables = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    PostgresStore(postgres_dsn).close()
    created = pg_rows(postgres_dsn, tables)
    PostgresStore(postgres_dsn).close()
    assert pg_rows(postgres_dsn, tables) == created
    assert [name for (name,) in created] == [
        "access_keys",
        "audit_log",
        "collections",
        "face_changes",
        "face_thumbnails",
        "faces",
        "job_results",
        "jobs",
        "request_tokens",
        "reviews",
        "schema_migrations",
        "tags",
        "users",
    ]
    versions = pg_rows(postgres_dsn, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, len(POSTGRES_MIGRATIONS) + 1)]
    pg_rows(postgres_dsn, "INSERT INTO schema_migrations (version) VALUES (%s)", (len(POSTGRES_MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        PostgresStore(postgres_dsn)


def test_postgres_migration_2_counts_the_faces_already_stored(postgres_dsn: str, rng: np.random.Generator) -> None:
    with PostgresStore(postgres_dsn) as store:
        store.create_collection(collection("c1"))
        store.add_faces("c1", random_faces(rng, 7))
    # Back to schema version 1, as a database made before migration 2 would be.
    undo_postgres_migration_4(postgres_dsn)
    pg_rows(postgres_dsn, "ALTER TABLE collections DROP COLUMN face_count")
    pg_rows(postgres_dsn, "DROP TABLE access_keys")
    pg_rows(
        postgres_dsn,
        "ALTER TABLE audit_log DROP COLUMN probe_sha256, DROP COLUMN outcome, DROP COLUMN details,"
        " DROP COLUMN prev_hash, DROP COLUMN hash",
    )
    pg_rows(postgres_dsn, "DELETE FROM schema_migrations WHERE version > 1")
    with PostgresStore(postgres_dsn) as store:
        assert store.count("c1") == (7, 0)
        store.delete_faces("c1", ids(store.list_faces("c1", None, 2)))
        assert store.count("c1") == (5, 0)


def test_postgres_migration_3_chains_the_audit_records_already_written(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as con:  # a database of schema version 2, with two records
        con.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())"
        )
        for version, statements in enumerate(POSTGRES_MIGRATIONS[:2], start=1):
            for statement in statements:
                assert isinstance(statement, str)
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        for minutes, operation in ((0, "SearchFaces"), (1, "CompareFaces")):
            con.execute(
                "INSERT INTO audit_log (time, access_key_id, operation, collection_id, threshold, match_count,"
                " best_similarity, face_ids, user_ids) VALUES (%s, 'VSAKOLD', %s, 'c1', 80.0, 1, 91.5, '{f1}', '{}')",
                (T0 + timedelta(minutes=minutes), operation),
            )
    with PostgresStore(postgres_dsn) as store:
        assert_chained_by_migration_3(store)


def undo_postgres_migration_6(dsn: str) -> None:
    for statement in (
        "DROP TRIGGER faces_added ON faces",
        "DROP TRIGGER faces_deleted ON faces",
        "DROP FUNCTION visage_faces_added()",
        "DROP FUNCTION visage_faces_deleted()",
        "DROP TABLE face_changes",
        "ALTER TABLE collections DROP COLUMN changes, DROP COLUMN changes_trimmed_to",
        "ALTER TABLE faces DROP COLUMN seq",
        "DELETE FROM schema_migrations WHERE version > 5",
    ):
        pg_rows(dsn, statement)


def undo_postgres_migration_4(dsn: str) -> None:
    """Back to schema version 3 (migrations 6, 5 and 4 undone)."""
    undo_postgres_migration_6(dsn)
    for statement in (
        "DROP TABLE job_results",
        "DROP TABLE jobs",
        "DROP TABLE reviews",
        "DROP TABLE face_thumbnails",
        "ALTER TABLE faces DROP COLUMN indexed_at",
        "ALTER TABLE collections DROP COLUMN keep_face_thumbnails",
        "DELETE FROM schema_migrations WHERE version > 3",
    ):
        pg_rows(dsn, statement)


def test_postgres_migration_4_opens_a_database_made_before_it(postgres_dsn: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, 2)
    with PostgresStore(postgres_dsn) as store:
        store.create_collection(collection("c1"))
        store.add_faces("c1", faces)
    undo_postgres_migration_4(postgres_dsn)
    with PostgresStore(postgres_dsn) as store:
        assert [f.indexed_at for f in store.list_faces("c1", None, 10)] == [None, None]
        assert store.get_collection("c1").keep_face_thumbnails is None
        store.add_faces("c1", random_faces(rng, 1), thumbnails={})
        assert store.count("c1") == (3, 0)


def test_postgres_servers_starting_at_once_migrate_once(postgres_dsn: str) -> None:
    # Each store migrates through its own database session, as separate server processes would.
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            start.wait()
            PostgresStore(postgres_dsn).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = pg_rows(postgres_dsn, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, len(POSTGRES_MIGRATIONS) + 1)]


def test_postgres_text_keys_sort_by_code_point(postgres_dsn: str) -> None:
    # Pages and ties follow Python's order whatever the database's locale (the shared tests run on C.UTF-8).
    PostgresStore(postgres_dsn).close()
    columns = pg_rows(
        postgres_dsn,
        "SELECT table_name, column_name, collation_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND column_name IN ('collection_id', 'face_id', 'user_id', 'key')"
        " AND table_name <> 'audit_log'",
    )
    assert len(columns) == 7  # with face_thumbnails.face_id and reviews.face_id
    assert all(collation == "C" for _, _, collation in columns), columns
    (key_id,) = pg_rows(
        postgres_dsn,
        "SELECT collation_name FROM information_schema.columns"
        " WHERE table_name = 'access_keys' AND column_name = 'access_key_id'",
    )
    assert key_id == ("C",)


def test_postgres_collections_of_each_vector_length(postgres_dsn: str, rng: np.random.Generator) -> None:
    with PostgresStore(postgres_dsn, exact_search_limit=10) as store:
        store.create_collection(collection("c128"))
        store.create_collection(collection("c256"))
        store.add_faces("c128", random_faces(rng, 3))
        wide = [face(v) for v in unit_vectors(rng, 20, dim=256)]  # the coming 256-d fusion model
        store.add_faces("c256", wide)
        with pytest.raises(ValueError, match="128"):
            store.add_faces("c128", [face(unit_vectors(rng, 1, dim=256)[0])])
        with pytest.raises(ValueError, match="128"):
            store.search("c128", unit_vectors(rng, 1, dim=256)[0], 5, -1.0)
        for query in unit_vectors(rng, 3, dim=256):  # through the vector index (more than 10 faces)
            assert_search_matches(store, "c256", wide, query, limit=5, min_score=-1.0)
        assert store.count("c128") == (3, 0)
    hnsw = "SELECT indexname FROM pg_indexes WHERE tablename = 'faces' AND indexdef LIKE '%USING hnsw%'"
    assert pg_rows(postgres_dsn, hnsw) == []


def test_postgres_candidates_are_read_by_key(postgres_dsn: str, rng: np.random.Generator) -> None:
    with PostgresStore(postgres_dsn, exact_search_limit=BIG) as store:
        store.create_collection(collection("big"))
        store.add_faces("big", random_faces(rng, 2000))
    (pk,) = pg_rows(postgres_dsn, "SELECT pk FROM collections WHERE collection_id = 'big'")[0]
    keys = [key for (key,) in pg_rows(postgres_dsn, "SELECT seq FROM faces ORDER BY random() LIMIT 128")]
    params = {"pk": pk, "query": unit_vectors(rng, 1)[0], "limit": 10, "min_score": -1.0, "keys": keys}
    pg_rows(postgres_dsn, "ANALYZE faces")
    with psycopg.connect(postgres_dsn) as con:
        from pgvector.psycopg import register_vector

        register_vector(con)
        plan = [row[0] for row in con.execute(sql.SQL("EXPLAIN ") + exact_search_sql(CANDIDATES_WHERE), params)]
    assert any("faces_by_seq" in line for line in plan), plan


CANDIDATES_WHERE = "collection_pk = %(pk)s AND seq = ANY(%(keys)s::bigint[])"  # as PostgresStore.search reads them


def test_postgres_changes_are_numbered_in_commit_order(postgres_dsn: str, rng: np.random.Generator) -> None:
    """Concurrent writers of one collection: its changes are numbered 1, 2, 3... with no gap, and
    a reader that has seen change n has seen every change before it."""
    stores = [PostgresStore(postgres_dsn, exact_search_limit=BIG) for _ in range(3)]
    try:
        stores[0].create_collection(collection("big"))
        stores[0].add_faces("big", random_faces(rng, BIG + 1))
        batches = [[random_faces(rng, 5) for _ in range(12)] for _ in stores]
        errors: list[BaseException] = []

        def write(store: PostgresStore, batches: list[list[StoredFace]]) -> None:
            try:
                for batch in batches:
                    store.add_faces("big", batch)
                    store.delete_faces("big", ids(batch[:2]))
                    store.search("big", batch[2].vector, 1, -1.0)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, batches)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        numbers = [n for (n,) in pg_rows(postgres_dsn, "SELECT seq FROM face_changes ORDER BY seq")]
        assert numbers == list(range(1, len(numbers) + 1))
        assert pg_rows(postgres_dsn, "SELECT changes, face_count FROM collections") == [
            (len(numbers), BIG + 1 + 3 * 12 * 3)
        ]
        for store in stores:  # each one's index holds every face, caught up from the log
            assert store.search("big", batches[0][-1][4].vector, 1, -1.0)[0].face.face_id == batches[0][-1][4].face_id
            (ann,) = store.indexes._ann.values()
            assert len(ann.index) == BIG + 1 + 3 * 12 * 3
    finally:
        for store in stores:
            store.close()


def test_postgres_migration_6_keys_the_faces_already_stored(postgres_dsn: str, rng: np.random.Generator) -> None:
    faces = random_faces(rng, BIG + 5)
    with PostgresStore(postgres_dsn) as store:
        store.create_collection(collection("big"))
        store.add_faces("big", faces)
    undo_postgres_migration_6(postgres_dsn)
    pg_rows(  # an earlier version's HNSW index
        postgres_dsn,
        "CREATE INDEX faces_hnsw_128 ON faces USING hnsw ((embedding::vector(128)) vector_cosine_ops) WHERE dim = 128",
    )
    with PostgresStore(postgres_dsn, exact_search_limit=BIG) as store:
        assert_best_is_found(store, "big", faces, [0, 100, BIG])
        store.delete_faces("big", ids(faces[:1]))
        assert store.count("big") == (BIG + 4, 0)
        assert faces[0].face_id not in ids([s.face for s in store.search("big", faces[0].vector, 5, -1.0)])
    assert pg_rows(postgres_dsn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'faces_hnsw_128'") == [(0,)]
    assert pg_rows(postgres_dsn, "SELECT count(DISTINCT seq), count(*) FROM faces") == [(BIG + 4, BIG + 4)]


def test_postgres_search_recovers_when_its_connections_are_cut(postgres_dsn: str, rng: np.random.Generator) -> None:
    """What a restart of PostgreSQL does to a server: every connection dies. The store reconnects,
    and the writes made meanwhile (by another server) are in its index."""
    with PostgresStore(postgres_dsn, exact_search_limit=BIG) as mine, PostgresStore(postgres_dsn) as theirs:
        mine.create_collection(collection("big"))
        faces = clustered_faces(rng, 200, 2)
        mine.add_faces("big", faces)
        assert_best_is_found(mine, "big", faces, [1])
        dbname = psycopg.conninfo.conninfo_to_dict(postgres_dsn)["dbname"]
        cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        pg_rows(postgres_dsn, cut, (dbname,))
        newcomers = clustered_faces(rng, 3, 1)
        theirs.add_faces("big", newcomers)  # reconnects too
        theirs.delete_faces("big", ids(faces[:1]))
        pg_rows(postgres_dsn, cut, (dbname,))
        alive = faces[1:] + newcomers
        assert_best_is_found(mine, "big", alive, [len(alive) - 1, len(alive) - 3])
        assert faces[0].face_id not in ids([s.face for s in mine.search("big", faces[0].vector, 5, -1.0)])


def test_postgres_throttles_when_no_connection_is_free(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, pool_size=1, retry_for=0.5) as store:
        store.create_collection(collection("c1"))
        with store._pool.connection():  # the only connection, busy
            with pytest.raises(ThrottlingException, match="free"):
                store.get_collection("c1")
        assert store.get_collection("c1") == collection("c1")


def test_postgres_retries_serialization_failures_and_deadlocks(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, retry_for=0.3) as store:
        attempts: list[int] = []

        def flaky(con: psycopg.Connection[tuple[object, ...]]) -> str:
            attempts.append(1)
            con.execute("SELECT 1")
            if len(attempts) == 1:
                raise psycopg.errors.SerializationFailure("could not serialize access")
            if len(attempts) == 2:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            return "done"

        def stuck(con: psycopg.Connection[tuple[object, ...]]) -> None:
            raise psycopg.errors.SerializationFailure("could not serialize access")

        assert store._run(flaky, write=True) == "done"
        assert len(attempts) == 3
        with pytest.raises(ThrottlingException, match="busy"):
            store._run(stuck, write=True)


def test_postgres_without_pgvector_names_the_fix(postgres: TestPostgres) -> None:
    role = f"visage_app_{uuid.uuid4().hex[:8]}"
    pg_rows(postgres.admin_dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'app'")
    bare = ""
    try:
        bare = postgres.create_database(template="template0", owner=role)  # no vector extension in it
        parts = urlsplit(bare)
        as_app = urlunsplit(parts._replace(netloc=f"{role}:app@{parts.netloc.rpartition('@')[2]}"))
        with pytest.raises(RuntimeError, match="CREATE EXTENSION vector"):
            PostgresStore(as_app)
        pg_rows(bare, "CREATE EXTENSION vector")  # what the message asks a superuser to do
        with PostgresStore(as_app) as store:  # then the application role creates its tables
            store.create_collection(collection("c1"))
            assert store.get_collection("c1") == collection("c1")
    finally:
        if bare:
            postgres.drop_database(bare)
        pg_rows(postgres.admin_dsn, f"DROP ROLE IF EXISTS {role}")
