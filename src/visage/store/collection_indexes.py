"""The vector indexes of a store's big collections, kept true to the database's change log.

Both stores use it: the database is the shared truth, and each process keeps, per
big collection, a :class:`~visage.store.vector_index.VectorIndex` of its faces in
memory that proposes candidates, which the store then re-scores exactly from its rows.

The change log. Every insert and delete of a face writes a row to ``face_changes``
(collection, change number, the face's integer key ``faces.seq``, added or deleted),
from triggers in the writing transaction, so no write can skip it. A collection's
changes are numbered in commit order: SQLite writes one transaction at a time, and
PostgreSQL's triggers number them under the collection's row lock. Before each search
of a big collection the process reads the collection's last change number, its face
count and how far its log was trimmed (one indexed row), and folds in the changes its
index has not applied yet; when nothing changed that is all. An index is rebuilt from
the database when the log no longer reaches back to it (trimmed) or when, once caught
up, it holds another number of faces than the database (a save that went wrong, a log
edited by hand).

Saves. With an ``index_dir`` (the SQLite store: ``<data-dir>/index``) an index is saved
after its first build and every ``SAVE_INDEX_EVERY`` changes, and loaded at the next
start; the changes a save holds are then trimmed from the log. Without one (PostgreSQL,
whose servers may run on many machines and must not trust a local file) an index is
built from the database at start and lives in memory.

Whatever reads it, a collection's log is bounded by the writes themselves: each write
that changes its faces also drops its oldest changes once it holds more than twice what
it keeps (:meth:`CollectionIndexes.trim_log`): about as many changes as the collection
has faces, and at least ``KEEP_CHANGES``. A holder further behind than that (a vector
index, the embedded store's cached vectors of a small collection: see
:mod:`visage.store.sqlite_search`) reads the collection again, in about the time
replaying them would take; a collection written to and never searched keeps a log of
bounded length.

A collection deleted by another process. Its pk is never given again, so its index can
no longer answer a search; the process drops it from memory, and its saves from disk, at
its next search of a big collection, at most every ``SWEEP_SECONDS`` (one query over the
collections it holds). (A search in this process that began before the delete may also have
saved it after the delete's own discard; the sweep removes that save too.)

A backend supplies ``state_sql`` (the collection's last change, trimmed-to change and
face count, by row key) and ``read_vectors`` (every face's key and vector, in batches).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from visage.errors import StoreWriteError
from visage.store.sql import Connection, Dialect, dialect_sql
from visage.store.vector_index import VectorIndex

log = logging.getLogger("visage")

T = TypeVar("T")

#: A process saves a collection's vector index after folding in this many changes.
SAVE_INDEX_EVERY = 20_000
#: At least this many candidates of the vector index are re-scored exactly, whatever the limit: the
#: codes blur scores (by up to 0.15 in a cosine on real faces: benchmarks/search_scale.py).
RESCORED_CANDIDATES = 128
#: A collection's log keeps at least this many changes, and at least as many as it has faces.
KEEP_CHANGES = 10_000
#: At most this often, a search of a big collection drops the indexes of collections other processes deleted.
SWEEP_SECONDS = 60.0

#: Reads every face of a collection (by row key) as batches of (keys int64, float32 vectors one per row);
#: the first batch trains the index's codebooks, so it should hold up to ``TRAINING_VECTORS`` faces.
ReadVectors = Callable[[Connection, int], Iterator[tuple[np.ndarray, np.ndarray]]]


class Run(Protocol):
    """The store's ``_run``: ``fn`` in one transaction."""

    def __call__(self, fn: Callable[[Any], T], *, write: bool) -> T: ...


@dataclass
class _Ann:
    index: VectorIndex
    saved: int  # the change number of its last save by this process (0: not saved yet)


@dataclass(frozen=True)
class _State:
    """A collection's row, as of one transaction."""

    last: int  # the number of its newest change
    trimmed: int  # its log holds no change up to this number
    face_count: int


