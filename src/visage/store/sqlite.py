"""The embedded default store: one SQLite file (``<data-dir>/visage.db``).

This module owns the file's schema and its migrations, the connections to it and
how its SQL differs (:class:`SQLiteDialect`). The operations are written once in
:mod:`visage.store.sql`; search lives in :mod:`visage.store.sqlite_search`.

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
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from visage.errors import StoreWriteError
from visage.store.base import ScoredFace
from visage.store.sql import EXACT_SEARCH_LIMIT, Backoff, Dialect, SQLStore, chain_audit_log, utc
from visage.store.sqlite_search import VECTOR_DTYPE, SQLiteSearch

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0

#: Schema migrations; the database's ``PRAGMA user_version`` is how many have run.
#: Append new ones, never edit old ones. A step is a statement, or a function of the connection.
MIGRATIONS: tuple[tuple[str | Callable[[sqlite3.Connection], None], ...], ...] = (
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
    (
        # Access keys with their policies (they were in <data-dir>/keys.json), and the audit
        # log as a hash chain (visage.store.audit_chain), the records already written chained first.
        """CREATE TABLE access_keys (
            access_key_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            secret TEXT NOT NULL,  -- encrypted: a Fernet token (visage.keys.SecretBox)
            policy TEXT NOT NULL,  -- JSON (visage.policy)
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        ) WITHOUT ROWID""",
        "ALTER TABLE audit_log ADD COLUMN probe_sha256 TEXT",
        "ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok'",
        "ALTER TABLE audit_log ADD COLUMN details TEXT NOT NULL DEFAULT '{}'",  # a JSON object, as hashed
        "ALTER TABLE audit_log ADD COLUMN prev_hash TEXT",
        "ALTER TABLE audit_log ADD COLUMN hash TEXT",
        lambda con: chain_audit_log(con, SQLiteDialect()),
    ),
    (
        # The console: when each face was indexed, thumbnails kept on request, reviewers' decisions.
        "ALTER TABLE faces ADD COLUMN indexed_at TEXT",  # NULL for faces indexed before it was kept
        "ALTER TABLE collections ADD COLUMN keep_face_thumbnails INTEGER",  # NULL: as the server's setting
        """CREATE TABLE face_thumbnails (
            collection_pk INTEGER NOT NULL,
            face_id TEXT NOT NULL,
            jpeg BLOB NOT NULL,
            PRIMARY KEY (collection_pk, face_id),
            FOREIGN KEY (collection_pk, face_id) REFERENCES faces (collection_pk, face_id) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        """CREATE TABLE reviews (
            seq INTEGER PRIMARY KEY,
            collection_pk INTEGER NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            time TEXT NOT NULL,
            access_key_id TEXT NOT NULL,
            probe_sha256 TEXT NOT NULL,
            face_id TEXT NOT NULL,  -- no foreign key: the decision outlives the face
            similarity REAL NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('same', 'different', 'cannot_tell')),
            note TEXT NOT NULL
        )""",
        "CREATE INDEX reviews_by_probe ON reviews (collection_pk, probe_sha256)",
    ),
    (
        # Video jobs: a queue that survives restarts, and each job's results (visage.jobs).
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
            job_id TEXT NOT NULL UNIQUE,
            operation TEXT NOT NULL,
            request TEXT NOT NULL,  -- JSON
            access_key_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            status TEXT NOT NULL,  -- QUEUED, RUNNING, SUCCEEDED, FAILED
            status_message TEXT,
            video_metadata TEXT,  -- JSON
            client_token TEXT UNIQUE,
            request_digest TEXT NOT NULL,
            progress REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            worker TEXT,
            lease_until TEXT,
            started_at TEXT,
            finished_at TEXT
        )""",
        "CREATE INDEX jobs_by_status ON jobs (status, seq)",
        "CREATE INDEX jobs_by_finish ON jobs (finished_at)",
        """CREATE TABLE job_results (
            job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
            seq INTEGER NOT NULL,  -- time order within the job
            timestamp_ms INTEGER NOT NULL,
            person_index INTEGER,
            body TEXT NOT NULL,  -- JSON: a FaceDetection or a PersonMatch
            PRIMARY KEY (job_seq, seq)
        ) WITHOUT ROWID""",
        "CREATE INDEX job_results_by_person ON job_results (job_seq, person_index, seq)",
    ),
    (
        # A repeated AssociateFaces or DisassociateFaces answers with the first request's response.
        "ALTER TABLE request_tokens ADD COLUMN response TEXT",  # JSON; NULL: none kept
    ),
)


class SQLiteDialect(Dialect):
    """SQLite's SQL: times as fixed-width ISO 8601 text, vectors as float32 blobs, lists as JSON."""

    vector_column = "vector"
    lock = ""  # a write holds the whole database (BEGIN IMMEDIATE)
    lock_alone = ""
    null_safe_equal = "IS"
    duplicate = sqlite3.IntegrityError  # not seen in practice: writes are serial, the id check comes first
    hold_audit_log = ""  # a write holds the whole database (BEGIN IMMEDIATE), in every process

    def among(self, column: str, sqltype: str = "text") -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def list_to_db(self, values: Sequence[Any]) -> str:
        return json.dumps(list(values))

    def list_from_db(self, value: str) -> list[Any]:
        return list(json.loads(value))

    def time_to_db(self, moment: datetime) -> str:
        """Fixed-width ISO 8601 in UTC, so that text order is time order."""
        return utc(moment).isoformat(timespec="microseconds")

    def time_from_db(self, value: str) -> datetime:
        return datetime.fromisoformat(value)

    def vector_to_db(self, vector: np.ndarray) -> bytes:
        return np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()

    def vector_from_db(self, value: bytes) -> np.ndarray:
        return np.frombuffer(value, dtype=VECTOR_DTYPE).astype(np.float32)


