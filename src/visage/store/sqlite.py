"""The embedded default store: one SQLite file (``<data-dir>/visage.db``).

This module owns the file's schema and its migrations, the connections to it and
the in-process search cache. It implements :class:`visage.store.base.Store`.

Durability. The journal is WAL with ``synchronous=FULL``: every commit fsyncs the
WAL, so a write that returned survives a SIGKILL of the process *and* a crash of
the OS or a power cut. (``NORMAL`` would also survive a process kill, but could
lose the last commits on an OS crash; one fsync per write is cheap next to the
face model run that precedes it.)

Concurrency. Several threads and several processes may share the file. Each call
borrows a connection from a small pool (a connection is used by one thread at a
time), and runs in one transaction: ``BEGIN IMMEDIATE`` for writes, so a writer
takes the write lock up front and waits for it (``busy_timeout`` 30 s) instead of
failing half way. Should SQLite still report the database busy, the whole
transaction is retried with backoff; after ``retry_for`` seconds the caller gets
:class:`~visage.errors.ThrottlingException`, never "database is locked".

Search cache. Each collection row carries a ``generation`` bumped by every write
that changes its faces (add, delete, associate, disassociate). A search reads the
collection's (row key, generation) in its transaction and reloads the cached
vectors when they differ, so writes by other processes are seen. The row key is
never reused (AUTOINCREMENT), so a collection deleted and created again under the
same name cannot be mistaken for the old one.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from visage.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    ResourceAlreadyExistsException,
    ThrottlingException,
)
from visage.faces import BoundingBox
from visage.store.base import (
    AuditRecord,
    Collection,
    RequestToken,
    ScoredFace,
    StoredFace,
    User,
    check_batch,
    check_limit,
    no_collection,
    no_user,
)
from visage.store.vector_index import TRAINING_VECTORS, VectorIndex

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0
_VECTOR_DTYPE = np.dtype("<f4")  # float32, little-endian, as stored in faces.vector

#: Schema migrations; the database's ``PRAGMA user_version`` is how many have run.
#: Append new ones, never edit old ones.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE collections (
            pk INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: part of the search cache key
            collection_id TEXT NOT NULL UNIQUE,
            arn TEXT NOT NULL,
            face_model TEXT NOT NULL,
            face_model_version TEXT NOT NULL,
            created_at TEXT NOT NULL,
            generation INTEGER NOT NULL DEFAULT 0  -- bumped by every write to its faces
        )""",
        """CREATE TABLE tags (
            collection_pk INTEGER NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (collection_pk, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE faces (
            seq INTEGER PRIMARY KEY,
            collection_pk INTEGER NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            face_id TEXT NOT NULL,
            image_id TEXT NOT NULL,
            external_image_id TEXT,
            user_id TEXT,
            bbox_left REAL NOT NULL,
            bbox_top REAL NOT NULL,
            bbox_width REAL NOT NULL,
            bbox_height REAL NOT NULL,
            confidence REAL NOT NULL,
            image_hash TEXT,
            vector BLOB NOT NULL,  -- float32 little-endian
            UNIQUE (collection_pk, face_id)
        )""",
        "CREATE INDEX faces_by_user ON faces (collection_pk, user_id, face_id)",
        "CREATE INDEX faces_by_image ON faces (collection_pk, image_hash)",
        """CREATE TABLE users (
            seq INTEGER PRIMARY KEY,  -- creation order
            collection_pk INTEGER NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (collection_pk, user_id)
        )""",
        """CREATE TABLE request_tokens (
            collection_pk INTEGER NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            token TEXT NOT NULL,
            operation TEXT NOT NULL,
            request_digest TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (collection_pk, token)
        ) WITHOUT ROWID""",
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            access_key_id TEXT NOT NULL,
            operation TEXT NOT NULL,
            collection_id TEXT,  -- no foreign key: the log outlives collections
            threshold REAL,
            match_count INTEGER NOT NULL,
            best_similarity REAL,
            face_ids TEXT NOT NULL,  -- JSON array
            user_ids TEXT NOT NULL  -- JSON array
        )""",
        "CREATE INDEX audit_by_time ON audit_log (time, seq)",
    ),
    (
        # Scale: a per-collection face count and a log of face changes, both kept by
        # triggers in the writing transaction, so the vector index of a big collection can
        # be brought up to date (in this process or another) without rereading it.
        "ALTER TABLE collections ADD COLUMN face_count INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE collections ADD COLUMN changes_trimmed_to INTEGER NOT NULL DEFAULT 0",
        "UPDATE collections SET face_count = (SELECT count(*) FROM faces WHERE faces.collection_pk = collections.pk)",
        """CREATE TABLE face_changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            collection_pk INTEGER NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            face_seq INTEGER NOT NULL,  -- faces.seq, the key in the vector index
            added INTEGER NOT NULL  -- 1 added, 0 deleted
        )""",
        "CREATE INDEX face_changes_by_collection ON face_changes (collection_pk, seq)",
        """CREATE TRIGGER face_added AFTER INSERT ON faces BEGIN
            INSERT INTO face_changes (collection_pk, face_seq, added) VALUES (NEW.collection_pk, NEW.seq, 1);
            UPDATE collections SET face_count = face_count + 1 WHERE pk = NEW.collection_pk;
        END""",
        # Not when the whole collection goes (ON DELETE CASCADE): its log goes with it.
        """CREATE TRIGGER face_deleted AFTER DELETE ON faces
            WHEN EXISTS (SELECT 1 FROM collections WHERE pk = OLD.collection_pk) BEGIN
            INSERT INTO face_changes (collection_pk, face_seq, added) VALUES (OLD.collection_pk, OLD.seq, 0);
            UPDATE collections SET face_count = face_count - 1 WHERE pk = OLD.collection_pk;
        END""",
    ),
)

#: Collections up to this many faces are searched exactly; bigger ones through the vector index.
EXACT_SEARCH_LIMIT = 50_000
#: A process saves a collection's vector index after folding in this many changes.
SAVE_INDEX_EVERY = 20_000
#: At least this many candidates of the vector index are re-scored exactly, whatever the limit.
RESCORED_CANDIDATES = 128

_FACE_COLUMNS = (
    "face_id, image_id, external_image_id, user_id, bbox_left, bbox_top, bbox_width, bbox_height,"
    " confidence, image_hash, vector"
)
_IN_JSON = "IN (SELECT value FROM json_each(?))"  # one parameter for any number of ids


class SQLiteStore:
    """A :class:`~visage.store.base.Store` in one SQLite file, safe to share between threads and processes."""

    def __init__(
        self, path: Path | str, *, retry_for: float = 120.0, exact_search_limit: int = EXACT_SEARCH_LIMIT
    ) -> None:
        self.path = Path(path)
        self.retry_for = retry_for
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._indexes: dict[str, _Index] = {}
        self._load_lock = threading.Lock()
        self.index_dir = self.path.parent / "index"
        self._ann: dict[int, _Ann] = {}  # collection pk -> vector index and what it has applied
        self._ann_lock = threading.Lock()
        self._trim_to: list[tuple[int, int]] = []
        self.exact_search_limit = exact_search_limit
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._run(_migrate, write=True)

    # Connections and transactions -------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise RuntimeError(
                    f"SQLite could not use WAL mode on {self.path} (got {mode!r});"
                    " put the data directory on a local file system."
                )
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"The store on {self.path} is closed.")
            con = self._idle.pop() if self._idle else None
        if con is None:
            con = self._connect()
        try:
            yield con
        finally:
            if con.in_transaction:
                con.rollback()
            with self._lock:
                if self._closed:
                    con.close()
                else:
                    self._idle.append(con)

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Runs ``fn`` in one transaction, retried from the start while the database is busy."""
        delay = 0.01
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                with self._connection() as con:
                    con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    result = fn(con)
                    con.execute("COMMIT")
                    return result
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
                if time.monotonic() + delay > deadline:
                    raise ThrottlingException(
                        f"The database {self.path} stayed locked for {self.retry_for:.0f} s; retry later."
                    ) from error
                time.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        """Saves vector indexes with unsaved changes, then closes the idle connections; those
        in use close when their call returns."""
        with self._ann_lock:
            for pk, ann in self._ann.items():
                if ann.index.applied > ann.saved and len(ann.index):
                    ann.index.save(self.index_dir, str(pk))
            self._ann.clear()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for con in idle:
            con.close()
        self._indexes.clear()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Collections -------------------------------------------------------------------
    def create_collection(self, collection: Collection) -> None:
        def write(con: sqlite3.Connection) -> None:
            try:
                cursor = con.execute(
                    "INSERT INTO collections (collection_id, arn, face_model, face_model_version, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        collection.collection_id,
                        collection.arn,
                        collection.face_model,
                        collection.face_model_version,
                        _to_text(collection.created_at),
                    ),
                )
            except sqlite3.IntegrityError:
                raise ResourceAlreadyExistsException(
                    f"The collection {collection.collection_id} already exists; choose another CollectionId."
                ) from None
            _put_tags(con, cursor.lastrowid, collection.tags)

        self._run(write, write=True)

    def delete_collection(self, collection_id: str) -> None:
        def write(con: sqlite3.Connection) -> int:
            pk = _pk(con, collection_id)
            # Faces, users, tags, tokens and the change log go with it (ON DELETE CASCADE).
            con.execute("DELETE FROM collections WHERE pk = ?", (pk,))
            return pk

        pk = self._run(write, write=True)
        self._indexes.pop(collection_id, None)
        self._indexes.pop(f"{collection_id}\0users", None)
        with self._ann_lock:
            self._ann.pop(pk, None)
        VectorIndex.discard(self.index_dir, str(pk))

    def get_collection(self, collection_id: str) -> Collection:
        def read(con: sqlite3.Connection) -> Collection:
            row = con.execute(
                "SELECT pk, collection_id, arn, face_model, face_model_version, created_at"
                " FROM collections WHERE collection_id = ?",
                (collection_id,),
            ).fetchone()
            if row is None:
                raise no_collection(collection_id)
            return _collections(con, [row])[0]

        return self._run(read, write=False)

    def list_collections(self, after: str | None, limit: int) -> list[Collection]:
        def read(con: sqlite3.Connection) -> list[Collection]:
            rows = con.execute(
                "SELECT pk, collection_id, arn, face_model, face_model_version, created_at FROM collections"
                " WHERE collection_id > ? ORDER BY collection_id LIMIT ?",
                (after or "", check_limit(limit)),
            ).fetchall()
            return _collections(con, rows)

        return self._run(read, write=False)

    def count(self, collection_id: str) -> tuple[int, int]:
        def read(con: sqlite3.Connection) -> tuple[int, int]:
            pk = _pk(con, collection_id)
            faces = con.execute("SELECT face_count FROM collections WHERE pk = ?", (pk,)).fetchone()[0]
            users = con.execute("SELECT count(*) FROM users WHERE collection_pk = ?", (pk,)).fetchone()[0]
            return faces, users

        return self._run(read, write=False)

    # Faces -------------------------------------------------------------------------
    def add_faces(self, collection_id: str, faces: Sequence[StoredFace]) -> None:
        check_batch(faces)
        rows = [_face_row(face) for face in faces]

        def write(con: sqlite3.Connection) -> None:
            pk = _pk(con, collection_id)
            if not rows:
                return
            taken = con.execute(
                f"SELECT face_id FROM faces WHERE collection_pk = ? AND face_id {_IN_JSON} LIMIT 1",
                (pk, json.dumps([face.face_id for face in faces])),
            ).fetchone()
            if taken is not None:
                raise ConflictException(
                    f"The face {taken[0]} already exists in collection {collection_id}; give each face a new FaceId."
                )
            stored = con.execute("SELECT length(vector) FROM faces WHERE collection_pk = ? LIMIT 1", (pk,)).fetchone()
            if stored is not None and stored[0] != len(rows[0][-1]):
                size = _VECTOR_DTYPE.itemsize
                raise ValueError(
                    f"Collection {collection_id} holds vectors of {stored[0] // size} floats, not {len(faces[0].vector)}."
                )
            con.executemany(
                f"INSERT INTO faces (collection_pk, {_FACE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(pk, *row) for row in rows],
            )
            _bump(con, pk)

        self._run(write, write=True)

    def list_faces(
        self,
        collection_id: str,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[StoredFace]:
        sql = f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_pk = ? AND face_id > ?"
        params: list[Any] = [after or ""]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if face_ids is not None:
            sql += f" AND face_id {_IN_JSON}"
            params.append(json.dumps(list(face_ids)))
        sql += " ORDER BY face_id LIMIT ?"
        params.append(check_limit(limit))

        def read(con: sqlite3.Connection) -> list[StoredFace]:
            pk = _pk(con, collection_id)
            return [_face(row) for row in con.execute(sql, (pk, *params))]

        return self._run(read, write=False)

    def get_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[StoredFace]:
        def read(con: sqlite3.Connection) -> list[StoredFace]:
            return _faces_by_id(con, _pk(con, collection_id), face_ids)

        return self._run(read, write=False)

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        def write(con: sqlite3.Connection) -> list[str]:
            pk = _pk(con, collection_id)
            deleted = {
                row[0]
                for row in con.execute(
                    f"DELETE FROM faces WHERE collection_pk = ? AND face_id {_IN_JSON} RETURNING face_id",
                    (pk, json.dumps(list(face_ids))),
                )
            }
            if deleted:
                _bump(con, pk)
            return [face_id for face_id in dict.fromkeys(face_ids) if face_id in deleted]

        return self._run(write, write=True)

    def find_image(self, collection_id: str, image_hash: str, external_image_id: str | None) -> list[StoredFace]:
        def read(con: sqlite3.Connection) -> list[StoredFace]:
            rows = con.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_pk = ? AND image_hash = ?"
                " AND external_image_id IS ? ORDER BY face_id",
                (_pk(con, collection_id), image_hash, external_image_id),
            )
            return [_face(row) for row in rows]

        return self._run(read, write=False)

    def search(
        self,
        collection_id: str,
        vector: np.ndarray,
        limit: int,
        min_score: float,
        exclude_face_id: str | None = None,
        with_user_only: bool = False,
    ) -> list[ScoredFace]:
        query = np.asarray(vector, dtype=np.float32)

        def read(con: sqlite3.Connection) -> list[ScoredFace]:
            sql = "SELECT pk, generation, face_count FROM collections WHERE collection_id = ?"
            row = con.execute(sql, (collection_id,)).fetchone()
            if row is None:
                self._indexes.pop(collection_id, None)
                raise no_collection(collection_id)
            pk, generation, face_count = row
            if face_count > self.exact_search_limit and not with_user_only:
                best = self._approximate_top(con, pk, query, limit, min_score, exclude_face_id)
            else:
                # Users hold at most 100 faces each: their faces are few even in a big collection.
                key = f"{collection_id}\0users" if face_count > self.exact_search_limit else collection_id
                index = self._index(con, key, (pk, generation), users_only=key != collection_id)
                best = index.top(query, limit, min_score, exclude_face_id, with_user_only)
            faces = {face.face_id: face for face in _faces_by_id(con, pk, [face_id for face_id, _ in best])}
            return [ScoredFace(faces[face_id], score) for face_id, score in best]

        found = self._run(read, write=False)
        if self._trim_to:
            self._trim_changes()
        return found

    def _index(self, con: sqlite3.Connection, key: str, stamp: tuple[int, int], users_only: bool = False) -> _Index:
        """The cached vectors of the collection, reloaded if ``stamp`` (pk, generation) moved on."""
        index = self._indexes.get(key)
        if index is not None and index.stamp == stamp:
            return index
        with self._load_lock:  # one load at a time: a big collection is not read twice at once
            index = self._indexes.get(key)
            if index is None or index.stamp != stamp:
                index = _Index.load(con, stamp, users_only)
                self._indexes[key] = index
            return index

    # Big collections: the vector index proposes, the float32 vectors decide ------------
    def _approximate_top(
        self, con: sqlite3.Connection, pk: int, query: np.ndarray, limit: int, min_score: float, exclude: str | None
    ) -> list[tuple[str, float]]:
        ann = self._current_ann(con, pk)
        if query.shape != (ann.index.dimension,):
            raise ValueError(f"The query vector has shape {query.shape}; this collection's vectors have {ann.index.dimension} floats.")
        # The codes blur scores (by up to 0.15 in a cosine on real faces: benchmarks/search_scale.py):
        # ask for more candidates than needed; the exact re-scoring below sorts them.
        candidates = ann.index.search(query, max(limit + (exclude is not None), RESCORED_CANDIDATES), min_score)
        rows = con.execute(
            f"SELECT face_id, vector FROM faces WHERE seq {_IN_JSON}", (json.dumps(candidates.keys.tolist()),)
        ).fetchall()
        if not rows:
            return []
        scores = np.einsum("ij,j->i", _vectors([r[1] for r in rows]), query)
        best = sorted(
            ((face_id, float(score)) for (face_id, _), score in zip(rows, scores)
             if score >= np.float64(min_score) and face_id != exclude),
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
                self._save_ann(con, pk, ann)
            return ann

    def _save_ann(self, con: sqlite3.Connection, pk: int, ann: _Ann) -> None:
        ann.index.save(self.index_dir, str(pk))
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
            self._run(lambda con, pk=pk: self._current_ann(con, pk), write=False)
        self._trim_changes()

    def _trim_changes(self) -> None:
        with self._ann_lock:
            pending, self._trim_to = self._trim_to, []
        for pk, upto in pending:

            def write(con: sqlite3.Connection, pk: int = pk, upto: int = upto) -> None:
                con.execute("DELETE FROM face_changes WHERE collection_pk = ? AND seq <= ?", (pk, upto))
                con.execute(
                    "UPDATE collections SET changes_trimmed_to = max(changes_trimmed_to, ?) WHERE pk = ?", (upto, pk)
                )

            self._run(write, write=True)

    # Users -------------------------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        def write(con: sqlite3.Connection) -> None:
            pk = _pk(con, collection_id)
            if _replayed(con, pk, token):
                return
            try:
                con.execute(
                    "INSERT INTO users (collection_pk, user_id, created_at) VALUES (?, ?, ?)",
                    (pk, user_id, _to_text(_now())),
                )
            except sqlite3.IntegrityError:
                raise ConflictException(
                    f"The user {user_id} already exists in collection {collection_id}; choose another UserId."
                ) from None

        self._run(write, write=True)

    def delete_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        def write(con: sqlite3.Connection) -> None:
            pk = _pk(con, collection_id)
            if _replayed(con, pk, token):
                return
            if con.execute("DELETE FROM users WHERE collection_pk = ? AND user_id = ?", (pk, user_id)).rowcount == 0:
                raise no_user(collection_id, user_id)
            released = con.execute(
                "UPDATE faces SET user_id = NULL WHERE collection_pk = ? AND user_id = ?", (pk, user_id)
            ).rowcount
            if released:
                _bump(con, pk)

        self._run(write, write=True)

    def get_user(self, collection_id: str, user_id: str) -> User:
        def read(con: sqlite3.Connection) -> User:
            users = _users(con, _pk(con, collection_id), "AND user_id = ?", (user_id,))
            if not users:
                raise no_user(collection_id, user_id)
            return users[0]

        return self._run(read, write=False)

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[User]:
        def read(con: sqlite3.Connection) -> list[User]:
            pk = _pk(con, collection_id)
            return _users(con, pk, "AND user_id > ? ORDER BY user_id LIMIT ?", (after or "", check_limit(limit)))

        return self._run(read, write=False)

    def associate_faces(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], token: RequestToken | None = None
    ) -> None:
        self._set_user(collection_id, user_id, face_ids, token, associate=True)

    def disassociate_faces(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], token: RequestToken | None = None
    ) -> None:
        self._set_user(collection_id, user_id, face_ids, token, associate=False)

    def _set_user(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], token: RequestToken | None, associate: bool
    ) -> None:
        def write(con: sqlite3.Connection) -> None:
            pk = _pk(con, collection_id)
            if _replayed(con, pk, token):
                return
            user = con.execute("SELECT 1 FROM users WHERE collection_pk = ? AND user_id = ?", (pk, user_id))
            if user.fetchone() is None:
                raise no_user(collection_id, user_id)
            ids = json.dumps(list(face_ids))
            if associate:
                sql = f"UPDATE faces SET user_id = ? WHERE collection_pk = ? AND face_id {_IN_JSON}"
                params: tuple[Any, ...] = (user_id, pk, ids)
            else:
                sql = f"UPDATE faces SET user_id = NULL WHERE collection_pk = ? AND user_id = ? AND face_id {_IN_JSON}"
                params = (pk, user_id, ids)
            if con.execute(sql, params).rowcount:
                _bump(con, pk)

        self._run(write, write=True)

    # Tags --------------------------------------------------------------------------
    def set_tags(self, collection_id: str, tags: dict[str, str]) -> None:
        self._run(lambda con: _put_tags(con, _pk(con, collection_id), tags), write=True)

    def remove_tags(self, collection_id: str, keys: Sequence[str]) -> None:
        def write(con: sqlite3.Connection) -> None:
            con.execute(
                f"DELETE FROM tags WHERE collection_pk = ? AND key {_IN_JSON}",
                (_pk(con, collection_id), json.dumps(list(keys))),
            )

        self._run(write, write=True)

    # Idempotency tokens ------------------------------------------------------------
    def get_token(self, collection_id: str, token: str) -> RequestToken | None:
        def read(con: sqlite3.Connection) -> RequestToken | None:
            return _token(con, _pk(con, collection_id), token)

        return self._run(read, write=False)

    # Audit log ---------------------------------------------------------------------
    def append_audit(self, record: AuditRecord) -> None:
        row = (
            _to_text(record.time),
            record.access_key_id,
            record.operation,
            record.collection_id,
            record.threshold,
            record.match_count,
            record.best_similarity,
            json.dumps(record.face_ids),
            json.dumps(record.user_ids),
        )
        self._run(
            lambda con: con.execute(
                "INSERT INTO audit_log (time, access_key_id, operation, collection_id, threshold, match_count,"
                " best_similarity, face_ids, user_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            ),
            write=True,
        )

    def audit_records(self, since: datetime | None = None) -> list[AuditRecord]:
        def read(con: sqlite3.Connection) -> list[AuditRecord]:
            rows = con.execute(
                "SELECT time, access_key_id, operation, collection_id, threshold, match_count, best_similarity,"
                " face_ids, user_ids FROM audit_log WHERE time >= ? ORDER BY time, seq",
                (_to_text(since) if since is not None else "",),
            )
            return [
                AuditRecord(_from_text(t), key, op, cid, thr, n, best, json.loads(fids), json.loads(uids))
                for t, key, op, cid, thr, n, best, fids, uids in rows
            ]

        return self._run(read, write=False)


@dataclass(frozen=True)
class _Index:
    """One collection's vectors in memory, rows ordered by face_id."""

    stamp: tuple[int, int]  # (collection pk, generation) the rows were read at
    face_ids: list[str]
    has_user: np.ndarray  # bool, per row
    matrix: np.ndarray  # float32, (rows, dim)

    @classmethod
    def load(cls, con: sqlite3.Connection, stamp: tuple[int, int], users_only: bool = False) -> _Index:
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
    return np.frombuffer(b"".join(blobs), dtype=_VECTOR_DTYPE).astype(np.float32, copy=False).reshape(len(blobs), -1)


# Helpers working inside a transaction -------------------------------------------------


def _migrate(con: sqlite3.Connection) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"The database has schema version {version}, newer than this Visage knows ({len(MIGRATIONS)});"
            " upgrade Visage."
        )
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            con.execute(statement)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _pk(con: sqlite3.Connection, collection_id: str) -> int:
    row = con.execute("SELECT pk FROM collections WHERE collection_id = ?", (collection_id,)).fetchone()
    if row is None:
        raise no_collection(collection_id)
    return row[0]


