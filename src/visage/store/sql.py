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
and lists.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import numpy as np

from visage.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ThrottlingException,
    collection_not_found,
    rekognition_message,
)
from visage.faces import BoundingBox
from visage.store.base import AuditRecord, Collection, RequestToken, StoredFace, User

T = TypeVar("T")
#: A connection of either driver (sqlite3, psycopg) inside a transaction: ``execute`` returns a cursor.
Connection = Any

#: Collections up to this many faces are searched exactly; bigger ones through an index.
EXACT_SEARCH_LIMIT = 50_000

_COLLECTION_COLUMNS = "pk, collection_id, arn, face_model, face_model_version, created_at"
_AUDIT_COLUMNS = (
    "time, access_key_id, operation, collection_id, threshold, match_count, best_similarity, face_ids, user_ids"
)


class Dialect:
    """What a backend's SQL spells, or stores, differently; the row codecs built on it."""

    #: The column of ``faces`` that holds the vector.
    vector_column: str
    #: Appended to the SELECT of a row a write depends on, to hold the row until the commit
    #: ("" where a write holds the whole database).
    lock: str
    #: ``a <null_safe_equal> b`` is true when both are equal or both NULL.
    null_safe_equal: str
    #: What an INSERT raises when a unique key is taken.
    duplicate: type[Exception]

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
            f" confidence, image_hash, {self.vector_column}"
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
            self.vector_to_db(vector),
        )

    def face(self, row: Sequence[Any]) -> StoredFace:
        """A face from the values of :attr:`face_columns`."""
        face_id, image_id, external_image_id, user_id, left, top, width, height, confidence, image_hash, vector = row
        return StoredFace(
            face_id=face_id,
            image_id=image_id,
            bounding_box=BoundingBox(left=left, top=top, width=width, height=height),
            confidence=confidence,
            vector=self.vector_from_db(vector),
            external_image_id=external_image_id,
            user_id=user_id,
            image_hash=image_hash,
        )


class SQLStore(ABC):
    """The operations of a :class:`~visage.store.base.Store` that read the same in every SQL
    backend. A backend adds its :class:`Dialect`, the methods below and ``search`` and ``warm``."""

    dialect: Dialect

    # What a backend supplies -------------------------------------------------------
    @abstractmethod
    def _run(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        """Runs ``fn`` in one transaction (a write one if ``write``), retried while the database is busy."""

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
                "INSERT INTO collections (collection_id, arn, face_model, face_model_version, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection_id) DO NOTHING RETURNING pk",
                (
                    collection.collection_id,
                    collection.arn,
                    collection.face_model,
                    collection.face_model_version,
                    created_at,
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
            # Its faces, users, tags and tokens go with it (ON DELETE CASCADE).
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
    def add_faces(self, collection_id: str, faces: Sequence[StoredFace]) -> None:
        check_batch(faces)
        rows = [self.dialect.face_row(face) for face in faces]
        d = self.dialect

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
            self._faces_changed(con, pk, len(rows))

        self._run(write, write=True)

    def list_faces(
        self,
        collection_id: str,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[StoredFace]:
        d = self.dialect
        query = f"SELECT {d.face_columns} FROM faces WHERE collection_pk = ? AND face_id > ?"
        params: list[Any] = [after or ""]
        if user_id is not None:
            query += " AND user_id = ?"
            params.append(user_id)
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
        d = self.dialect

        def write(con: Connection) -> None:
            pk = self._pk(con, collection_id, lock=True)
            if self._replayed(con, pk, token):
                return
            # The user's row is held: a concurrent DeleteUser waits, so no face is left
            # pointing at a deleted user.
            if (
                self._row(con, f"SELECT 1 FROM users WHERE collection_pk = ? AND user_id = ?{d.lock}", (pk, user_id))
                is None
            ):
                raise no_user(collection_id, user_id)
            ids = d.list_to_db(face_ids)
            if associate:
                query = f"UPDATE faces SET user_id = ? WHERE collection_pk = ? AND {d.among('face_id')}"
                params: tuple[Any, ...] = (user_id, pk, ids)
            else:
                query = (
                    f"UPDATE faces SET user_id = NULL WHERE collection_pk = ? AND user_id = ? AND {d.among('face_id')}"
                )
                params = (pk, user_id, ids)
            if self._sql(con, query, params).rowcount:
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

    # Audit log ---------------------------------------------------------------------
    def append_audit(self, record: AuditRecord) -> None:
        d = self.dialect
        row = (
            d.time_to_db(record.time),
            record.access_key_id,
            record.operation,
            record.collection_id,
            record.threshold,
            record.match_count,
            record.best_similarity,
            d.list_to_db(record.face_ids),
            d.list_to_db(record.user_ids),
        )
        query = f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self._run(lambda con: self._sql(con, query, row), write=True)

    def audit_records(self, since: datetime | None = None) -> list[AuditRecord]:
        d = self.dialect
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit_log"
        params: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE time >= ?"
            params = (d.time_to_db(since),)
        query += " ORDER BY time, seq"

        def read(con: Connection) -> list[AuditRecord]:
            return [
                AuditRecord(d.time_from_db(t), key, op, cid, thr, n, best, d.list_from_db(fids), d.list_from_db(uids))
                for t, key, op, cid, thr, n, best, fids, uids in self._sql(con, query, params)
            ]

        return self._run(read, write=False)

    # Helpers working inside a transaction ------------------------------------------
    def _sql(self, con: Connection, query: str, params: Sequence[Any] = ()) -> Any:
        """Executes ``query`` (``?`` placeholders); its cursor."""
        return con.execute(self.dialect.sql(query), params)

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
            Collection(cid, arn, model, version, d.time_from_db(created), tags[pk])
            for pk, cid, arn, model, version, created in rows
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
            "SELECT token, operation, request_digest FROM request_tokens WHERE collection_pk = ? AND token = ?",
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