class SQLiteStore(SQLStore):
    """A :class:`~visage.store.base.Store` in one SQLite file, safe to share between threads and processes."""

    dialect = SQLiteDialect()

    def __init__(
        self, path: Path | str, *, retry_for: float = 120.0, exact_search_limit: int = EXACT_SEARCH_LIMIT
    ) -> None:
        self.path = Path(path)
        self.retry_for = retry_for
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self.searcher = SQLiteSearch(self._run, self.dialect, self.path.parent / "index", exact_search_limit)
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

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool, single: bool = False) -> T:
        """Runs ``fn`` in one transaction, retried from the start while the database is busy (``single``
        changes nothing here: a transaction costs no round trip)."""
        backoff = Backoff(self.retry_for)
        while True:
            try:
                with self._connection() as con:
                    con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    result = fn(con)
                    con.execute("COMMIT")
                    return result
            except sqlite3.OperationalError as error:
                if _is_full(error):  # SQLite has rolled the transaction back; the connection is sound
                    raise StoreWriteError(
                        f"The store could not write to {self.path.parent} ({error}): its disk is full, "
                        "or a file reached its size limit. Nothing of this request was saved; "
                        "retry once space is freed."
                    ) from error
                if not _is_busy(error):
                    raise
                backoff.wait(error, str(self.path), "locked")

    def close(self) -> None:
        """Saves vector indexes with unsaved changes, then closes the idle connections; those
        in use close when their call returns."""
        self.searcher.close()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for con in idle:
            con.close()

    # Search ------------------------------------------------------------------------
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
            pk, best = self.searcher.top(con, collection_id, query, limit, min_score, exclude_face_id, with_user_only)
            faces = {face.face_id: face for face in self._faces_by_id(con, pk, [face_id for face_id, _ in best])}
            return [ScoredFace(faces[face_id], score) for face_id, score in best]

        found = self._run(read, write=False)
        self.searcher.indexes.trim_changes()
        return found

    def warm(self) -> None:
        """Load (or build) the vector index of every big collection, so first searches are fast."""
        self.searcher.warm()

    # Hooks of the shared operations ------------------------------------------------
    def _vector_length(self, con: sqlite3.Connection, pk: int, length: int) -> int:
        row = con.execute("SELECT length(vector) FROM faces WHERE collection_pk = ? LIMIT 1", (pk,)).fetchone()
        return length if row is None else row[0] // VECTOR_DTYPE.itemsize

    def _faces_changed(self, con: sqlite3.Connection, pk: int, added: int) -> None:
        # Triggers keep face_count and the change log; the new generation tells every
        # process's search cache to reload.
        con.execute("UPDATE collections SET generation = generation + 1 WHERE pk = ?", (pk,))
        if added:
            self.searcher.indexes.trim_log(con, pk)

    def _collection_deleted(self, collection_id: str, pk: int) -> None:
        self.searcher.forget(collection_id, pk)


# Schema ---------------------------------------------------------------------------------


def _migrate(con: sqlite3.Connection) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"The database has schema version {version}, newer than this Visage knows ({len(MIGRATIONS)});"
            " upgrade Visage."
        )
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            if callable(statement):
                statement(con)
            else:
                con.execute(statement)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _is_full(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed to write: SQLITE_FULL (no space), or an I/O error (a write past the
    file size limit, EFBIG, is reported as SQLITE_IOERR_WRITE)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
    message = str(error).lower()
    return "disk is full" in message or "disk i/o error" in message


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(error).lower()
    return "locked" in message or "busy" in message