class CollectionIndexes:
    """The vector index of each big collection of one store, in this process."""

    def __init__(
        self,
        run: Run,
        dialect: Dialect,
        state_sql: str,
        read_vectors: ReadVectors,
        index_dir: Path | None = None,
    ) -> None:
        self._run = run
        self._dialect = dialect
        self._state_sql = state_sql
        self._read_vectors = read_vectors
        self.index_dir = index_dir
        self._ann: dict[int, _Ann] = {}  # collection pk -> vector index and what it has applied
        self._lock = threading.Lock()
        self._trim_to: list[tuple[int, int]] = []
        #: How often (seconds) a search looks for deleted collections among those held (0: every search).
        self.sweep_seconds = SWEEP_SECONDS
        self._next_sweep = time.monotonic() + SWEEP_SECONDS

    @property
    def held(self) -> frozenset[int]:
        """The pks of the collections whose vector index this process holds in memory."""
        with self._lock:
            return frozenset(self._ann)

    def candidates(self, con: Connection, pk: int, query: np.ndarray, limit: int, min_score: float) -> np.ndarray:
        """The keys (``faces.seq``) of the faces of collection ``pk`` that may be among the best ``limit``
        for ``query`` and may reach ``min_score``, with every change up to ``con``'s transaction folded in:
        at least ``RESCORED_CANDIDATES`` of them, for the store to re-score exactly."""
        index = self.current(con, pk)
        if query.shape != (index.dimension,):
            raise ValueError(
                f"The query vector has shape {query.shape}; this collection's vectors have {index.dimension} floats."
            )
        return index.search(query, max(limit, RESCORED_CANDIDATES), min_score).keys

    def current(self, con: Connection, pk: int) -> VectorIndex:
        """The collection's vector index, with every change up to this transaction folded in.

        Loaded from its last save or built (the first time, or when it and the database
        disagree), then caught up from the change log.
        """
        row = dialect_sql(con, self._dialect, self._state_sql, (pk,)).fetchone()
        state = _State(int(row[0]), int(row[1]), int(row[2]))
        self._sweep(con, pk)
        with self._lock:
            ann = self._ann.get(pk)
            if ann is None or ann.index.applied < state.trimmed:
                loaded = VectorIndex.load(self.index_dir, str(pk)) if self.index_dir is not None else None
                ann = _Ann(loaded, loaded.applied) if loaded is not None and loaded.applied >= state.trimmed else None
            if ann is not None and ann.index.applied < state.last:
                self._catch_up(con, pk, ann.index)
            # An index ahead of this transaction (another thread caught it up on a newer one) is not compared.
            if ann is None or (ann.index.applied == state.last and len(ann.index) != state.face_count):
                ann = _Ann(self._build(con, pk, state.last), 0)
            self._ann[pk] = ann
            self._save(pk, ann)
            return ann.index

    def _sweep(self, con: Connection, searched: int) -> None:
        """Drops the indexes of collections deleted since (by another process: a deletion here
        calls :meth:`forget`), if the last look was ``sweep_seconds`` ago."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.sweep_seconds
            others = sorted(set(self._ann) - {searched})
        if not others:
            return
        marks = ", ".join("?" * len(others))
        query = f"SELECT pk FROM collections WHERE pk IN ({marks})"
        alive = {int(row[0]) for row in dialect_sql(con, self._dialect, query, tuple(others))}
        with self._lock:
            for pk in set(others) - alive:
                self._ann.pop(pk, None)
                # (A search that began before the delete may have saved it after the deleter's discard.)
                if self.index_dir is not None:
                    VectorIndex.discard(self.index_dir, str(pk))
                log.info("dropped the vector index of collection %d, deleted", pk)

    def _save(self, pk: int, ann: _Ann) -> None:  # under self._lock
        """Saves the index (with an ``index_dir``) the first time and every ``SAVE_INDEX_EVERY`` change
        numbers (on SQLite these count other collections' changes too, so it may save sooner)."""
        if self.index_dir is None or not len(ann.index):
            return
        if ann.index.applied - ann.saved >= SAVE_INDEX_EVERY or ann.saved == 0:
            try:
                ann.index.save(self.index_dir, str(pk))
            except OSError as error:  # a full disk: search goes on from memory; the next save retries
                log.warning("could not save the vector index of collection %d in %s: %s", pk, self.index_dir, error)
                return
            ann.saved = ann.index.applied
            # Changes the saved file holds are no longer needed by anyone: a process behind it
            # reloads the file. (Trimmed in a later write transaction, not this read one.)
            self._trim_to.append((pk, ann.saved))

    def trim_log(self, con: Connection, pk: int) -> None:
        """Called last in a write that changed collection ``pk``'s faces, in its transaction:
        drops the oldest changes once the log holds more than twice what it keeps (about as
        many changes as the collection has faces, at least ``KEEP_CHANGES``), down to that.

        PostgreSQL numbers each collection's changes on their own; SQLite numbers all
        collections' changes in one sequence, so there the gap between two change numbers
        only bounds how many of the collection's changes lie between them: the changes are
        counted (from the newest, on the log's index) before any is dropped."""
        last, trimmed, face_count = dialect_sql(con, self._dialect, self._state_sql, (pk,)).fetchone()
        keep = max(int(face_count), KEEP_CHANGES)
        if last - trimmed <= 2 * keep:
            return
        newest = "SELECT seq FROM face_changes WHERE collection_pk = ? ORDER BY seq DESC LIMIT 1 OFFSET ?"
        if dialect_sql(con, self._dialect, newest, (pk, 2 * keep)).fetchone() is None:
            return  # at most 2 * keep changes
        (upto,) = dialect_sql(con, self._dialect, newest, (pk, keep)).fetchone()
        self._trim(con, pk, int(upto))  # the newest ``keep`` are kept

    def _trim(self, con: Connection, pk: int, upto: int) -> None:
        dialect_sql(con, self._dialect, "DELETE FROM face_changes WHERE collection_pk = ? AND seq <= ?", (pk, upto))
        dialect_sql(
            con,
            self._dialect,
            "UPDATE collections SET changes_trimmed_to = ? WHERE pk = ? AND changes_trimmed_to < ?",
            (upto, pk, upto),
        )

    def warm(self, limit: int) -> None:
        """Load (or build) the vector index of every collection of more than ``limit`` faces, so that
        first searches are fast."""
        query = "SELECT pk FROM collections WHERE face_count > ?"
        pks = self._run(lambda con: [row[0] for row in dialect_sql(con, self._dialect, query, (limit,))], write=False)
        for pk in pks:
            self._run(functools.partial(self._current_of, pk), write=False)
        self.trim_changes()

    def _current_of(self, pk: int, con: Connection) -> VectorIndex:
        return self.current(con, pk)

    def trim_changes(self) -> None:
        """Drops from the change log the changes a save holds (planned by a search)."""
        if not self._trim_to:
            return
        with self._lock:
            pending, self._trim_to = self._trim_to, []
        for pk, upto in pending:
            try:
                self._run(functools.partial(self._trim, pk=pk, upto=upto), write=True)
            except StoreWriteError as error:  # the log keeps these changes a while longer: harmless
                log.warning("could not trim the change log of collection %d: %s", pk, error)

    def forget(self, pk: int) -> None:
        """Drops the index, and its saves, of a deleted collection."""
        with self._lock:
            self._ann.pop(pk, None)
        if self.index_dir is not None:
            VectorIndex.discard(self.index_dir, str(pk))

    def close(self) -> None:
        """Saves the vector indexes with unsaved changes (if saved at all) and drops them."""
        with self._lock:
            for pk, ann in self._ann.items():
                if self.index_dir is not None and ann.index.applied > ann.saved and len(ann.index):
                    try:
                        ann.index.save(self.index_dir, str(pk))
                    except OSError as error:  # rebuilt or caught up from the database at the next start
                        log.warning("could not save the vector index of collection %d: %s", pk, error)
            self._ann.clear()

    def _build(self, con: Connection, pk: int, last: int) -> VectorIndex:
        """A new index of every face of the collection as of this transaction, whose last change is ``last``."""
        index = VectorIndex(applied=last)
        for keys, vectors in self._read_vectors(con, pk):
            index.add(keys, vectors)
        return index

    def _catch_up(self, con: Connection, pk: int, index: VectorIndex) -> None:
        """Fold the collection's changes after ``index.applied`` into the index."""
        changes = read_changes(con, self._dialect, pk, index.applied)
        if changes is None:
            return
        index.remove(changes.removed)
        if changes.added:
            keys = np.array([face.key for face in changes.added], dtype=np.int64)
            index.add(keys, np.stack([face.vector for face in changes.added]))
        index.applied = changes.last


@dataclass(frozen=True)
class AddedFace:
    """A face a holder of the collection's faces must add."""

    key: int  # faces.seq
    face_id: str
    vector: np.ndarray  # float32


@dataclass(frozen=True)
class Changes:
    """A collection's changes after some change number, folded into what a holder of its
    faces as of that number must drop and add to hold them as of ``last``."""

    removed: np.ndarray  # int64 keys (faces.seq) to drop, sorted
    added: list[AddedFace]  # faces to add, in key order
    last: int  # the newest change read


def read_changes(con: Connection, dialect: Dialect, pk: int, after: int) -> Changes | None:
    """The changes of collection ``pk`` after change number ``after``, as of ``con``'s
    transaction; None when there are none.

    The changes need not be replayed one by one. A face's changes alternate between
    insert and delete, so a holder holds a face whose first change since is a delete,
    and should hold it if its last change is an insert. (SQLite may give the key of the
    newest face, once deleted, to the next face inserted: a delete and an insert of one
    key.)
    """
    rows = dialect_sql(
        con,
        dialect,
        f"SELECT c.seq, c.face_seq, c.added, f.face_id, f.{dialect.vector_column} FROM face_changes c"
        " LEFT JOIN faces f ON f.seq = c.face_seq AND f.collection_pk = c.collection_pk"
        " WHERE c.collection_pk = ? AND c.seq > ? ORDER BY c.seq",
        (pk, after),
    ).fetchall()
    if not rows:
        return None
    first: dict[int, bool] = {}
    last: dict[int, tuple[bool, Any, Any]] = {}
    for _, face, is_add, face_id, vector in rows:
        first.setdefault(face, bool(is_add))
        last[face] = (bool(is_add), face_id, vector)
    return Changes(
        removed=np.array(sorted(face for face, is_add in first.items() if not is_add), dtype=np.int64),
        added=[
            AddedFace(face, face_id, dialect.vector_from_db(vector))
            for face, (is_add, face_id, vector) in sorted(last.items())
            if is_add and vector is not None
        ],
        last=int(rows[-1][0]),
    )
