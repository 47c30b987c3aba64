"""The embedded store's vector-index path: recall against exact search, deletes, other
processes' writes, the index saved on disk and checked against the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from visage.faces import BoundingBox
from visage.store.base import Collection, StoredFace
from visage.store.sqlite import SQLiteStore
from visage.store.vector_index import VectorIndex

LIMIT = 300  # collections bigger than this go through the vector index in these tests


def clustered(rng: np.random.Generator, people: int, per_person: int) -> tuple[np.ndarray, np.ndarray]:
    """Face-like unit vectors: a centre per person and noisy samples around it."""
    centres = rng.standard_normal((people, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    samples = np.repeat(centres, per_person, axis=0) + 0.08 * rng.standard_normal((people * per_person, 128))
    samples /= np.linalg.norm(samples, axis=1, keepdims=True)
    return samples.astype(np.float32), np.repeat(np.arange(people), per_person)


def open_store(path: Path) -> SQLiteStore:
    return SQLiteStore(path, exact_search_limit=LIMIT)


def faces(vectors: np.ndarray) -> list[StoredFace]:
    box = BoundingBox(0.1, 0.1, 0.5, 0.5)
    return [StoredFace(str(uuid.uuid4()), str(uuid.uuid4()), box, 99.0, v) for v in vectors]


@pytest.fixture()
def big(tmp_path: Path) -> tuple[SQLiteStore, list[StoredFace], np.ndarray]:
    rng = np.random.default_rng(7)
    vectors, _ = clustered(rng, 400, 3)
    store = open_store(tmp_path / "visage.db")
    store.create_collection(Collection("big", "arn", "sface", "sface-1", datetime.now(UTC)))
    stored = faces(vectors)
    for start in range(0, len(stored), 200):
        store.add_faces("big", stored[start : start + 200])
    return store, stored, vectors


def exact(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.argsort(-(vectors @ query), kind="stable")


def test_recall_against_exact_search(big: tuple[SQLiteStore, list[StoredFace], np.ndarray]) -> None:
    store, stored, vectors = big
    rng = np.random.default_rng(1)
    queries = vectors[rng.choice(len(vectors), 200, replace=False)] + 0.05 * rng.standard_normal((200, 128)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits_1 = hits_10 = 0
    for query in queries:
        truth = exact(vectors, query)
        found = [s.face.face_id for s in store.search("big", query, 10, -1.0)]
        hits_1 += found[0] == stored[truth[0]].face_id
        hits_10 += len(set(found) & {stored[i].face_id for i in truth[:10]}) / 10
    assert hits_1 / len(queries) >= 0.99
    # Beyond the 3 faces of the same person, the rest of the top 10 are near-ties among
    # strangers (cosine about 0.1); at least 128 candidates are re-scored exactly, which
    # puts most of them right.
    assert hits_10 / len(queries) >= 0.97
    assert (store.searcher.indexes.index_dir).exists() and any(store.searcher.indexes.index_dir.glob("*.faiss"))


def test_scores_are_exact_and_thresholded(big: tuple[SQLiteStore, list[StoredFace], np.ndarray]) -> None:
    store, stored, vectors = big
    query = vectors[5]
    results = store.search("big", query, 50, 0.5)
    assert results and all(r.score >= 0.5 for r in results)
    for r in results:
        i = next(j for j, s in enumerate(stored) if s.face_id == r.face.face_id)
        assert r.score == pytest.approx(float(vectors[i] @ query), abs=1e-6)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    excluded = store.search("big", query, 5, -1.0, exclude_face_id=stored[5].face_id)
    assert stored[5].face_id not in [r.face.face_id for r in excluded]


def test_deletes_and_other_processes_writes_are_seen(
    big: tuple[SQLiteStore, list[StoredFace], np.ndarray], tmp_path: Path
) -> None:
    store, stored, vectors = big
    store.search("big", vectors[0], 1, -1.0)  # builds the index in this "process"
    other = open_store(tmp_path / "visage.db")  # another process on the same file
    assert other.delete_faces("big", [stored[0].face_id]) == [stored[0].face_id]
    newcomer = faces(vectors[:1] * 1.0)
    other.add_faces("big", newcomer)
    top = store.search("big", vectors[0], 1, -1.0)[0]
    assert top.face.face_id == newcomer[0].face_id and top.score == pytest.approx(1.0, abs=1e-6)
    assert stored[0].face_id not in [r.face.face_id for r in store.search("big", vectors[0], 20, -1.0)]


def test_saved_index_is_loaded_and_checked(
    big: tuple[SQLiteStore, list[StoredFace], np.ndarray], tmp_path: Path
) -> None:
    store, stored, vectors = big
    store.search("big", vectors[0], 1, -1.0)
    store.close()
    (saved,) = list((tmp_path / "index").glob("*.faiss"))
    loaded = VectorIndex.load(tmp_path / "index", saved.name.split(".")[0])
    assert loaded is not None and len(loaded) == len(stored)

    # A damaged save is rebuilt from the database, and search stays right.
    saved.write_bytes(b"not an index")
    reopened = open_store(tmp_path / "visage.db")
    assert reopened.search("big", vectors[3], 1, -1.0)[0].face.face_id == stored[3].face_id


def test_change_log_is_trimmed_and_late_processes_catch_up(
    big: tuple[SQLiteStore, list[StoredFace], np.ndarray], tmp_path: Path
) -> None:
    import sqlite3

    store, stored, vectors = big
    late = open_store(tmp_path / "visage.db")
    late.search("big", vectors[0], 1, -1.0)  # its index applies everything so far
    store.search("big", vectors[0], 1, -1.0)  # saves, then trims the log up to its save
    with sqlite3.connect(tmp_path / "visage.db") as con:
        assert con.execute("SELECT count(*) FROM face_changes").fetchone()[0] == 0
    more = faces(vectors[10:20])
    store.add_faces("big", more)
    store.delete_faces("big", [stored[11].face_id])
    store.search("big", vectors[0], 1, -1.0)
    # The late process folds in the new changes and finds the new faces.
    top = late.search("big", vectors[12], 2, -1.0)
    assert {r.face.face_id for r in top} == {stored[12].face_id, more[2].face_id}
    assert stored[11].face_id not in {r.face.face_id for r in late.search("big", vectors[11], 5, -1.0)}
    assert late.count("big")[0] == len(stored) + 10 - 1


def test_users_search_stays_exact_in_a_big_collection(big: tuple[SQLiteStore, list[StoredFace], np.ndarray]) -> None:
    store, stored, vectors = big
    store.create_user("big", "u")
    store.associate_faces("big", "u", [stored[42].face_id])
    (hit,) = store.search("big", vectors[42], 10, -1.0, with_user_only=True)
    assert hit.face.face_id == stored[42].face_id and hit.face.user_id == "u"


def test_deleting_the_collection_removes_its_index_files(big: tuple[SQLiteStore, list[StoredFace], np.ndarray]) -> None:
    store, _stored, vectors = big
    store.search("big", vectors[0], 1, -1.0)
    assert any(store.searcher.indexes.index_dir.glob("*.faiss"))
    store.delete_collection("big")
    assert not any(store.searcher.indexes.index_dir.glob("*.faiss"))


def test_an_earlier_versions_hnsw_file_is_removed(tmp_path: Path) -> None:
    """Data dirs of versions that kept an HNSW graph (``<pk>.<change>.usearch``) lose it at
    the first save of the new index, instead of keeping a dead file as big as the graph."""
    store = open_store(tmp_path / "visage.db")
    store.create_collection(Collection("old", "arn", "sface", "sface-1", datetime.now(UTC)))
    store.searcher.indexes.index_dir.mkdir(parents=True)
    legacy = store.searcher.indexes.index_dir / "1.12.usearch"  # the first collection of a fresh database has pk 1
    legacy.write_bytes(b"graph")
    vectors, _ = clustered(np.random.default_rng(3), 200, 2)
    store.add_faces("old", faces(vectors))
    store.search("old", vectors[0], 1, -1.0)
    assert not legacy.exists() and list(store.searcher.indexes.index_dir.glob("1.*.faiss"))


def test_shards_answer_as_one_index(tmp_path: Path) -> None:
    """Codes split over shards, scanned at once, give the answers of one unsplit index,
    through adds, removes (tombstones), and a save (which compacts) and load."""
    vectors, _ = clustered(np.random.default_rng(5), 300, 4)
    keys = np.arange(len(vectors), dtype=np.int64) * 7 + 3
    one, three = VectorIndex(shards=1), VectorIndex(shards=3)
    for index in (one, three):
        for start in range(0, len(vectors), 250):  # the same first batch: the same codebook
            index.add(keys[start : start + 250], vectors[start : start + 250])
    assert three.shards == 3 and len(three) == len(one) == len(vectors)
    assert sorted(s.size for s in three._shards) == [250, 450, 500]  # each batch to the smallest
    gone = keys[::5]
    for index in (one, three):
        index.remove(np.concatenate([gone, [10**9]]))  # an unknown key is ignored
    three.applied = 42
    three.save(tmp_path, "c")
    loaded = VectorIndex.load(tmp_path, "c")
    assert (
        loaded is not None and loaded.shards == 3 and loaded.applied == 42 and len(loaded) == len(vectors) - len(gone)
    )
    rng = np.random.default_rng(2)
    for row in rng.choice(len(vectors), 50, replace=False):
        query = vectors[row] + 0.05 * rng.standard_normal(128).astype(np.float32)
        expected = one.search(query, 20, -1.0)
        for index in (three, loaded):
            found = index.search(query, 20, -1.0)
            np.testing.assert_allclose(found.scores, expected.scores, atol=1e-5)
            # Scores are quantised, so faces tied with the last may differ; the rest may not.
            above = expected.scores[-1] + 1e-5
            assert set(found.keys[found.scores > above]) == set(expected.keys[expected.scores > above])
            assert not set(found.keys) & set(gone)


def test_a_save_cut_short_or_of_another_format_is_not_loaded(tmp_path: Path) -> None:
    import faiss

    vectors, _ = clustered(np.random.default_rng(6), 100, 2)
    index = VectorIndex(applied=5, shards=2)
    index.add(np.arange(100), vectors[:100])
    index.add(np.arange(100, 200), vectors[100:])
    saved = index.save(tmp_path, "c").read_bytes()
    for damaged in (saved[: len(saved) // 2], saved[: len(saved) - 1], saved + b"x"):
        (tmp_path / "c.5.faiss").write_bytes(damaged)
        assert VectorIndex.load(tmp_path, "c") is None
    # An earlier version saved one bare faiss index: rebuilt, not half-read.
    faiss.write_index(index._shards[0].index, str(tmp_path / "c.5.faiss"))
    assert VectorIndex.load(tmp_path, "c") is None


def test_compaction_keeps_codes_and_keys_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead faces are dropped from answers at once, and rewriting the codes (here after
    every 50) keeps each remaining code with its key."""
    import visage.store.vector_index as index_module

    monkeypatch.setattr(index_module, "COMPACT_AFTER", 50)
    vectors, _ = clustered(np.random.default_rng(8), 500, 2)
    keys = np.arange(len(vectors), dtype=np.int64) + 1000
    index = VectorIndex(shards=2)
    index.add(keys[:600], vectors[:600])
    index.add(keys[600:], vectors[600:])
    rng = np.random.default_rng(0)
    dead = rng.choice(keys, 130, replace=False)
    for start in range(0, 130, 10):
        index.remove(dead[start : start + 10])
        assert len(index) == len(keys) - start - 10
    assert len(index._dead) == 30 and sum(s.size for s in index._shards) == len(keys) - 100  # compacted at 50, 100
    for row in rng.choice(len(vectors), 200, replace=False):
        found = index.search(vectors[row], 3, -1.0)
        assert not set(found.keys) & set(dead)
        if keys[row] not in dead:
            assert found.keys[0] == keys[row]


