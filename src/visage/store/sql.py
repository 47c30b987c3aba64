"""The SQL both stores share: the store operations, row codecs and messages, written once.

:class:`SQLStore` implements :class:`~visage.store.base.Store` for a SQL database. A
backend (:mod:`visage.store.sqlite`, :mod:`visage.store.postgres`) subclasses it and
supplies only what really differs:

- ``_run``: its connections and transactions (``fn(con)`` in one transaction, retried
  with :class:`Backoff` while the database is busy); the operations here are such ``fn``;
- a :class:`Dialect`: how its SQL spells placeholders, a list of values and a
  null-safe comparison, how it stores times, vectors and lists, how a write holds a row;
- ``search``, ``warm`` and ``close``;
- two hooks on its schema: ``_vector_length`` (the length a collection's vectors must
  have) and ``_faces_changed`` (what it derives from a collection's faces).

Queries here are written with ``?`` placeholders; :meth:`Dialect.sql` turns them into
the driver's. A list of values is one parameter whatever its length (:meth:`Dialect.among`).

Adding a table: a migration in each backend's ``MIGRATIONS`` (the DDL differs in its
types), then its operations here, once, with the dialect's codecs for times, vectors
and lists. A migration step may also be a function of the connection (:func:`chain_audit_log`).

The audit log is a hash chain (:mod:`visage.store.audit_chain`): :meth:`SQLStore.append_audit`
reads the head and appends after it while holding the log (:attr:`Dialect.hold_audit_log`),
so concurrent writers, in any process, queue instead of forking the chain.

Video jobs (``jobs``, ``job_results``) are a queue that several server processes share:
:meth:`SQLStore.claim_job` gives each queued job to one worker (SQLite: the write lock;
PostgreSQL: ``FOR UPDATE SKIP LOCKED``), whose lease :meth:`SQLStore.save_job_progress`
renews; :meth:`SQLStore.expire_jobs` takes back the jobs of workers that died.
"""

from __future__ import annotations

import functools
import json
import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import numpy as np

from visage.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ThrottlingException,
    collection_not_found,
    rekognition_message,
    user_face_limit,
)
from visage.faces import BoundingBox
from visage.store.audit_chain import GENESIS, details_json, record_hash
from visage.store.base import (
    AuditEntry,
    AuditRecord,
    Collection,
    JobResult,
    RequestToken,
    Review,
    StoredFace,
    StoredKey,
    User,
    VideoJob,
)

T = TypeVar("T")
#: A connection of either driver (sqlite3, psycopg) inside a transaction: ``execute`` returns a cursor.
Connection = Any

#: Collections up to this many faces are searched exactly; bigger ones through an index.
EXACT_SEARCH_LIMIT = 50_000
#: A LIMIT that limits nothing (both databases take a bigint).
_NO_LIMIT = 2**62

_COLLECTION_COLUMNS = "pk, collection_id, arn, face_model, face_model_version, created_at, keep_face_thumbnails"
_REVIEW_COLUMNS = "time, access_key_id, probe_sha256, face_id, similarity, decision, note"
_JOB_COLUMNS = (
    "job_id, operation, request, access_key_id, created_at, status, status_message, video_metadata,"
    " client_token, request_digest, progress, attempts, worker, lease_until, started_at, finished_at"
)
_ACTIVE_JOB = "status IN ('QUEUED', 'RUNNING')"
_AUDIT_COLUMNS = (
    "time, access_key_id, operation, collection_id, threshold, match_count, best_similarity, face_ids, user_ids,"
    " probe_sha256, outcome, details"
)
_KEY_COLUMNS = "access_key_id, name, secret, policy, created_at, last_used_at, revoked_at"