def _bump(con: sqlite3.Connection, pk: int) -> None:
    con.execute("UPDATE collections SET generation = generation + 1 WHERE pk = ?", (pk,))


def _collections(con: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[Collection]:
    tags: dict[int, dict[str, str]] = {row[0]: {} for row in rows}
    for pk, key, value in con.execute(
        f"SELECT collection_pk, key, value FROM tags WHERE collection_pk {_IN_JSON}", (json.dumps(list(tags)),)
    ):
        tags[pk][key] = value
    return [
        Collection(cid, arn, model, version, _from_text(created), tags[pk])
        for pk, cid, arn, model, version, created in rows
    ]


def _put_tags(con: sqlite3.Connection, pk: int, tags: dict[str, str]) -> None:
    con.executemany(
        "INSERT INTO tags (collection_pk, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (collection_pk, key) DO UPDATE SET value = excluded.value",
        [(pk, key, value) for key, value in tags.items()],
    )


def _users(con: sqlite3.Connection, pk: int, where: str, params: tuple[Any, ...]) -> list[User]:
    rows = con.execute(
        "SELECT user_id, (SELECT count(*) FROM faces f"
        " WHERE f.collection_pk = u.collection_pk AND f.user_id = u.user_id)"
        f" FROM users u WHERE collection_pk = ? {where}",
        (pk, *params),
    )
    return [User(user_id, "ACTIVE" if n else "CREATED", n) for user_id, n in rows]


def _token(con: sqlite3.Connection, pk: int, token: str) -> RequestToken | None:
    row = con.execute(
        "SELECT token, operation, request_digest FROM request_tokens WHERE collection_pk = ? AND token = ?", (pk, token)
    ).fetchone()
    return RequestToken(*row) if row else None


def _replayed(con: sqlite3.Connection, pk: int, token: RequestToken | None) -> bool:
    """Records ``token``; True if the very same request already ran (its write must then be skipped).

    This closes the race of two identical requests that both passed the service's
    ``get_token`` check: the second one becomes a no-op instead of, say, a conflict.
    """
    if token is None:
        return False
    seen = _token(con, pk, token.token)
    if seen is None:
        con.execute(
            "INSERT INTO request_tokens (collection_pk, token, operation, request_digest, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (pk, token.token, token.operation, token.request_digest, _to_text(_now())),
        )
        return False
    if (seen.operation, seen.request_digest) != (token.operation, token.request_digest):
        raise IdempotentParameterMismatchException(
            f"ClientRequestToken {token.token} was already used with other parameters; use a new token."
        )
    return True


def _faces_by_id(con: sqlite3.Connection, pk: int, face_ids: Sequence[str]) -> list[StoredFace]:
    rows = con.execute(
        f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_pk = ? AND face_id {_IN_JSON}",
        (pk, json.dumps(list(face_ids))),
    )
    return [_face(row) for row in rows]


def _face_row(face: StoredFace) -> tuple[Any, ...]:
    """The values of ``_FACE_COLUMNS`` for a face."""
    vector = np.asarray(face.vector, dtype=_VECTOR_DTYPE)
    if vector.ndim != 1:
        raise ValueError(f"The vector of face {face.face_id} has shape {vector.shape}; it must be one-dimensional.")
    box = face.bounding_box
    return (
        face.face_id,
        face.image_id,
        face.external_image_id,
        face.user_id,
        box.left,
        box.top,
        box.width,
        box.height,
        face.confidence,
        face.image_hash,
        vector.tobytes(),
    )


def _face(row: tuple[Any, ...]) -> StoredFace:
    face_id, image_id, external_image_id, user_id, left, top, width, height, confidence, image_hash, vector = row
    return StoredFace(
        face_id=face_id,
        image_id=image_id,
        bounding_box=BoundingBox(left=left, top=top, width=width, height=height),
        confidence=confidence,
        vector=np.frombuffer(vector, dtype=_VECTOR_DTYPE).astype(np.float32),
        external_image_id=external_image_id,
        user_id=user_id,
        image_hash=image_hash,
    )


# Small pure helpers -------------------------------------------------------------------


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(error).lower()
    return "locked" in message or "busy" in message



def _now() -> datetime:
    return datetime.now(timezone.utc)


def _to_text(moment: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so that text order is time order."""
    if moment.tzinfo is None:
        raise ValueError(f"Datetimes must be timezone-aware, got naive {moment.isoformat()}.")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)