def test_a_key_given_again_after_a_delete_is_folded_in(
    big: tuple[SQLiteStore, list[StoredFace], np.ndarray], tmp_path: Path
) -> None:
    """SQLite gives the key of the newest face, once deleted, to the next face inserted.
    The change log then holds a delete and an insert of one key: the index drops the old
    face and holds the new one, without a rebuild."""
    import sqlite3

    store, stored, vectors = big
    store.search("big", vectors[0], 1, -1.0)
    (pk,) = store.searcher.indexes._ann
    before = store.searcher.indexes._ann[pk].index
    with sqlite3.connect(tmp_path / "visage.db") as con:
        newest = con.execute("SELECT max(seq) FROM faces").fetchone()[0]
    assert store.delete_faces("big", [stored[-1].face_id]) == [stored[-1].face_id]
    newcomer = faces(vectors[:1] * -1.0)  # far from every stored face
    store.add_faces("big", newcomer)
    with sqlite3.connect(tmp_path / "visage.db") as con:
        assert con.execute("SELECT seq FROM faces WHERE face_id = ?", (newcomer[0].face_id,)).fetchone()[0] == newest
    top = store.search("big", -vectors[0], 1, -1.0)[0]
    assert top.face.face_id == newcomer[0].face_id and top.score == pytest.approx(1.0, abs=1e-6)
    assert stored[-1].face_id not in {r.face.face_id for r in store.search("big", vectors[-1], 5, -1.0)}
    assert store.searcher.indexes._ann[pk].index is before and len(before) == len(stored)