class Dialect:
    """What a backend's SQL spells, or stores, differently; the row codecs built on it."""

    #: The column of ``faces`` that holds the vector.
    vector_column: str
    #: Appended to the SELECT of a row a write depends on, to hold the row until the commit
    #: ("" where a write holds the whole database).
    lock: str
    #: Like ``lock``, but writes that hold the row wait for each other too (two AssociateFaces of
    #: one user must not both count its faces before either adds to them).
    lock_alone: str
    #: ``a <null_safe_equal> b`` is true when both are equal or both NULL.
    null_safe_equal: str
    #: What an INSERT raises when a unique key is taken.
    duplicate: type[Exception]
    #: A statement that holds the audit log until the commit, so that one writer at a time reads
    #: its head and appends ("" where a write holds the whole database).
    hold_audit_log: str
    #: Appended to the SELECT of the job a worker claims: rows other workers are claiming are
    #: skipped ("" where a write holds the whole database).
    claim_lock: str = ""
    #: A statement that makes job creations wait for each other within their transactions (the
    #: count of active jobs must not race); "" where a write holds the whole database.
    jobs_lock: str = ""

    def sql(self, query: str) -> str:
        """``query``, written with ``?`` placeholders, in the driver's."""
        return query

    def among(self, column: str, sqltype: str = "text") -> str:
        """A condition with one placeholder, for :meth:`list_to_db` of values of ``sqltype``:
        ``column`` is one of them."""
        raise NotImplementedError

    def list_to_db(self, values: Sequence[Any]) -> Any:
        """A list as one parameter (for :meth:`among`, or a column holding a list)."""
        raise NotImplementedError

    def list_from_db(self, value: Any) -> list[Any]:
        raise NotImplementedError

    def time_to_db(self, moment: datetime) -> Any:
        """A timezone-aware datetime as stored (ValueError for a naive one)."""
        raise NotImplementedError

    def time_from_db(self, value: Any) -> datetime:
        """A stored time as a timezone-aware UTC datetime."""
        raise NotImplementedError

    def vector_to_db(self, vector: np.ndarray) -> Any:
        """A one-dimensional float32 vector as stored."""
        raise NotImplementedError

    def vector_from_db(self, value: Any) -> np.ndarray:
        """A stored vector as float32."""
        raise NotImplementedError

    # Row codecs --------------------------------------------------------------------
    @property
    def face_columns(self) -> str:
        """The columns of ``faces`` that :meth:`face_row` fills and :meth:`face` reads, in order."""
        return (
            "face_id, image_id, external_image_id, user_id, bbox_left, bbox_top, bbox_width, bbox_height,"
            f" confidence, image_hash, indexed_at, {self.vector_column}"
        )

    def face_row(self, face: StoredFace) -> tuple[Any, ...]:
        """The values of :attr:`face_columns` for a face."""
        vector = np.asarray(face.vector, dtype=np.float32)
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
            None if face.indexed_at is None else self.time_to_db(face.indexed_at),
            self.vector_to_db(vector),
        )

    def optional_time_from_db(self, value: Any) -> datetime | None:
        return None if value is None else self.time_from_db(value)

    def optional_time_to_db(self, moment: datetime | None) -> Any:
        return None if moment is None else self.time_to_db(moment)

    def audit_row(self, record: AuditRecord) -> tuple[Any, ...]:
        """The values of ``_AUDIT_COLUMNS`` for a record."""
        return (
            self.time_to_db(record.time),
            record.access_key_id,
            record.operation,
            record.collection_id,
            record.threshold,
            record.match_count,
            record.best_similarity,
            self.list_to_db(record.face_ids),
            self.list_to_db(record.user_ids),
            record.probe_sha256,
            record.outcome,
            details_json(record.details),
        )

    def audit_record(self, row: Sequence[Any], seq: int | None = None) -> AuditRecord:
        """A record from the values of ``_AUDIT_COLUMNS``."""
        t, key, op, cid, threshold, n, best, face_ids, user_ids, probe, outcome, details = row
        return AuditRecord(
            self.time_from_db(t),
            key,
            op,
            cid,
            threshold,
            n,
            best,
            self.list_from_db(face_ids),
            self.list_from_db(user_ids),
            probe,
            outcome,
            json.loads(details),
            seq=seq,
        )

    def key_row(self, key: StoredKey) -> tuple[Any, ...]:
        """The values of ``_KEY_COLUMNS`` for a key."""
        return (
            key.access_key_id,
            key.name,
            key.secret,
            key.policy,
            self.time_to_db(key.created_at),
            self.optional_time_to_db(key.last_used_at),
            self.optional_time_to_db(key.revoked_at),
        )

    def stored_key(self, row: Sequence[Any]) -> StoredKey:
        """A key from the values of ``_KEY_COLUMNS``."""
        key_id, name, secret, policy, created, used, revoked = row
        return StoredKey(
            key_id,
            name,
            secret,
            policy,
            self.time_from_db(created),
            self.optional_time_from_db(used),
            self.optional_time_from_db(revoked),
        )

    def face(self, row: Sequence[Any]) -> StoredFace:
        """A face from the values of :attr:`face_columns`."""
        (
            face_id,
            image_id,
            external_image_id,
            user_id,
            left,
            top,
            width,
            height,
            confidence,
            image_hash,
            indexed,
            vector,
        ) = row
        return StoredFace(
            face_id=face_id,
            image_id=image_id,
            bounding_box=BoundingBox(left=left, top=top, width=width, height=height),
            confidence=confidence,
            vector=self.vector_from_db(vector),
            external_image_id=external_image_id,
            user_id=user_id,
            image_hash=image_hash,
            indexed_at=None if indexed is None else self.time_from_db(indexed),
        )

    def job_row(self, job: VideoJob) -> tuple[Any, ...]:
        """The values of the job columns for a job."""
        return (
            job.job_id,
            job.operation,
            json.dumps(job.request),
            job.access_key_id,
            self.time_to_db(job.created_at),
            job.status,
            job.status_message,
            None if job.video_metadata is None else json.dumps(job.video_metadata),
            job.client_token,
            job.request_digest,
            job.progress,
            job.attempts,
            job.worker,
            self._optional_time_to_db(job.lease_until),
            self._optional_time_to_db(job.started_at),
            self._optional_time_to_db(job.finished_at),
        )

    def job(self, row: Sequence[Any]) -> VideoJob:
        """A job from the values of the job columns."""
        (job_id, operation, request, key, created, status, message, metadata, token, digest) = row[:10]
        progress, attempts, worker, lease_until, started, finished = row[10:]
        return VideoJob(
            job_id=job_id,
            operation=operation,
            request=json.loads(request),
            access_key_id=key,
            created_at=self.time_from_db(created),
            status=status,
            status_message=message,
            video_metadata=None if metadata is None else json.loads(metadata),
            client_token=token,
            request_digest=digest,
            progress=float(progress),
            attempts=int(attempts),
            worker=worker,
            lease_until=self._optional_time_from_db(lease_until),
            started_at=self._optional_time_from_db(started),
            finished_at=self._optional_time_from_db(finished),
        )

    def _optional_time_to_db(self, moment: datetime | None) -> Any:
        return None if moment is None else self.time_to_db(moment)

    def _optional_time_from_db(self, value: Any) -> datetime | None:
        return None if value is None else self.time_from_db(value)


