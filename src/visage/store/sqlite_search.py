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

Big collections are searched through their vector index
(:class:`~visage.store.collection_indexes.CollectionIndexes`, shared with the PostgreSQL
store), whose candidates are re-scored exactly here from the stored float32 vectors.
The indexes are saved next to the database (``<data-dir>/index``) and brought up to
date from the change log (``face_changes``, kept by triggers in every writing
transaction), so a process does not reread a big collection to see another's writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visage.store.collection_indexes import CollectionIndexes, Run
from visage.store.sql import Dialect, no_collection
from visage.store.vector_index import TRAINING_VECTORS

#: How ``faces.vector`` holds a vector: float32, little-endian.
VECTOR_DTYPE = np.dtype("<f4")

#: A collection's last change, how far its log was trimmed, and its face count (see CollectionIndexes).
_STATE = (
    "SELECT coalesce((SELECT max(seq) FROM face_changes WHERE collection_pk = pk), changes_trimmed_to),"
    " changes_trimmed_to, face_count FROM collections WHERE pk = ?"
)


class SQLiteSearch:
    """The search caches and vector indexes of one :class:`~visage.store.sqlite.SQLiteStore`."""

    def __init__(self, run: Run, dialect: Dialect, index_dir: Path, exact_search_limit: int) -> None:
        self.exact_search_limit = exact_search_limit
        self._exact: dict[str, _Exact] = {}  # collection id (+ "\0users") -> its cached vectors
        self._load_lock = threading.Lock()
        self.indexes = CollectionIndexes(run, dialect, _STATE, _read_vectors, index_dir)

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
        keys = self.indexes.candidates(con, pk, query, limit + (exclude is not None), min_score)
        rows = con.execute(
            "SELECT face_id, vector FROM faces WHERE seq IN (SELECT value FROM json_each(?))",
            (json.dumps(keys.tolist()),),
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

    def warm(self) -> None:
        """Load (or build) the vector index of every big collection, so first searches are fast."""
        self.indexes.warm(self.exact_search_limit)

    def forget(self, collection_id: str, pk: int) -> None:
        """Drops the caches and the saved vector index of a deleted collection."""
        self._exact.pop(collection_id, None)
        self._exact.pop(f"{collection_id}\0users", None)
        self.indexes.forget(pk)

    def close(self) -> None:
        """Saves the vector indexes with unsaved changes and drops the caches."""
        self.indexes.close()
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


def _read_vectors(con: sqlite3.Connection, pk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every face of the collection: keys and vectors, in batches of ``TRAINING_VECTORS``."""
    cursor = con.execute("SELECT seq, vector FROM faces WHERE collection_pk = ?", (pk,))
    while batch := cursor.fetchmany(TRAINING_VECTORS):
        yield np.array([row[0] for row in batch], dtype=np.int64), _vectors([row[1] for row in batch])


def _vectors(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors (``faces.vector``), one per row of a float32 matrix."""
    if not blobs:
        return np.empty((0, 0), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).astype(np.float32, copy=False).reshape(len(blobs), -1)
