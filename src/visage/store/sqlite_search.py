"""Search in the embedded store: exact over vectors cached in memory, or through a vector index.

:class:`SQLiteSearch` answers :meth:`~visage.store.sqlite.SQLiteStore.search` inside
the store's read transaction, and keeps what it needs between calls.

Small collections (up to ``exact_search_limit`` faces) are scored exactly, every face,
from their vectors cached in memory. Each collection row carries a ``generation``
bumped by every write that changes its faces (add, delete, associate, disassociate). A
search reads the collection's (row key, generation) in its transaction and reloads the
cached vectors when they differ, so writes by other processes are seen. The row key is
never reused (AUTOINCREMENT), so a collection deleted and created again under the same
name cannot be mistaken for the old one.

Big collections are searched through their :class:`~visage.store.vector_index.VectorIndex`,
whose candidates are re-scored exactly from the stored float32 vectors. The index is
saved next to the database (``<data-dir>/index``) and brought up to date from the
change log (``face_changes``, kept by triggers in every writing transaction), so a
process does not reread a big collection to see another's writes. Once an index is
saved, the changes it holds are trimmed from the log.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from visage.errors import StoreWriteError
from visage.store.sql import no_collection
from visage.store.vector_index import TRAINING_VECTORS, VectorIndex

log = logging.getLogger("visage")

T = TypeVar("T")

#: How ``faces.vector`` holds a vector: float32, little-endian.
VECTOR_DTYPE = np.dtype("<f4")
#: A process saves a collection's vector index after folding in this many changes.
SAVE_INDEX_EVERY = 20_000
#: At least this many candidates of the vector index are re-scored exactly, whatever the limit.
RESCORED_CANDIDATES = 128


class Run(Protocol):
    """The store's ``_run``: ``fn`` in one transaction."""

    def __call__(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T: ...


class SQLiteSearch:
    """The search caches and vector indexes of one :class:`~visage.store.sqlite.SQLiteStore`."""

    def __init__(self, run: Run, index_dir: Path, exact_search_limit: int) -> None:
        self._run = run
        self.index_dir = index_dir
        self.exact_search_limit = exact_search_limit
        self._exact: dict[str, _Exact] = {}  # collection id (+ "\0users") -> its cached vectors
        self._load_lock = threading.Lock()
        self._ann: dict[int, _Ann] = {}  # collection pk -> vector index and what it has applied
        self._ann_lock = threading.Lock()
        self._trim_to: list[tuple[int, int]] = []

    def top(
        self,
        con: sqlite3.Connection,
        collection_id: str,
        query: np.ndarray,
        limit: int,
        min_score: float,
        exclude_face_id: str | None,
        with_user_only: bool,
    ) -> tuple[int, list[tuple[str, float]]]:
        """The collection's row key, and the (face_id, score) of its best ``limit`` faces, by
        score desc then face_id asc, as of ``con``'s transaction."""
        sql = "SELECT pk, generation, face_count FROM collections WHERE collection_id = ?"
        row = con.execute(sql, (collection_id,)).fetchone()
        if row is None:
            self._exact.pop(collection_id, None)
            raise no_collection(collection_id)
        pk, generation, face_count = row
        if face_count > self.exact_search_limit and not with_user_only:
            return pk, self._approximate_top(con, pk, query, limit, min_score, exclude_face_id)
        # Users hold at most 100 faces each: their faces are few even in a big collection.
        key = f"{collection_id}\0users" if face_count > self.exact_search_limit else collection_id
        exact = self._cached(con, key, (pk, generation), users_only=key != collection_id)
        return pk, exact.top(query, limit, min_score, exclude_face_id, with_user_only)

    def _cached(self, con: sqlite3.Connection, key: str, stamp: tuple[int, int], users_only: bool = False) -> _Exact:
        """The cached vectors of the collection, reloaded if ``stamp`` (pk, generation) moved on."""
        exact = self._exact.get(key)
        if exact is not None and exact.stamp == stamp:
            return exact
        with self._load_lock:  # one load at a time: a big collection is not read twice at once
            exact = self._exact.get(key)
            if exact is None or exact.stamp != stamp:
                exact = _Exact.load(con, stamp, users_only)
                self._exact[key] = exact
            return exact

    # Big collections: the vector index proposes, the float32 vectors decide ------------
    def _approximate_top(
        self, con: sqlite3.Connection, pk: int, query: np.ndarray, limit: int, min_score: float, exclude: str | None
    ) -> list[tuple[str, float]]:
        ann = self._current_ann(con, pk)
        if query.shape != (ann.index.dimension,):
            raise ValueError(
                f"The query vector has shape {query.shape}; this collection's vectors have {ann.index.dimension} floats."
            )
        # The codes blur scores (by up to 0.15 in a cosine on real faces: benchmarks/search_scale.py):
        # ask for more candidates than needed; the exact re-scoring below sorts them.
        candidates = ann.index.search(query, max(limit + (exclude is not None), RESCORED_CANDIDATES), min_score)
        rows = con.execute(
            "SELECT face_id, vector FROM faces WHERE seq IN (SELECT value FROM json_each(?))",
            (json.dumps(candidates.keys.tolist()),),
        ).fetchall()
        if not rows:
            return []
        scores = np.einsum("ij,j->i", _vectors([r[1] for r in rows]), query)
        best = sorted(
            (
                (face_id, float(score))
                for (face_id, _), score in zip(rows, scores)
                if score >= np.float64(min_score) and face_id != exclude
            ),
            key=lambda item: (-item[1], item[0]),
        )
        return best[:limit]

    def _current_ann(self, con: sqlite3.Connection, pk: int) -> _Ann:
        """The collection's vector index, with every change up to this transaction folded in.

        Loaded from its last save (or built, the first time or when the save and the
        database disagree), then caught up from the change log.
        """
        with self._ann_lock:
            ann = self._ann.get(pk)
            trimmed, face_count = con.execute(
                "SELECT changes_trimmed_to, face_count FROM collections WHERE pk = ?", (pk,)
            ).fetchone()
            if ann is None or ann.index.applied < trimmed:
                loaded = VectorIndex.load(self.index_dir, str(pk))
                ann = _Ann(loaded, loaded.applied) if loaded is not None and loaded.applied >= trimmed else None
            if ann is not None:
                _catch_up(con, pk, ann.index)
            if ann is None or len(ann.index) != face_count:
                ann = _Ann(_build(con, pk), 0)
            self._ann[pk] = ann
            if len(ann.index) and (ann.index.applied - ann.saved >= SAVE_INDEX_EVERY or ann.saved == 0):
                self._save_ann(pk, ann)
            return ann

    def _save_ann(self, pk: int, ann: _Ann) -> None:
        try:
            ann.index.save(self.index_dir, str(pk))
        except OSError as error:  # a full disk: search goes on from memory; the next save retries
            log.warning("could not save the vector index of collection %d in %s: %s", pk, self.index_dir, error)
            return
        ann.saved = ann.index.applied
        # Changes the saved file holds are no longer needed by anyone: a process behind it
        # reloads the file. (Trimmed in a later write transaction, not this read one.)
        self._trim_to.append((pk, ann.saved))

    def warm(self) -> None:
        """Load (or build) the vector index of every big collection, so first searches are fast."""

        def big(con: sqlite3.Connection) -> list[int]:
            sql = "SELECT pk FROM collections WHERE face_count > ?"
            return [row[0] for row in con.execute(sql, (self.exact_search_limit,))]

        for pk in self._run(big, write=False):
            self._run(functools.partial(self._current_ann, pk=pk), write=False)
        self.trim_changes()

    def trim_changes(self) -> None:
        """Drops from the change log what the saved vector indexes hold (after a search saved one)."""
        if not self._trim_to:
            return
        with self._ann_lock:
            pending, self._trim_to = self._trim_to, []
        for pk, upto in pending:

            def write(con: sqlite3.Connection, pk: int = pk, upto: int = upto) -> None:
                con.execute("DELETE FROM face_changes WHERE collection_pk = ? AND seq <= ?", (pk, upto))
                con.execute(
                    "UPDATE collections SET changes_trimmed_to = max(changes_trimmed_to, ?) WHERE pk = ?", (upto, pk)
                )

            try:
                self._run(write, write=True)
            except StoreWriteError as error:  # the log keeps these changes a while longer: harmless
                log.warning("could not trim the change log of collection %d: %s", pk, error)

    def forget(self, collection_id: str, pk: int) -> None:
        """Drops the caches and the saved vector index of a deleted collection."""
        self._exact.pop(collection_id, None)
        self._exact.pop(f"{collection_id}\0users", None)
        with self._ann_lock:
            self._ann.pop(pk, None)
        VectorIndex.discard(self.index_dir, str(pk))

    def close(self) -> None:
        """Saves the vector indexes with unsaved changes and drops the caches."""
        with self._ann_lock:
            for pk, ann in self._ann.items():
                if ann.index.applied > ann.saved and len(ann.index):
                    ann.index.save(self.index_dir, str(pk))
            self._ann.clear()
        self._exact.clear()


@dataclass(frozen=True)
class _Exact:
    """One collection's vectors in memory, rows ordered by face_id."""

    stamp: tuple[int, int]  # (collection pk, generation) the rows were read at
    face_ids: list[str]
    has_user: np.ndarray  # bool, per row
    matrix: np.ndarray  # float32, (rows, dim)

    @classmethod
    def load(cls, con: sqlite3.Connection, stamp: tuple[int, int], users_only: bool = False) -> _Exact:
        where = " AND user_id IS NOT NULL" if users_only else ""
        rows = con.execute(
            f"SELECT face_id, user_id IS NOT NULL, vector FROM faces WHERE collection_pk = ?{where} ORDER BY face_id",
            (stamp[0],),
        ).fetchall()
        return cls(
            stamp=stamp,
            face_ids=[row[0] for row in rows],
            has_user=np.array([bool(row[1]) for row in rows], dtype=bool),
            matrix=_vectors([row[2] for row in rows]),
        )

    def top(
        self, query: np.ndarray, limit: int, min_score: float, exclude_face_id: str | None, with_user_only: bool
    ) -> list[tuple[str, float]]:
        """(face_id, score) of the best ``limit`` rows, by score desc then face_id asc."""
        if not self.face_ids or limit <= 0:
            return []
        if query.shape != (self.matrix.shape[1],):
            dim = self.matrix.shape[1]
            raise ValueError(f"The query vector has shape {query.shape}; this collection's vectors have {dim} floats.")
        # einsum, not matmul: BLAS may round identical rows differently, and equal vectors must tie exactly.
        scores = np.einsum("ij,j->i", self.matrix, query)
        keep = scores >= np.float64(min_score)  # compared as float64, so every returned float(score) >= min_score
        if with_user_only:
            keep &= self.has_user
        if exclude_face_id is not None:
            i = bisect_left(self.face_ids, exclude_face_id)
            if i < len(self.face_ids) and self.face_ids[i] == exclude_face_id:
                keep[i] = False
        rows = np.flatnonzero(keep)
        if len(rows) > limit:
            # Keep every row scoring at least the limit-th best, ties included, so the sort decides them.
            kth = scores[rows[np.argpartition(-scores[rows], limit - 1)[limit - 1]]]
            rows = rows[scores[rows] >= kth]
        rows = rows[np.lexsort((rows, -scores[rows]))][:limit]  # row order is face_id order
        return [(self.face_ids[row], float(scores[row])) for row in rows]


@dataclass
class _Ann:
    index: VectorIndex
    saved: int  # the change number of its last save by this process (0: not saved yet)


def _build(con: sqlite3.Connection, pk: int) -> VectorIndex:
    """A new index of every face of the collection, as of this transaction (its codebook
    learnt from the first batch)."""
    applied = con.execute("SELECT coalesce(max(seq), 0) FROM face_changes").fetchone()[0]
    index = VectorIndex(applied=applied)
    cursor = con.execute("SELECT seq, vector FROM faces WHERE collection_pk = ?", (pk,))
    while batch := cursor.fetchmany(TRAINING_VECTORS):
        index.add(np.array([row[0] for row in batch], dtype=np.int64), _vectors([row[1] for row in batch]))
    return index


def _catch_up(con: sqlite3.Connection, pk: int, index: VectorIndex) -> None:
    """Fold the collection's changes after ``index.applied`` into the index.

    The changes need not be replayed one by one. A face's changes alternate between
    insert and delete, so the index holds a face whose first change since is a delete,
    and should hold it if its last change is an insert. (SQLite may give the key of the
    newest face, once deleted, to the next face inserted: a delete and an insert of one
    key.)
    """
    rows = con.execute(
        "SELECT c.seq, c.face_seq, c.added, f.vector FROM face_changes c"
        " LEFT JOIN faces f ON f.seq = c.face_seq AND f.collection_pk = c.collection_pk"
        " WHERE c.collection_pk = ? AND c.seq > ? ORDER BY c.seq",
        (pk, index.applied),
    ).fetchall()
    if not rows:
        return
    first: dict[int, bool] = {}
    last: dict[int, tuple[bool, bytes | None]] = {}
    for _, face, is_add, vector in rows:
        first.setdefault(face, bool(is_add))
        last[face] = (bool(is_add), vector)
    index.remove(np.array(sorted(face for face, is_add in first.items() if not is_add), dtype=np.int64))
    added = [(face, vector) for face, (is_add, vector) in last.items() if is_add and vector is not None]
    if added:
        index.add(np.array([face for face, _ in added], dtype=np.int64), _vectors([vector for _, vector in added]))
    index.applied = rows[-1][0]


def _vectors(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors (``faces.vector``), one per row of a float32 matrix."""
    if not blobs:
        return np.empty((0, 0), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).astype(np.float32, copy=False).reshape(len(blobs), -1)