class SQLStore(ABC):
    """The operations of a :class:`~visage.store.base.Store` that read the same in every SQL
    backend. A backend adds its :class:`Dialect`, the methods below and ``search`` and ``warm``."""

    dialect: Dialect

    # What a backend supplies -------------------------------------------------------
    @abstractmethod
    def _run(self, fn: Callable[[Connection], T], *, write: bool, single: bool = False) -> T:
        """Runs ``fn`` in one transaction (a write one if ``write``), retried while the database is busy.
        ``single``: ``fn`` is one read statement, which needs no transaction; a backend may save one."""

    @abstractmethod
    def _vector_length(self, con: Connection, pk: int, length: int) -> int:
        """The length the vectors of collection ``pk`` have: that of its stored faces, or
        ``length`` if it has none yet (a backend may pin it then)."""

    @abstractmethod
    def _faces_changed(self, con: Connection, pk: int, added: int) -> None:
        """Called last in a write that changed the faces of collection ``pk`` (``added``: how
        many more there are, negative after a delete, 0 after a change of their users)."""

    def _collection_deleted(self, collection_id: str, pk: int) -> None:  # noqa: B027 - an optional hook
        """Called after a collection was deleted, to drop what the backend keeps of it
        outside the database (nothing by default)."""

    @abstractmethod
    def close(self) -> None:
        """Releases the connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Collections -------------------------------------------------------------------
    def create_collection(self, collection: Collection) -> None:
        created_at = self.dialect.time_to_db(collection.created_at)

        def write(con: Connection) -> None:
            row = self._row(
                con,
                "INSERT INTO collections"
                " (collection_id, arn, face_model, face_model_version, created_at, keep_face_thumbnails)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection_id) DO NOTHING RETURNING pk",
                (
                    collection.collection_id,
                    collection.arn,
                    collection.face_model,
                    collection.face_model_version,
                    created_at,
                    collection.keep_face_thumbnails,
                ),
            )
            if row is None:
                raise ResourceAlreadyExistsException(
                    f"The collection {collection.collection_id} already exists; choose another CollectionId."
                )
            self._put_tags(con, row[0], collection.tags)

        self._run(write, write=True)

    def delete_collection(self, collection_id: str) -> None:
        def write(con: Connection) -> int:
            # Its faces (and their thumbnails), users, tags, tokens and reviews go with it (ON DELETE CASCADE).
            row = self._row(con, "DELETE FROM collections WHERE collection_id = ? RETURNING pk", (collection_id,))
            if row is None:
                raise no_collection(collection_id)
            return int(row[0])

        self._collection_deleted(collection_id, self._run(write, write=True))

    def get_collection(self, collection_id: str) -> Collection:
        def read(con: Connection) -> Collection:
            query = f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE collection_id = ?"
            rows = self._sql(con, query, (collection_id,)).fetchall()
            if not rows:
                raise no_collection(collection_id)
            return self._collections(con, rows)[0]

        return self._run(read, write=False)

    def list_collections(self, after: str | None, limit: int) -> list[Collection]:
        def read(con: Connection) -> list[Collection]:
            rows = self._sql(
                con,
                f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE collection_id > ? ORDER BY collection_id LIMIT ?",
                (after or "", check_limit(limit)),
            ).fetchall()
            return self._collections(con, rows)

        return self._run(read, write=False)

    def count(self, collection_id: str) -> tuple[int, int]:
        def read(con: Connection) -> tuple[int, int]:
            row = self._row(
                con,
                "SELECT face_count, (SELECT count(*) FROM users WHERE users.collection_pk = collections.pk)"
                " FROM collections WHERE collection_id = ?",
                (collection_id,),
            )
            if row is None:
                raise no_collection(collection_id)
            return int(row[0]), int(row[1])

        return self._run(read, write=False)

    # Faces -------------------------------------------------------------------------
    def add_faces(
        self, collection_id: str, faces: Sequence[StoredFace], thumbnails: Mapping[str, bytes] | None = None
    ) -> None:
        check_batch(faces)
        rows = [self.dialect.face_row(face) for face in faces]
        d = self.dialect
        thumbnails = thumbnails or {}
        kept = [(face.face_id, thumbnails[face.face_id]) for face in faces if face.face_id in thumbnails]

        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            if not rows:
                return
            length = len(faces[0].vector)
            stored = self._vector_length(con, pk, length)
            if stored != length:
                raise ValueError(f"Collection {collection_id} holds vectors of {stored} floats, not {length}.")
            taken = self._row(
                con,
                f"SELECT face_id FROM faces WHERE collection_pk = ? AND {d.among('face_id')} ORDER BY face_id LIMIT 1",
                (pk, d.list_to_db([face.face_id for face in faces])),
            )
            if taken is not None:
                raise _face_taken(taken[0], collection_id)
            placeholders = ", ".join("?" * (1 + len(rows[0])))
            try:
                with closing(con.cursor()) as cursor:
                    cursor.executemany(
                        d.sql(f"INSERT INTO faces (collection_pk, {d.face_columns}) VALUES ({placeholders})"),
                        [(pk, *row) for row in rows],
                    )
            except d.duplicate:  # a concurrent call stored one of these ids first
                raise _face_taken("of this batch", collection_id) from None
            if kept:
                with closing(con.cursor()) as cursor:
                    cursor.executemany(
                        d.sql("INSERT INTO face_thumbnails (collection_pk, face_id, jpeg) VALUES (?, ?, ?)"),
                        [(pk, face_id, jpeg) for face_id, jpeg in kept],
                    )
            self._faces_changed(con, pk, len(rows))

        self._run(write, write=True)

    def list_faces(
        self,
        collection_id: str,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
        external_image_id: str | None = None,
    ) -> list[StoredFace]:
        d = self.dialect
        query = f"SELECT {d.face_columns} FROM faces WHERE collection_pk = ? AND face_id > ?"
        params: list[Any] = [after or ""]
        if user_id is not None:
            query += " AND user_id = ?"
            params.append(user_id)
        if external_image_id is not None:
            query += " AND external_image_id = ?"
            params.append(external_image_id)
        if face_ids is not None:
            query += f" AND {d.among('face_id')}"
            params.append(d.list_to_db(face_ids))
        query += " ORDER BY face_id LIMIT ?"
        params.append(check_limit(limit))

        def read(con: Connection) -> list[StoredFace]:
            pk = self._pk(con, collection_id)
            return [d.face(row) for row in self._sql(con, query, (pk, *params))]

        return self._run(read, write=False)

    def get_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[StoredFace]:
        return self._run(lambda con: self._faces_by_id(con, self._pk(con, collection_id), face_ids), write=False)

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        def write(con: Connection) -> list[str]:
            pk = self._pk(con, collection_id, lock=True)
            rows = self._sql(
                con,
                f"DELETE FROM faces WHERE collection_pk = ? AND {self.dialect.among('face_id')} RETURNING face_id",
                (pk, self.dialect.list_to_db(face_ids)),
            )
            deleted = {row[0] for row in rows}
            if deleted:
                self._faces_changed(con, pk, -len(deleted))
            return [face_id for face_id in dict.fromkeys(face_ids) if face_id in deleted]

        return self._run(write, write=True)

    def get_thumbnails(self, collection_id: str, face_ids: Sequence[str]) -> dict[str, bytes]:
        d = self.dialect

        def read(con: Connection) -> dict[str, bytes]:
            query = f"SELECT face_id, jpeg FROM face_thumbnails WHERE collection_pk = ? AND {d.among('face_id')}"
            rows = self._sql(con, query, (self._pk(con, collection_id), d.list_to_db(face_ids)))
            return {face_id: bytes(jpeg) for face_id, jpeg in rows}

        return self._run(read, write=False)

    def set_keep_face_thumbnails(self, collection_id: str, keep: bool | None) -> None:
        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            self._sql(con, "UPDATE collections SET keep_face_thumbnails = ? WHERE pk = ?", (keep, pk))

        self._run(write, write=True)

    def find_image(self, collection_id: str, image_hash: str, external_image_id: str | None) -> list[StoredFace]:
        d = self.dialect

        def read(con: Connection) -> list[StoredFace]:
            rows = self._sql(
                con,
                f"SELECT {d.face_columns} FROM faces WHERE collection_pk = ? AND image_hash = ?"
                f" AND external_image_id {d.null_safe_equal} ? ORDER BY face_id",
                (self._pk(con, collection_id), image_hash, external_image_id),
            )
            return [d.face(row) for row in rows]

        return self._run(read, write=False)

    # Users -------------------------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            if self._replayed(con, pk, token):
                return
            created = self._row(
                con,
                "INSERT INTO users (collection_pk, user_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (pk, user_id, self.dialect.time_to_db(_now())),
            )
            if created is None:
                raise ConflictException(
                    f"The user {user_id} already exists in collection {collection_id}; choose another UserId."
                )

        self._run(write, write=True)

    def delete_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            if self._replayed(con, pk, token):
                return
            deleted = self._sql(con, "DELETE FROM users WHERE collection_pk = ? AND user_id = ?", (pk, user_id))
            if deleted.rowcount == 0:
                raise no_user(collection_id, user_id)
            # The faces stay (as in Rekognition); the pictures of the person go with the user.
            self._sql(
                con,
                "DELETE FROM face_thumbnails WHERE collection_pk = ? AND face_id IN"
                " (SELECT face_id FROM faces WHERE collection_pk = ? AND user_id = ?)",
                (pk, pk, user_id),
            )
            released = self._sql(
                con, "UPDATE faces SET user_id = NULL WHERE collection_pk = ? AND user_id = ?", (pk, user_id)
            )
            if released.rowcount:
                self._faces_changed(con, pk, 0)

        self._run(write, write=True)

    def get_user(self, collection_id: str, user_id: str) -> User:
        def read(con: Connection) -> User:
            users = self._users(con, self._pk(con, collection_id), "AND u.user_id = ?", (user_id,))
            if not users:
                raise no_user(collection_id, user_id)
            return users[0]

        return self._run(read, write=False)

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[User]:
        def read(con: Connection) -> list[User]:
            pk = self._pk(con, collection_id)
            return self._users(
                con, pk, "AND u.user_id > ? ORDER BY u.user_id LIMIT ?", (after or "", check_limit(limit))
            )

        return self._run(read, write=False)

    def associate_faces(
        self,
        collection_id: str,
        user_id: str,
        face_ids: Sequence[str],
        token: RequestToken | None = None,
        max_faces: int | None = None,
    ) -> None:
        self._set_user(collection_id, user_id, face_ids, token, associate=True, max_faces=max_faces)

    def disassociate_faces(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], token: RequestToken | None = None
    ) -> None:
        self._set_user(collection_id, user_id, face_ids, token, associate=False)

    def _set_user(
        self,
        collection_id: str,
        user_id: str,
        face_ids: Sequence[str],
        token: RequestToken | None,
        associate: bool,
        max_faces: int | None = None,
    ) -> None:
        d = self.dialect

        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            if self._replayed(con, pk, token):
                return
            # The user's row is held: a concurrent DeleteUser waits, so no face is left
            # pointing at a deleted user, and so does another association of this user, so
            # the two cannot together pass the user's limit of faces.
            query = f"SELECT 1 FROM users WHERE collection_pk = ? AND user_id = ?{d.lock_alone}"
            if self._row(con, query, (pk, user_id)) is None:
                raise no_user(collection_id, user_id)
            ids = d.list_to_db(face_ids)
            if associate:  # a face another user took meanwhile stays theirs
                query = (
                    f"UPDATE faces SET user_id = ? WHERE collection_pk = ? AND (user_id IS NULL OR user_id = ?) "
                    f"AND {d.among('face_id')}"
                )
                params: tuple[Any, ...] = (user_id, pk, user_id, ids)
            else:
                query = (
                    f"UPDATE faces SET user_id = NULL WHERE collection_pk = ? AND user_id = ? AND {d.among('face_id')}"
                )
                params = (pk, user_id, ids)
            changed = self._sql(con, query, params).rowcount
            if associate and max_faces is not None:  # the user's row is held: no other association runs now
                row = self._row(
                    con, "SELECT COUNT(*) FROM faces WHERE collection_pk = ? AND user_id = ?", (pk, user_id)
                )
                held = int(row[0]) if row else 0
                if held > max_faces:
                    raise ServiceQuotaExceededException(user_face_limit(user_id, held, max_faces))
            if changed:
                self._faces_changed(con, pk, 0)

        self._run(write, write=True)

    # Tags --------------------------------------------------------------------------
    def set_tags(self, collection_id: str, tags: dict[str, str]) -> None:
        self._run(lambda con: self._put_tags(con, self._pk(con, collection_id, lock=True), tags), write=True)

    def remove_tags(self, collection_id: str, keys: Sequence[str]) -> None:
        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            query = f"DELETE FROM tags WHERE collection_pk = ? AND {self.dialect.among('key')}"
            self._sql(con, query, (pk, self.dialect.list_to_db(keys)))

        self._run(write, write=True)

    # Idempotency tokens ------------------------------------------------------------
    def get_token(self, collection_id: str, token: str) -> RequestToken | None:
        return self._run(lambda con: self._token(con, self._pk(con, collection_id), token), write=False)

    def set_token_response(self, collection_id: str, token: str, response: str) -> None:
        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id)
            self._sql(
                con,
                "UPDATE request_tokens SET response = ? WHERE collection_pk = ? AND token = ?",
                (response, pk, token),
            )

        self._run(write, write=True)

    # Reviews -----------------------------------------------------------------------
    def add_review(self, review: Review, audit: AuditRecord) -> None:
        d = self.dialect
        row = (
            d.time_to_db(review.time),
            review.access_key_id,
            review.probe_sha256,
            review.face_id,
            review.similarity,
            review.decision,
            review.note,
        )

        def write(con: Connection) -> None:
            pk = self._pk(con, review.collection_id, lock=True)
            self._sql(
                con,
                f"INSERT INTO reviews (collection_pk, {_REVIEW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pk, *row),
            )
            self._append_audit(con, audit)

        self._run(write, write=True)

    def reviews(self, collection_id: str, probe_sha256: str | None = None) -> list[Review]:
        d = self.dialect
        query = f"SELECT {_REVIEW_COLUMNS} FROM reviews WHERE collection_pk = ?"
        params: tuple[Any, ...] = ()
        if probe_sha256 is not None:
            query += " AND probe_sha256 = ?"
            params = (probe_sha256,)
        query += " ORDER BY seq"

        def read(con: Connection) -> list[Review]:
            rows = self._sql(con, query, (self._pk(con, collection_id), *params))
            return [
                Review(d.time_from_db(t), key, collection_id, probe, face_id, similarity, decision, note)
                for t, key, probe, face_id, similarity, decision, note in rows
            ]

        return self._run(read, write=False)

    # Access keys -------------------------------------------------------------------
    def add_access_key(self, key: StoredKey, audit: AuditRecord | None = None) -> None:
        def write(con: Connection) -> None:
            self._insert_key(con, key)
            if audit is not None:
                self._append_audit(con, audit)

        self._run(write, write=True)

    def get_access_key(self, access_key_id: str) -> StoredKey | None:
        query = f"SELECT {_KEY_COLUMNS} FROM access_keys WHERE access_key_id = ?"

        def read(con: Connection) -> StoredKey | None:
            row = self._row(con, query, (access_key_id,))
            return None if row is None else self.dialect.stored_key(row)

        return self._run(read, write=False, single=True)  # every signed request reads its key

    def list_access_keys(self) -> list[StoredKey]:
        query = f"SELECT {_KEY_COLUMNS} FROM access_keys ORDER BY created_at, access_key_id"
        return self._run(lambda con: [self.dialect.stored_key(row) for row in self._sql(con, query)], write=False)

    def revoke_access_key(self, access_key_id: str, at: datetime, audit: AuditRecord | None = None) -> StoredKey:
        def write(con: Connection) -> StoredKey:
            row = self._row(
                con,
                f"UPDATE access_keys SET revoked_at = coalesce(revoked_at, ?) WHERE access_key_id = ?"
                f" RETURNING {_KEY_COLUMNS}",
                (self.dialect.time_to_db(at), access_key_id),
            )
            if row is None:
                raise no_key(access_key_id)
            if audit is not None:
                self._append_audit(con, audit)
            return self.dialect.stored_key(row)

        return self._run(write, write=True)

    def rotate_access_key(self, access_key_id: str, new: StoredKey, audit: AuditRecord | None = None) -> None:
        def write(con: Connection) -> None:
            revoked = self._row(
                con,
                "UPDATE access_keys SET revoked_at = ? WHERE access_key_id = ? AND revoked_at IS NULL RETURNING 1",
                (self.dialect.time_to_db(new.created_at), access_key_id),
            )
            if revoked is None:
                raise no_key(access_key_id, active=True)
            self._insert_key(con, new)
            if audit is not None:
                self._append_audit(con, audit)

        self._run(write, write=True)

    def touch_access_key(self, access_key_id: str, at: datetime) -> None:
        moment = self.dialect.time_to_db(at)
        query = "UPDATE access_keys SET last_used_at = ? WHERE access_key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
        self._run(lambda con: self._sql(con, query, (moment, access_key_id, moment)), write=True)

    def _insert_key(self, con: Connection, key: StoredKey) -> None:
        added = self._row(
            con,
            f"INSERT INTO access_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
            self.dialect.key_row(key),
        )
        if added is None:
            raise ConflictException(f"The access key {key.access_key_id} already exists.")

    # Audit log ---------------------------------------------------------------------
    def append_audit(self, record: AuditRecord) -> AuditEntry:
        return self._run(functools.partial(self._append_audit, record=record), write=True)

    def _append_audit(self, con: Connection, record: AuditRecord) -> AuditEntry:
        """Appends ``record`` to the chain in ``con``'s write transaction."""
        d = self.dialect
        row = d.audit_row(record)
        if d.hold_audit_log:
            self._sql(con, d.hold_audit_log)
        head = self._row(con, "SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        prev = head[0] if head is not None and head[0] is not None else GENESIS
        digest = record_hash(record, prev)
        inserted = self._row(
            con,
            f"INSERT INTO audit_log ({_AUDIT_COLUMNS}, prev_hash, hash)"
            f" VALUES ({', '.join('?' * (len(row) + 2))}) RETURNING seq",
            (*row, prev, digest),
        )
        assert inserted is not None
        seq = int(inserted[0])
        return AuditEntry(seq, replace(record, seq=seq), prev, digest)

    def audit_records(
        self,
        since: datetime | None = None,
        *,
        until: datetime | None = None,
        access_key_id: str | None = None,
        operation: str | None = None,
        collection_id: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        d = self.dialect
        conditions, params = [], []
        for condition, value in (
            ("time >= ?", None if since is None else d.time_to_db(since)),
            ("time < ?", None if until is None else d.time_to_db(until)),
            ("access_key_id = ?", access_key_id),
            ("operation = ?", operation),
            ("collection_id = ?", collection_id),
            ("outcome = ?", outcome),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        query = f"SELECT {_AUDIT_COLUMNS}, seq FROM audit_log"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY time DESC, seq DESC" if newest_first else " ORDER BY time, seq"
        query += " LIMIT ? OFFSET ?"
        params += [_NO_LIMIT if limit is None else check_limit(limit), check_limit(offset)]

        def read(con: Connection) -> list[AuditRecord]:
            return [d.audit_record(row[:-1], seq=int(row[-1])) for row in self._sql(con, query, params)]

        return self._run(read, write=False)

    def audit_entries(self, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        d = self.dialect
        query = f"SELECT {_AUDIT_COLUMNS}, seq, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"

        def read(con: Connection) -> list[AuditEntry]:
            return [
                AuditEntry(int(row[-3]), d.audit_record(row[:-3], seq=int(row[-3])), row[-2], row[-1])
                for row in self._sql(con, query, (after_seq, check_limit(limit)))
            ]

        return self._run(read, write=False)

    # Video jobs --------------------------------------------------------------------
    def create_job(self, job: VideoJob, max_active: int) -> VideoJob:
        d = self.dialect

        def write(con: Connection) -> VideoJob:
            if d.jobs_lock:
                self._sql(con, d.jobs_lock)
            if job.client_token is not None:
                row = self._row(con, f"SELECT {_JOB_COLUMNS} FROM jobs WHERE client_token = ?", (job.client_token,))
                if row is not None:
                    earlier = d.job(row)
                    if earlier.request_digest != job.request_digest:
                        raise IdempotentParameterMismatchException(
                            f"ClientRequestToken {job.client_token} was already used with a different "
                            f"{earlier.operation} request (job {earlier.job_id}); use a new token for a new job."
                        )
                    return earlier
            active = self._row(con, f"SELECT count(*) FROM jobs WHERE {_ACTIVE_JOB}")
            if active is not None and active[0] >= max_active:
                raise LimitExceededException(
                    f"{active[0]} video jobs are queued or running, as many as this server takes at once"
                    f" ({max_active}); start this one when one of them has finished."
                )
            placeholders = ", ".join("?" * len(_JOB_COLUMNS.split(",")))
            self._sql(con, f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({placeholders})", d.job_row(job))
            return job

        return self._run(write, write=True)

    def get_job(self, job_id: str) -> VideoJob:
        def read(con: Connection) -> VideoJob:
            row = self._row(con, f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))
            if row is None:
                raise no_job(job_id)
            return self.dialect.job(row)

        return self._run(read, write=False)

    def list_jobs(self, limit: int, offset: int = 0) -> list[VideoJob]:
        query = f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ? OFFSET ?"
        params = (check_limit(limit), max(0, offset))
        return self._run(lambda con: [self.dialect.job(row) for row in self._sql(con, query, params)], write=False)

    def claim_job(self, worker: str, lease_until: datetime) -> VideoJob | None:
        d = self.dialect
        oldest = "SELECT seq FROM jobs WHERE status = 'QUEUED' ORDER BY seq LIMIT 1"
        # A look first, in a read: most calls find the queue empty and need not wait for the write lock.
        if self._run(lambda con: self._row(con, oldest), write=False) is None:
            return None

        def write(con: Connection) -> VideoJob | None:
            row = self._row(con, oldest + d.claim_lock)
            if row is None:
                return None
            self._sql(con, "DELETE FROM job_results WHERE job_seq = ?", (row[0],))  # an earlier attempt's
            claimed = self._row(
                con,
                "UPDATE jobs SET status = 'RUNNING', worker = ?, lease_until = ?, started_at = ?, progress = 0,"
                f" attempts = attempts + 1 WHERE seq = ? RETURNING {_JOB_COLUMNS}",
                (worker, d.time_to_db(lease_until), d.time_to_db(_now()), row[0]),
            )
            return None if claimed is None else d.job(claimed)

        return self._run(write, write=True)

    def save_job_progress(
        self,
        job_id: str,
        worker: str,
        lease_until: datetime,
        progress: float,
        results: Sequence[JobResult] = (),
        video_metadata: dict[str, Any] | None = None,
    ) -> bool:
        d = self.dialect
        metadata = None if video_metadata is None else json.dumps(video_metadata)

        def write(con: Connection) -> bool:
            held = self._row(
                con,
                "UPDATE jobs SET lease_until = ?, progress = ?, video_metadata = coalesce(?, video_metadata)"
                " WHERE job_id = ? AND worker = ? AND status = 'RUNNING'"
                " RETURNING seq, (SELECT coalesce(max(r.seq), 0) FROM job_results r WHERE r.job_seq = jobs.seq)",
                (d.time_to_db(lease_until), progress, metadata, job_id, worker),
            )
            if held is None:
                return False
            job_seq, last = held
            with closing(con.cursor()) as cursor:
                cursor.executemany(
                    d.sql(
                        "INSERT INTO job_results (job_seq, seq, timestamp_ms, person_index, body)"
                        " VALUES (?, ?, ?, ?, ?)"
                    ),
                    [
                        (job_seq, last + i, r.timestamp_ms, r.person_index, json.dumps(r.body))
                        for i, r in enumerate(results, start=1)
                    ],
                )
            return True

        return self._run(write, write=True)

    def finish_job(
        self,
        job_id: str,
        worker: str,
        status: str,
        message: str | None = None,
        renumber: Mapping[int, int] | None = None,
        audit: AuditRecord | None = None,
    ) -> VideoJob | None:
        if status not in ("SUCCEEDED", "FAILED"):
            raise ValueError(f"A job finishes SUCCEEDED or FAILED, not {status}.")
        d = self.dialect
        query = (
            "UPDATE jobs SET status = ?, status_message = ?, finished_at = ?, worker = NULL, lease_until = NULL,"
            " progress = CASE WHEN ? = 'SUCCEEDED' THEN 1.0 ELSE progress END"
            f" WHERE job_id = ? AND worker = ? AND status = 'RUNNING' RETURNING {_JOB_COLUMNS}"
        )
        params = (status, message, d.time_to_db(_now()), status, job_id, worker)

        def write(con: Connection) -> VideoJob | None:
            row = self._row(con, query, params)
            if row is None:
                return None
            if renumber:
                with closing(con.cursor()) as cursor:
                    cursor.executemany(
                        d.sql(
                            "UPDATE job_results SET person_index = ?"
                            " WHERE job_seq = (SELECT seq FROM jobs WHERE job_id = ?) AND person_index = ?"
                        ),
                        [(new, job_id, old) for old, new in renumber.items()],
                    )
            if audit is not None:
                self._append_audit(con, audit)
            return d.job(row)

        return self._run(write, write=True)

    def release_job(self, job_id: str, worker: str) -> None:
        query = (
            "UPDATE jobs SET status = 'QUEUED', worker = NULL, lease_until = NULL, attempts = attempts - 1"
            " WHERE job_id = ? AND worker = ? AND status = 'RUNNING'"
        )
        self._run(lambda con: self._sql(con, query, (job_id, worker)), write=True)

    def expire_jobs(self, now: datetime, max_attempts: int, message: str) -> list[VideoJob]:
        d = self.dialect
        expired = "status = 'RUNNING' AND lease_until < ?"

        def write(con: Connection) -> list[VideoJob]:
            self._sql(
                con,
                f"UPDATE jobs SET status = 'QUEUED', worker = NULL, lease_until = NULL WHERE {expired} AND attempts < ?",
                (d.time_to_db(now), max_attempts),
            )
            rows = self._sql(
                con,
                "UPDATE jobs SET status = 'FAILED', status_message = ?, finished_at = ?, worker = NULL,"
                f" lease_until = NULL WHERE {expired} RETURNING {_JOB_COLUMNS}",
                (message, d.time_to_db(now), d.time_to_db(now)),
            ).fetchall()
            return [d.job(row) for row in rows]

        return self._run(write, write=True)

    def job_results(self, job_id: str, by_person: bool, after: tuple[int, int] | None, limit: int) -> list[JobResult]:
        if by_person:
            where, order = "(person_index, seq) > (?, ?)", "person_index, seq"
            key: tuple[int, ...] = after or (-1, 0)
        else:
            where, order, key = "seq > ?", "seq", ((after or (0, 0))[1],)

        def read(con: Connection) -> list[JobResult]:
            job = self._row(con, "SELECT seq FROM jobs WHERE job_id = ?", (job_id,))
            if job is None:
                raise no_job(job_id)
            rows = self._sql(
                con,
                f"SELECT timestamp_ms, body, person_index, seq FROM job_results WHERE job_seq = ? AND {where}"
                f" ORDER BY {order} LIMIT ?",
                (job[0], *key, check_limit(limit)),
            )
            return [JobResult(int(t), json.loads(body), index, int(seq)) for t, body, index, seq in rows]

        return self._run(read, write=False)

    def purge_jobs(self, finished_before: datetime) -> int:
        query = "DELETE FROM jobs WHERE finished_at < ?"
        moment = self.dialect.time_to_db(finished_before)
        return int(self._run(lambda con: self._sql(con, query, (moment,)).rowcount, write=True))

    # Helpers working inside a transaction ------------------------------------------
    def _sql(self, con: Connection, query: str, params: Sequence[Any] = ()) -> Any:
        """Executes ``query`` (``?`` placeholders); its cursor."""
        return dialect_sql(con, self.dialect, query, params)

    def _row(self, con: Connection, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of ``query``, or None. Every row is read, so that a statement with
        RETURNING has run to its end."""
        rows = self._sql(con, query, params).fetchall()
        return rows[0] if rows else None

    def _pk(self, con: Connection, collection_id: str, lock: bool = False) -> int:
        """The row key of the collection; ``lock`` (writes) holds its row against a concurrent delete."""
        query = "SELECT pk FROM collections WHERE collection_id = ?" + (self.dialect.lock if lock else "")
        row = self._row(con, query, (collection_id,))
        if row is None:
            raise no_collection(collection_id)
        return int(row[0])

    def _collections(self, con: Connection, rows: Sequence[Sequence[Any]]) -> list[Collection]:
        """Collections from rows of ``_COLLECTION_COLUMNS``, with their tags."""
        d = self.dialect
        tags: dict[int, dict[str, str]] = {row[0]: {} for row in rows}
        query = f"SELECT collection_pk, key, value FROM tags WHERE {d.among('collection_pk', 'bigint')}"
        for pk, key, value in self._sql(con, query, (d.list_to_db(list(tags)),)):
            tags[pk][key] = value
        return [
            Collection(
                cid, arn, model, version, d.time_from_db(created), tags[pk], None if keep is None else bool(keep)
            )
            for pk, cid, arn, model, version, created, keep in rows
        ]

    def _put_tags(self, con: Connection, pk: int, tags: dict[str, str]) -> None:
        with closing(con.cursor()) as cursor:
            cursor.executemany(
                self.dialect.sql(
                    "INSERT INTO tags (collection_pk, key, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (collection_pk, key) DO UPDATE SET value = excluded.value"
                ),
                [(pk, key, value) for key, value in tags.items()],
            )

    def _faces_by_id(self, con: Connection, pk: int, face_ids: Sequence[str]) -> list[StoredFace]:
        d = self.dialect
        query = f"SELECT {d.face_columns} FROM faces WHERE collection_pk = ? AND {d.among('face_id')}"
        return [d.face(row) for row in self._sql(con, query, (pk, d.list_to_db(face_ids)))]

    def _users(self, con: Connection, pk: int, where: str, params: tuple[Any, ...]) -> list[User]:
        rows = self._sql(
            con,
            "SELECT u.user_id, (SELECT count(*) FROM faces f"
            " WHERE f.collection_pk = u.collection_pk AND f.user_id = u.user_id)"
            f" FROM users u WHERE u.collection_pk = ? {where}",
            (pk, *params),
        )
        return [User(user_id, "ACTIVE" if n else "CREATED", int(n)) for user_id, n in rows]

    def _token(self, con: Connection, pk: int, token: str) -> RequestToken | None:
        row = self._row(
            con,
            "SELECT token, operation, request_digest, response FROM request_tokens"
            " WHERE collection_pk = ? AND token = ?",
            (pk, token),
        )
        return RequestToken(*row) if row else None

    def _replayed(self, con: Connection, pk: int, token: RequestToken | None) -> bool:
        """Records ``token``; True if the very same request already ran (its write must then be skipped).

        Two identical requests that both passed the service's ``get_token`` check race
        here: the second INSERT waits for the first transaction (or the database's write
        lock), then finds its row, so the second request becomes a no-op instead of, say,
        a conflict.
        """
        if token is None:
            return False
        recorded = self._row(
            con,
            "INSERT INTO request_tokens (collection_pk, token, operation, request_digest, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection_pk, token) DO NOTHING RETURNING 1",
            (pk, token.token, token.operation, token.request_digest, self.dialect.time_to_db(_now())),
        )
        if recorded is not None:
            return False
        if self._token(con, pk, token.token) != token:
            raise IdempotentParameterMismatchException(
                f"ClientRequestToken {token.token} was already used with other parameters; use a new token."
            )
        return True


class Backoff:
    """The waits between the attempts of a transaction the database turned away as busy:
    random, doubling from 10 ms up to 1 s, for ``retry_for`` seconds in all."""

    def __init__(self, retry_for: float) -> None:
        self.retry_for = retry_for
        self._delay = 0.01
        self._deadline = time.monotonic() + retry_for

    def wait(self, error: Exception, database: str, state: str) -> None:
        """Sleeps before the next attempt; once ``retry_for`` is spent, raises
        ThrottlingException instead ("The database <database> stayed <state> ...")."""
        if time.monotonic() + self._delay > self._deadline:
            raise ThrottlingException(
                f"The database {database} stayed {state} for {self.retry_for:.0f} s; retry later."
            ) from error
        time.sleep(random.uniform(self._delay / 2, self._delay))
        self._delay = min(self._delay * 2, 1.0)


# Checks, messages and times ------------------------------------------------------------


def check_batch(faces: Sequence[StoredFace]) -> None:
    """A batch for ``add_faces``: vectors non-empty and of one length, no face twice."""
    dims = {len(face.vector) for face in faces}
    if len(dims) > 1 or 0 in dims:
        raise ValueError(f"The vectors of a batch must be non-empty and of one length, got lengths {sorted(dims)}.")
    repeated = [face_id for face_id, n in Counter(face.face_id for face in faces).items() if n > 1]
    if repeated:
        raise ConflictException(f"The batch holds face {repeated[0]} twice; give each face its own FaceId.")


def check_limit(limit: int) -> int:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}.")  # SQL would read a negative LIMIT as "no limit"
    return limit


def no_collection(collection_id: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(
        rekognition_message(
            collection_not_found(collection_id), "Create it with CreateCollection or check the CollectionId."
        )
    )


def no_user(collection_id: str, user_id: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(
        f"The user {user_id} does not exist in collection {collection_id};"
        " create it with CreateUser or check the UserId."
    )


def no_key(access_key_id: str, active: bool = False) -> ResourceNotFoundException:
    return ResourceNotFoundException(
        f"No {'active ' if active else ''}access key has the id {access_key_id}; `visage keys list` shows them."
    )


def chain_audit_log(con: Connection, dialect: Dialect) -> None:
    """A migration step: chains the records written before the log was a chain, in their order."""
    prev = GENESIS
    rows = dialect_sql(con, dialect, f"SELECT {_AUDIT_COLUMNS}, seq FROM audit_log ORDER BY seq").fetchall()
    for row in rows:
        digest = record_hash(dialect.audit_record(row[:-1]), prev)
        dialect_sql(con, dialect, "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[-1]))
        prev = digest


def dialect_sql(con: Connection, dialect: Dialect, query: str, params: Sequence[Any] = ()) -> Any:
    """Executes ``query`` (``?`` placeholders) in ``dialect``; its cursor."""
    return con.execute(dialect.sql(query), params)


def no_job(job_id: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(
        f"The video job {job_id} does not exist: check the JobId, or its results have passed their retention time."
    )


def _face_taken(face_id: str, collection_id: str) -> ConflictException:
    return ConflictException(
        f"The face {face_id} already exists in collection {collection_id}; give each face a new FaceId."
    )


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; ValueError if it is naive."""
    if moment.tzinfo is None:
        raise ValueError(f"Datetimes must be timezone-aware, got naive {moment.isoformat()}.")
    return moment.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)
