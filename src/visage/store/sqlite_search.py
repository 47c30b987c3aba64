"""Search in the embedded store: exact over vectors cached in memory, or through a vector index.

:class:`SQLiteSearch` answers :meth:`~visage.store.sqlite.SQLiteStore.search` inside
the store's read transaction, and keeps what it needs between calls.

Small collections (up to ``exact_search_limit`` faces) are scored exactly, every face,
from their vectors cached in memory. The cache of a collection's faces knows the last
change of the collection's change log (``face_changes``, kept by triggers in every
writing transaction) that it holds. A search reads the collection's last change in its
transaction and, when the cache is behind, folds in the changes since (a delete drops a
row, an insert reads that one face), so writes by this and other processes are seen
without rereading the collection. The cache is read whole again only when the log no
longer reaches back to it (writes trim it to about as many changes as the collection has faces),
when more changes than faces are to be read, or when, caught up, it holds another number
of faces than the database. The row key is
never reused (AUTOINCREMENT), so a collection deleted and created again under the same
name cannot be mistaken for the old one.

Searches among the faces that belong to a user (SearchUsers, SearchUsersByImage) use a
second cache of those faces only, read whole again whenever the collection's
``generation`` moved on (bumped by every write to its faces or their users), since
associations are not in the change log. Users hold at most 100 faces each.

Big collections are searched through their vector index
(:class:`~visage.store.collection_indexes.CollectionIndexes`, shared with the PostgreSQL
store), whose candidates are re-scored exactly here from the stored float32 vectors.
The indexes are saved next to the database (``<data-dir>/index``) and brought up to
date from the same change log, so a process does not reread a big collection to see
another's writes.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visage.store.collection_indexes import Changes, CollectionIndexes, Run, read_changes
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
        self._dialect = dialect
        self._exact: dict[str, _Exact] = {}  # collection id (+ "\0users") -> its cached vectors
        #: collection id -> the version its cached vectors replaced, until a search finds them current
        self._older: dict[str, _Exact] = {}
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
            self._older.pop(collection_id, None)
            raise no_collection(collection_id)
        pk, generation, face_count = row
        if with_user_only:
            exact = self._users(con, f"{collection_id}\0users", (pk, generation))
        elif face_count > self.exact_search_limit:
            return pk, self._approximate_top(con, pk, query, limit, min_score, exclude_face_id)
        else:
            exact = self._faces(con, collection_id, pk)
        return pk, exact.top(query, limit, min_score, exclude_face_id)

    def _faces(self, con: sqlite3.Connection, key: str, pk: int) -> _Exact:
        """The cached vectors of every face of collection ``pk``, as of ``con``'s transaction:
        caught up from the change log, or read whole."""
        last, trimmed, face_count = con.execute(_STATE, (pk,)).fetchone()
        exact = self._exact.get(key)
        if exact is not None and exact.stamp == (pk, last):
            # Searches now see what the cache holds: the version before is let go (one whole
            # collection's worth of memory); a search in an older transaction reads the faces.
            self._older.pop(key, None)
            return exact
        with self._load_lock:  # one load at a time: a big collection is not read twice at once
            exact = newest = self._exact.get(key)
            if newest is not None and newest.stamp[0] != pk:
                exact = newest = None  # a collection deleted and created again under the same name
            ahead = newest is not None and newest.stamp[1] > last
            if ahead:
                # Another thread caught the cache up on a newer transaction than this one, which
                # cannot see the changes since: it starts from the version before, if not newer too.
                exact = self._older.get(key)
                if exact is not None and (exact.stamp[0] != pk or exact.stamp[1] > last):
                    exact = None
            # More changes to read than faces: reading the faces is the shorter way. (Change numbers
            # are shared by every collection here, so the gap may overstate them: a whole read is
            # then chosen sooner than needed, never wrongly.)
            if exact is not None and trimmed <= exact.stamp[1] < last and last - exact.stamp[1] <= face_count:
                exact = exact.caught_up(read_changes(con, self._dialect, pk, exact.stamp[1]), last)
            if exact is None or exact.stamp != (pk, last) or len(exact.face_ids) != face_count:
                exact = _Exact.load(con, (pk, last))
            if not ahead and exact is not newest:
                if newest is not None:
                    self._older[key] = newest
                self._exact[key] = exact
        return exact

    def _users(self, con: sqlite3.Connection, key: str, stamp: tuple[int, int]) -> _Exact:
        """The cached vectors of the faces that belong to a user, reread if ``stamp`` (pk,
        generation) moved on."""
        exact = self._exact.get(key)
        if exact is not None and exact.stamp == stamp:
            return exact
        with self._load_lock:
            exact = self._exact.get(key)
            if exact is None or exact.stamp != stamp:
                exact = _Exact.load(con, stamp, users_only=True)
                self._exact[key] = exact
            return exact

    # Big collections: the vector index proposes, the float32 vectors decide ------------
    def _approximate_top(
        self, con: sqlite3.Connection, pk: int, query: np.ndarray, limit: int, min_score: float, exclude: str | None
    ) -> list[tuple[str, float]]:
        keys = self.indexes.candidates(con, pk, query, limit + (exclude is not None), min_score)
        # The collection is named too: the index may be ahead of this transaction (caught up by
        # another thread), and SQLite gives a deleted newest face's key to the next face inserted,
        # in any collection, so a key it proposes may be another collection's face in this snapshot.
        rows = con.execute(
            "SELECT face_id, vector FROM faces WHERE collection_pk = ? AND seq IN (SELECT value FROM json_each(?))",
            (pk, json.dumps(keys.tolist())),
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
        self._older.pop(collection_id, None)
        self.indexes.forget(pk)

    def close(self) -> None:
        """Saves the vector indexes with unsaved changes and drops the caches."""
        self.indexes.close()
        self._exact.clear()
        self._older.clear()


@dataclass(frozen=True)
class _Exact:
    """Vectors of one collection's faces in memory, rows ordered by face_id. Never changed
    once made: a search may go on with it while the next one is made."""

    stamp: tuple[int, int]  # (collection pk, its last change or generation) the rows are as of
    face_ids: np.ndarray  # of str (dtype object), per row, sorted
    keys: np.ndarray  # int64 faces.seq, per row
    matrix: np.ndarray  # float32, (rows, dim)

    @classmethod
    def load(cls, con: sqlite3.Connection, stamp: tuple[int, int], users_only: bool = False) -> _Exact:
        where = " AND user_id IS NOT NULL" if users_only else ""
        rows = con.execute(
            f"SELECT face_id, seq, vector FROM faces WHERE collection_pk = ?{where} ORDER BY face_id",
            (stamp[0],),
        ).fetchall()
        return cls(
            stamp=stamp,
            face_ids=_strings([row[0] for row in rows]),
            keys=np.array([row[1] for row in rows], dtype=np.int64),
            matrix=_vectors([row[2] for row in rows]),
        )

    def caught_up(self, changes: Changes | None, last: int) -> _Exact:
        """These rows with ``changes`` folded in, as of change ``last``: one new matrix, the
        rows kept copied once and the added ones put in face_id order among them."""
        if changes is None:
            return dataclasses.replace(self, stamp=(self.stamp[0], last))
        keep = ~np.isin(self.keys, changes.removed)
        kept_ids = self.face_ids[keep]
        added = sorted(changes.added, key=lambda face: face.face_id)
        if not added:
            return _Exact((self.stamp[0], last), kept_ids, self.keys[keep], self.matrix[keep])
        added_ids = _strings([face.face_id for face in added])
        # Where each added face goes among the kept ones (the j-th added one: j places further on).
        at = np.searchsorted(kept_ids, added_ids) + np.arange(len(added))
        old = np.ones(len(kept_ids) + len(added), dtype=bool)
        old[at] = False
        face_ids = np.empty(len(old), dtype=object)
        face_ids[at], face_ids[old] = added_ids, kept_ids
        keys = np.empty(len(old), dtype=np.int64)
        keys[old], keys[at] = self.keys[keep], [face.key for face in added]
        vectors = np.stack([face.vector for face in added]).astype(np.float32, copy=False)
        matrix = np.empty((len(old), vectors.shape[1]), dtype=np.float32)
        matrix[at] = vectors
        if len(kept_ids):  # (an empty collection's matrix has no columns)
            matrix[old] = self.matrix if keep.all() else self.matrix[keep]
        return _Exact((self.stamp[0], last), face_ids, keys, matrix)

    def top(
        self, query: np.ndarray, limit: int, min_score: float, exclude_face_id: str | None
    ) -> list[tuple[str, float]]:
        """(face_id, score) of the best ``limit`` rows, by score desc then face_id asc."""
        if not len(self.face_ids) or limit <= 0:
            return []
        if query.shape != (self.matrix.shape[1],):
            dim = self.matrix.shape[1]
            raise ValueError(f"The query vector has shape {query.shape}; this collection's vectors have {dim} floats.")
        # einsum, not matmul: BLAS may round identical rows differently, and equal vectors must tie exactly.
        scores = np.einsum("ij,j->i", self.matrix, query)
        keep = scores >= np.float64(min_score)  # compared as float64, so every returned float(score) >= min_score
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
        return [(str(self.face_ids[row]), float(scores[row])) for row in rows]


def _read_vectors(con: sqlite3.Connection, pk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every face of the collection: keys and vectors, in batches of ``TRAINING_VECTORS``."""
    cursor = con.execute("SELECT seq, vector FROM faces WHERE collection_pk = ?", (pk,))
    while batch := cursor.fetchmany(TRAINING_VECTORS):
        yield np.array([row[0] for row in batch], dtype=np.int64), _vectors([row[1] for row in batch])


def _strings(values: list[str]) -> np.ndarray:
    """``values`` as a one-dimensional array of the same str objects."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _vectors(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors (``faces.vector``), one per row of a float32 matrix."""
    if not blobs:
        return np.empty((0, 0), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).astype(np.float32, copy=False).reshape(len(blobs), -1)
