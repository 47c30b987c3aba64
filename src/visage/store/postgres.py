"""The PostgreSQL store: any PostgreSQL 13+ with pgvector 0.5+, shared by several servers.

``visage serve --store postgresql://user:password@host/dbname`` selects it. It
implements :class:`visage.store.base.Store` and passes the same conformance tests
as the SQLite store (tests/test_store.py). docs/postgres.md is the operator's guide.

Schema. :data:`MIGRATIONS` is applied once each, in order, and recorded in the
``schema_migrations`` table. Every opening runs them in one transaction under an
advisory lock, so two servers starting at once do not race, and running them
again does nothing. Text keys use the "C" collation, so that pages and ties are
ordered by code point as everywhere else in Visage, whatever the database's locale.

Vectors. ``faces.embedding`` is an unconstrained ``vector``, and ``faces.dim``
(generated from it) holds its length. A collection is pinned to the length of its
first faces (``collections.dim``): models of other sizes (the 256-d fusion model)
live in the same table, no schema change needed. HNSW indexes need a fixed
length, so there is one partial expression index per length, ``faces_hnsw_<dim>``
on ``(embedding::vector(<dim>)) vector_cosine_ops WHERE dim = <dim>``, built when
the first faces of that length are stored (empty then, so the build is quick).
A ``vector(128)`` column would need a new column, table or migration per model.

Search. A score is the cosine, ``1 - (embedding <=> query)``, computed by
PostgreSQL in float64 (from float32 sums) and compared with ``min_score`` as
float64; best first, ties by face_id. Up to ``exact_search_limit`` faces a collection
is scanned exactly, every face scored (the query cannot use the HNSW index, whose
expression it does not name). Above ``exact_search_limit`` faces, the HNSW index picks
candidates (``hnsw.ef_search``; with pgvector 0.8+ an iterative scan, so that the
collection and user filters do not starve it), and the candidates are re-scored
exactly and sorted as above: results may then miss a true neighbour, the price of
an approximate index.

Concurrency. The store keeps no state but a connection pool: every call borrows a
connection and runs in one transaction (reads in REPEATABLE READ READ ONLY, one
snapshot), so any number of threads and server processes share the database and
always see each other's committed writes. Writes lock their collection's row
``FOR KEY SHARE`` so that a concurrent DeleteCollection waits for them instead of
interleaving. Deadlocks and serialization failures are retried with backoff; a
database that stays busy, or a pool with no free connection for ``retry_for``
seconds, gives :class:`~visage.errors.ThrottlingException`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

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

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

#: Advisory lock keys ("visage" + a number): one for migrations, one for building a dimension's index.
MIGRATION_LOCK = 8_532_477_831_213_809_665
INDEX_LOCK = 8_532_477_831_213_809_666
#: pgvector 0.5.0 brought HNSW; 0.8.0 iterative index scans (used when present).
MIN_PGVECTOR = (0, 5, 0)
ITERATIVE_SCAN_PGVECTOR = (0, 8, 0)
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search

#: Schema migrations, applied in order and recorded in schema_migrations (version = position, from 1).
#: Append new ones, never edit old ones.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE collections (
            pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection_id text COLLATE "C" NOT NULL UNIQUE,
            arn text NOT NULL,
            face_model text NOT NULL,
            face_model_version text NOT NULL,
            created_at timestamptz NOT NULL,
            dim integer CHECK (dim > 0)  -- length of its vectors, pinned by its first faces
        )""",
        """CREATE TABLE tags (
            collection_pk bigint NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            key text COLLATE "C" NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (collection_pk, key)
        )""",
        """CREATE TABLE faces (
            collection_pk bigint NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            face_id text COLLATE "C" NOT NULL,
            image_id text NOT NULL,
            external_image_id text,
            user_id text COLLATE "C",
            bbox_left double precision NOT NULL,
            bbox_top double precision NOT NULL,
            bbox_width double precision NOT NULL,
            bbox_height double precision NOT NULL,
            confidence double precision NOT NULL,
            image_hash text,
            embedding vector NOT NULL,  -- any length: one HNSW index per length (faces_hnsw_<dim>)
            dim integer GENERATED ALWAYS AS (vector_dims(embedding)) STORED,
            PRIMARY KEY (collection_pk, face_id)
        )""",
        "CREATE INDEX faces_by_user ON faces (collection_pk, user_id, face_id)",
        "CREATE INDEX faces_by_image ON faces (collection_pk, image_hash)",
        """CREATE TABLE users (
            collection_pk bigint NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            user_id text COLLATE "C" NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection_pk, user_id)
        )""",
        """CREATE TABLE request_tokens (
            collection_pk bigint NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            token text NOT NULL,
            operation text NOT NULL,
            request_digest text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection_pk, token)
        )""",
        """CREATE TABLE audit_log (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time timestamptz NOT NULL,
            access_key_id text NOT NULL,
            operation text NOT NULL,
            collection_id text,  -- no foreign key: the log outlives collections
            threshold double precision,
            match_count integer NOT NULL,
            best_similarity double precision,
            face_ids text[] NOT NULL,
            user_ids text[] NOT NULL
        )""",
        "CREATE INDEX audit_by_time ON audit_log (time, seq)",
    ),
    (
        # Kept by add_faces and delete_faces in their transactions: count() and the exact/HNSW
        # choice of every search read it instead of counting a big collection each time.
        "ALTER TABLE collections ADD COLUMN face_count bigint NOT NULL DEFAULT 0",
        "UPDATE collections SET face_count = (SELECT count(*) FROM faces WHERE faces.collection_pk = collections.pk)",
    ),
)

_FACE_COLUMNS = (
    "face_id, image_id, external_image_id, user_id, bbox_left, bbox_top, bbox_width, bbox_height,"
    " confidence, image_hash, embedding"
)
_COLLECTION_COLUMNS = "pk, collection_id, arn, face_model, face_model_version, created_at"
_SCORE = "1 - (embedding <=> %(query)s::vector)"  # cosine, float64


class PostgresStore:
    """A :class:`~visage.store.base.Store` in a PostgreSQL database with pgvector."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        exact_search_limit: int = 50_000,
        ef_search: int = 400,
        retry_for: float = 30.0,
    ) -> None:
        """``dsn``: a libpq URL or key=value string. Collections of up to ``exact_search_limit``
        faces are searched exactly, bigger ones through HNSW with ``ef_search`` (at most 1000);
        a caller waits at most ``retry_for`` seconds for a connection or a busy database."""
        if exact_search_limit < 0 or not 1 <= ef_search <= MAX_EF_SEARCH or pool_size < 1:
            raise ValueError(f"Need exact_search_limit >= 0, 1 <= ef_search <= {MAX_EF_SEARCH}, pool_size >= 1.")
        self.exact_search_limit = exact_search_limit
        self.ef_search = ef_search
        self.retry_for = retry_for
        self._where = _describe(dsn)
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=int(retry_for) or 1) as con:
                migrate(con)
        except psycopg.OperationalError as error:
            raise RuntimeError(f"Could not open the PostgreSQL store at {self._where}: {error}") from error
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},  # transactions are explicit: con.transaction()
            configure=_configure,
            check=ConnectionPool.check_connection,  # a server restart leaves dead idle connections
            timeout=retry_for,
            name="visage",
            open=False,
        )
        self._pool.open(wait=True, timeout=retry_for)

    # Connections and transactions -------------------------------------------------
    def _run(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        """Runs ``fn`` in one transaction, retried from the start after a deadlock or serialization failure."""
        delay = 0.01
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                with self._pool.connection() as con, con.transaction():
                    if not write:
                        con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    return fn(con)
            except PoolTimeout as error:
                raise ThrottlingException(
                    f"No connection to the database {self._where} was free for {self.retry_for:.0f} s; retry later."
                ) from error
            except (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable) as error:
                if time.monotonic() + delay > deadline:
                    raise ThrottlingException(
                        f"The database {self._where} stayed busy for {self.retry_for:.0f} s; retry later."
                    ) from error
                time.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 1.0)

    def warm(self) -> None:
        """Checks that the database answers. There is nothing to load: the HNSW indexes live in
        PostgreSQL, whose buffer cache keeps their hot pages (pg_prewarm can preload them)."""
        self._run(lambda con: con.execute("SELECT 1"), write=False)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Collections -------------------------------------------------------------------
    def create_collection(self, collection: Collection) -> None:
        created_at = _utc(collection.created_at)

        def write(con: Connection) -> None:
            row = con.execute(
                "INSERT INTO collections (collection_id, arn, face_model, face_model_version, created_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection_id) DO NOTHING RETURNING pk",
                (
                    collection.collection_id,
                    collection.arn,
                    collection.face_model,
                    collection.face_model_version,
                    created_at,
                ),
            ).fetchone()
            if row is None:
                raise ResourceAlreadyExistsException(
                    f"The collection {collection.collection_id} already exists; choose another CollectionId."
                )
            _put_tags(con, row[0], collection.tags)

        self._run(write, write=True)

    def delete_collection(self, collection_id: str) -> None:
        def write(con: Connection) -> None:
            # Faces, users, tags and tokens go with it (ON DELETE CASCADE).
            if con.execute("DELETE FROM collections WHERE collection_id = %s", (collection_id,)).rowcount == 0:
                raise no_collection(collection_id)

        self._run(write, write=True)

    def get_collection(self, collection_id: str) -> Collection:
        def read(con: Connection) -> Collection:
            rows = con.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE collection_id = %s", (collection_id,)
            ).fetchall()
            if not rows:
                raise no_collection(collection_id)
            return _collections(con, rows)[0]

        return self._run(read, write=False)

    def list_collections(self, after: str | None, limit: int) -> list[Collection]:
        def read(con: Connection) -> list[Collection]:
            rows = con.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE collection_id > %s"
                " ORDER BY collection_id LIMIT %s",
                (after or "", check_limit(limit)),
            ).fetchall()
            return _collections(con, rows)

        return self._run(read, write=False)

    def count(self, collection_id: str) -> tuple[int, int]:
        def read(con: Connection) -> tuple[int, int]:
            row = con.execute(
                "SELECT face_count, (SELECT count(*) FROM users WHERE collection_pk = pk)"
                " FROM collections WHERE collection_id = %s",
                (collection_id,),
            ).fetchone()
            if row is None:
                raise no_collection(collection_id)
            return int(row[0]), int(row[1])

        return self._run(read, write=False)

    # Faces -------------------------------------------------------------------------
    def add_faces(self, collection_id: str, faces: Sequence[StoredFace]) -> None:
        check_batch(faces)
        rows = [_face_row(face) for face in faces]
        length = len(rows[0][-1]) if rows else 0

        def write(con: Connection) -> None:
            pk, dim = _collection(con, collection_id, lock=True)
            if not rows:
                return
            if dim is None:
                dim = _pin_dimension(con, pk, length)
            if dim != length:
                raise ValueError(f"Collection {collection_id} holds vectors of {dim} floats, not {length}.")
            taken = con.execute(
                "SELECT face_id FROM faces WHERE collection_pk = %s AND face_id = ANY(%s::text[])"
                " ORDER BY face_id LIMIT 1",
                (pk, [face.face_id for face in faces]),
            ).fetchone()
            if taken is not None:
                raise _face_taken(taken[0], collection_id)
            try:
                with con.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO faces (collection_pk, {_FACE_COLUMNS})"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(pk, *row) for row in rows],
                    )
            except errors.UniqueViolation:  # a concurrent call stored one of these ids first
                raise _face_taken("of this batch", collection_id) from None
            # Last, so that concurrent writers to the collection queue on its row only briefly.
            con.execute("UPDATE collections SET face_count = face_count + %s WHERE pk = %s", (len(rows), pk))

        self._run(write, write=True)

    def list_faces(
        self,
        collection_id: str,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[StoredFace]:
        query = f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_pk = %s AND face_id > %s"
        params: list[Any] = [after or ""]
        if user_id is not None:
            query += " AND user_id = %s"
            params.append(user_id)
        if face_ids is not None:
            query += " AND face_id = ANY(%s::text[])"
            params.append(list(face_ids))
        query += " ORDER BY face_id LIMIT %s"
        params.append(check_limit(limit))

        def read(con: Connection) -> list[StoredFace]:
            pk, _ = _collection(con, collection_id)
            return [_face(row) for row in con.execute(query, (pk, *params))]

        return self._run(read, write=False)

    def get_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[StoredFace]:
        def read(con: Connection) -> list[StoredFace]:
            pk, _ = _collection(con, collection_id)
            rows = con.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_pk = %s AND face_id = ANY(%s::text[])",
                (pk, list(face_ids)),
            )
            return [_face(row) for row in rows]

        return self._run(read, write=False)

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        def write(con: Connection) -> list[str]:
            pk, _ = _collection(con, collection_id, lock=True)
            rows = con.execute(
                "DELETE FROM faces WHERE collection_pk = %s AND face_id = ANY(%s::text[]) RETURNING face_id",
                (pk, list(face_ids)),
            )
            deleted = {row[0] for row in rows}
            if deleted:
                con.execute("UPDATE collections SET face_count = face_count - %s WHERE pk = %s", (len(deleted), pk))
            return [face_id for face_id in dict.fromkeys(face_ids) if face_id in deleted]

        return self._run(write, write=True)

    def find_image(self, collection_id: str, image_hash: str, external_image_id: str | None) -> list[StoredFace]:
        def read(con: Connection) -> list[StoredFace]:
            pk, _ = _collection(con, collection_id)
            rows = con.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_pk = %s AND image_hash = %s"
                " AND external_image_id IS NOT DISTINCT FROM %s::text ORDER BY face_id",
                (pk, image_hash, external_image_id),
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
        params: dict[str, Any] = {"limit": check_limit(limit), "min_score": float(min_score)}
        where = "collection_pk = %(pk)s"
        if with_user_only:
            where += " AND user_id IS NOT NULL"
        if exclude_face_id is not None:
            where += " AND face_id <> %(exclude)s"
            params["exclude"] = exclude_face_id

        def read(con: Connection) -> list[ScoredFace]:
            row = con.execute(
                "SELECT pk, dim, face_count FROM collections WHERE collection_id = %s", (collection_id,)
            ).fetchone()
            if row is None:
                raise no_collection(collection_id)
            pk, dim, face_count = row
            if dim is None or limit == 0:
                return []  # no face was ever stored, or none asked for
            if query.shape != (dim,):
                raise ValueError(f"The query vector has shape {query.shape}; this collection's vectors have {dim} floats.")
            params.update(pk=pk, query=query)
            if face_count > self.exact_search_limit:
                candidates = max(2 * limit, 100)  # room for ties at the limit and for the re-ranking
                use_hnsw(con, max(self.ef_search, candidates))
                rows = con.execute(approximate_search_sql(where, dim), {**params, "candidates": candidates})
            else:
                rows = con.execute(exact_search_sql(where), params)
            return [ScoredFace(_face(row[:-1]), float(row[-1])) for row in rows]

        return self._run(read, write=False)

    # Users -------------------------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        def write(con: Connection) -> None:
            pk, _ = _collection(con, collection_id, lock=True)
            if _replayed(con, pk, token):
                return
            created = con.execute(
                "INSERT INTO users (collection_pk, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (pk, user_id),
            ).fetchone()
            if created is None:
                raise ConflictException(
                    f"The user {user_id} already exists in collection {collection_id}; choose another UserId."
                )

        self._run(write, write=True)

    def delete_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        def write(con: Connection) -> None:
            pk, _ = _collection(con, collection_id, lock=True)
            if _replayed(con, pk, token):
                return
            deleted = con.execute("DELETE FROM users WHERE collection_pk = %s AND user_id = %s", (pk, user_id))
            if deleted.rowcount == 0:
                raise no_user(collection_id, user_id)
            con.execute("UPDATE faces SET user_id = NULL WHERE collection_pk = %s AND user_id = %s", (pk, user_id))

        self._run(write, write=True)

    def get_user(self, collection_id: str, user_id: str) -> User:
        def read(con: Connection) -> User:
            pk, _ = _collection(con, collection_id)
            users = _users(con, pk, "AND u.user_id = %s", (user_id,))
            if not users:
                raise no_user(collection_id, user_id)
            return users[0]

        return self._run(read, write=False)

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[User]:
        def read(con: Connection) -> list[User]:
            pk, _ = _collection(con, collection_id)
            return _users(con, pk, "AND u.user_id > %s ORDER BY u.user_id LIMIT %s", (after or "", check_limit(limit)))

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
        def write(con: Connection) -> None:
            pk, _ = _collection(con, collection_id, lock=True)
            if _replayed(con, pk, token):
                return
            # FOR KEY SHARE: a concurrent DeleteUser waits, so no face is left pointing at a deleted user.
            user = con.execute(
                "SELECT 1 FROM users WHERE collection_pk = %s AND user_id = %s FOR KEY SHARE", (pk, user_id)
            ).fetchone()
            if user is None:
                raise no_user(collection_id, user_id)
            if associate:
                con.execute(
                    "UPDATE faces SET user_id = %s WHERE collection_pk = %s AND face_id = ANY(%s::text[])",
                    (user_id, pk, list(face_ids)),
                )
            else:
                con.execute(
                    "UPDATE faces SET user_id = NULL"
                    " WHERE collection_pk = %s AND user_id = %s AND face_id = ANY(%s::text[])",
                    (pk, user_id, list(face_ids)),
                )

        self._run(write, write=True)

    # Tags --------------------------------------------------------------------------
    def set_tags(self, collection_id: str, tags: dict[str, str]) -> None:
        self._run(lambda con: _put_tags(con, _collection(con, collection_id, lock=True)[0], tags), write=True)

    def remove_tags(self, collection_id: str, keys: Sequence[str]) -> None:
        def write(con: Connection) -> None:
            pk, _ = _collection(con, collection_id, lock=True)
            con.execute("DELETE FROM tags WHERE collection_pk = %s AND key = ANY(%s::text[])", (pk, list(keys)))

        self._run(write, write=True)

    # Idempotency tokens ------------------------------------------------------------
    def get_token(self, collection_id: str, token: str) -> RequestToken | None:
        return self._run(lambda con: _token(con, _collection(con, collection_id)[0], token), write=False)

    # Audit log ---------------------------------------------------------------------
    def append_audit(self, record: AuditRecord) -> None:
        row = (
            _utc(record.time),
            record.access_key_id,
            record.operation,
            record.collection_id,
            record.threshold,
            record.match_count,
            record.best_similarity,
            list(record.face_ids),
            list(record.user_ids),
        )
        self._run(
            lambda con: con.execute(
                "INSERT INTO audit_log (time, access_key_id, operation, collection_id, threshold, match_count,"
                " best_similarity, face_ids, user_ids) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::text[], %s::text[])",
                row,
            ),
            write=True,
        )

    def audit_records(self, since: datetime | None = None) -> list[AuditRecord]:
        query = (
            "SELECT time, access_key_id, operation, collection_id, threshold, match_count, best_similarity,"
            " face_ids, user_ids FROM audit_log"
        )
        params: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE time >= %s"
            params = (_utc(since),)
        query += " ORDER BY time, seq"

        def read(con: Connection) -> list[AuditRecord]:
            return [
                AuditRecord(_utc(t), key, op, cid, thr, n, best, list(fids), list(uids))
                for t, key, op, cid, thr, n, best, fids, uids in con.execute(query, params)
            ]

        return self._run(read, write=False)


# Schema ---------------------------------------------------------------------------------


def migrate(con: Connection) -> None:
    """Brings the schema up to date, in one transaction, one process at a time (``con`` in autocommit)."""
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        _require_pgvector(con)
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations")}
        if applied and max(applied) > len(MIGRATIONS):
            raise RuntimeError(
                f"The database has schema version {max(applied)}, newer than this Visage knows ({len(MIGRATIONS)});"
                " upgrade Visage."
            )
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version in applied:
                continue
            for statement in statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


def _require_pgvector(con: Connection) -> None:
    """Creates the vector extension if it is missing (which needs a superuser) and checks its version."""
    if _pgvector_version(con, missing_ok=True) == ():
        try:
            with con.transaction():  # a savepoint: the error message below is more useful than the abort
                con.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (errors.InsufficientPrivilege, errors.FeatureNotSupported, errors.UndefinedFile) as error:
            raise RuntimeError(
                f"The pgvector extension is missing from this database and could not be installed ({error})."
                " Install pgvector on the server, then have a superuser run `CREATE EXTENSION vector;` in this database."
            ) from error
    version = _pgvector_version(con)
    if version < MIN_PGVECTOR:
        found = ".".join(map(str, version))
        raise RuntimeError(f"pgvector {found} has no HNSW index; Visage needs 0.5.0 or newer (ALTER EXTENSION vector UPDATE).")


def _pgvector_version(con: Connection, missing_ok: bool = False) -> tuple[int, ...]:
    """The installed pgvector version, () if ``missing_ok`` and it is not installed."""
    row = con.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        if missing_ok:
            return ()
        raise RuntimeError("The pgvector extension is not installed in this database.")
    return tuple(int(part) for part in str(row[0]).split("-")[0].split(".") if part.isdigit())


# Search ---------------------------------------------------------------------------------
# Parameters: %(pk)s, %(query)s, %(min_score)s, %(limit)s, %(exclude)s if ``where`` names it,
# and %(candidates)s for the approximate search.


def exact_search_sql(where: str) -> sql.Composed:
    """Every face of the collection scored: the plan cannot use an HNSW index (it names no index expression)."""
    return sql.SQL(
        "SELECT {columns}, {score} AS score FROM faces WHERE {where} AND {score} >= %(min_score)s"
        " ORDER BY score DESC, face_id LIMIT %(limit)s"
    ).format(columns=sql.SQL(_FACE_COLUMNS), score=sql.SQL(_SCORE), where=sql.SQL(where))


def approximate_search_sql(where: str, dim: int) -> sql.Composed:
    """The HNSW index's ``candidates`` nearest faces, scored exactly, then filtered and sorted like the exact scan."""
    return sql.SQL(
        "SELECT {columns}, score FROM ("
        " SELECT {columns}, {score} AS score FROM ("
        "  SELECT {columns} FROM faces WHERE {where} AND dim = {dim}"
        "  ORDER BY embedding::vector({dim}) <=> %(query)s::vector({dim}) LIMIT %(candidates)s"
        " ) AS candidates"
        ") AS scored WHERE score >= %(min_score)s ORDER BY score DESC, face_id LIMIT %(limit)s"
    ).format(columns=sql.SQL(_FACE_COLUMNS), score=sql.SQL(_SCORE), where=sql.SQL(where), dim=sql.Literal(dim))


def use_hnsw(con: Connection, ef_search: int) -> None:
    """Settings, for the rest of the transaction, under which the approximate query walks the HNSW index."""
    con.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(ef_search, MAX_EF_SEARCH)),))
    if _pgvector_version(con) >= ITERATIVE_SCAN_PGVECTOR:
        # Keep walking the graph while the filters (collection, user) reject what it finds.
        con.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
    con.execute("SELECT set_config('enable_sort', 'off', true)")  # the index's order, not a sort of the collection


def hnsw_index_name(dim: int) -> str:
    return f"faces_hnsw_{dim}"


def _pin_dimension(con: Connection, pk: int, dim: int) -> int:
    """Pins the collection to vectors of ``dim`` floats (if no one did first); returns its pinned length."""
    ensure_hnsw_index(con, dim)
    row = con.execute("UPDATE collections SET dim = coalesce(dim, %s) WHERE pk = %s RETURNING dim", (dim, pk)).fetchone()
    assert row is not None  # the caller holds the row FOR KEY SHARE: it cannot have gone
    return int(row[0])


def ensure_hnsw_index(con: Connection, dim: int) -> None:
    """Builds the HNSW index of ``dim``-float vectors unless it exists; one builder at a time.

    Run in a transaction. The store builds it when a collection gets its first faces of
    that length; a bulk load (docs/postgres.md) drops it and calls this once loaded."""
    name = hnsw_index_name(dim)
    if _relation_exists(con, name):
        return
    con.execute("SELECT pg_advisory_xact_lock(%s)", (INDEX_LOCK,))
    # IF NOT EXISTS looks again once it holds the table lock, so a build that committed meanwhile is seen.
    con.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON faces USING hnsw ((embedding::vector({dim})) vector_cosine_ops)"
            " WHERE dim = {dim}"
        ).format(name=sql.Identifier(name), dim=sql.Literal(dim))
    )


def _relation_exists(con: Connection, name: str) -> bool:
    row = con.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _configure(con: Connection) -> None:
    """Run on each new pooled connection."""
    register_vector(con)
    con.execute("SET TIME ZONE 'UTC'")


# Helpers working inside a transaction -------------------------------------------------


def _collection(con: Connection, collection_id: str, lock: bool = False) -> tuple[int, int | None]:
    """(pk, dim) of the collection; ``lock`` (writes) holds its row against a concurrent delete."""
    query = "SELECT pk, dim FROM collections WHERE collection_id = %s" + (" FOR KEY SHARE" if lock else "")
    row = con.execute(query, (collection_id,)).fetchone()
    if row is None:
        raise no_collection(collection_id)
    return int(row[0]), row[1]


def _collections(con: Connection, rows: Sequence[TupleRow]) -> list[Collection]:
    tags: dict[int, dict[str, str]] = {row[0]: {} for row in rows}
    for pk, key, value in con.execute(
        "SELECT collection_pk, key, value FROM tags WHERE collection_pk = ANY(%s::bigint[])", (list(tags),)
    ):
        tags[pk][key] = value
    return [
        Collection(cid, arn, model, version, _utc(created), tags[pk])
        for pk, cid, arn, model, version, created in rows
    ]


def _put_tags(con: Connection, pk: int, tags: dict[str, str]) -> None:
    with con.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO tags (collection_pk, key, value) VALUES (%s, %s, %s)"
            " ON CONFLICT (collection_pk, key) DO UPDATE SET value = excluded.value",
            [(pk, key, value) for key, value in tags.items()],
        )


def _users(con: Connection, pk: int, where: str, params: tuple[Any, ...]) -> list[User]:
    rows = con.execute(
        "SELECT u.user_id, (SELECT count(*) FROM faces f"
        " WHERE f.collection_pk = u.collection_pk AND f.user_id = u.user_id)"
        f" FROM users u WHERE u.collection_pk = %s {where}",
        (pk, *params),
    )
    return [User(user_id, "ACTIVE" if n else "CREATED", int(n)) for user_id, n in rows]


def _token(con: Connection, pk: int, token: str) -> RequestToken | None:
    row = con.execute(
        "SELECT token, operation, request_digest FROM request_tokens WHERE collection_pk = %s AND token = %s",
        (pk, token),
    ).fetchone()
    return RequestToken(*row) if row else None


def _replayed(con: Connection, pk: int, token: RequestToken | None) -> bool:
    """Records ``token``; True if the very same request already ran (its write must then be skipped).

    Two identical requests that both passed the service's ``get_token`` check race
    here: the second INSERT waits for the first transaction, then finds its row, so
    the second request becomes a no-op instead of, say, a conflict.
    """
    if token is None:
        return False
    recorded = con.execute(
        "INSERT INTO request_tokens (collection_pk, token, operation, request_digest) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (collection_pk, token) DO NOTHING RETURNING 1",
        (pk, token.token, token.operation, token.request_digest),
    ).fetchone()
    if recorded is not None:
        return False
    if _token(con, pk, token.token) != token:
        raise IdempotentParameterMismatchException(
            f"ClientRequestToken {token.token} was already used with other parameters; use a new token."
        )
    return True


def _face_row(face: StoredFace) -> tuple[Any, ...]:
    """The values of ``_FACE_COLUMNS`` for a face."""
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
        vector,
    )


def _face(row: Sequence[Any]) -> StoredFace:
    face_id, image_id, external_image_id, user_id, left, top, width, height, confidence, image_hash, vector = row
    return StoredFace(
        face_id=face_id,
        image_id=image_id,
        bounding_box=BoundingBox(left=left, top=top, width=width, height=height),
        confidence=confidence,
        vector=np.array(vector.to_numpy() if isinstance(vector, Vector) else vector, dtype=np.float32),
        external_image_id=external_image_id,
        user_id=user_id,
        image_hash=image_hash,
    )


# Small pure helpers -------------------------------------------------------------------



def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"Datetimes must be timezone-aware, got naive {moment.isoformat()}.")
    return moment.astimezone(timezone.utc)


def _describe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(an unparsable DSN)"
    shown = {key: value for key, value in parts.items() if key in ("host", "port", "dbname", "user")}
    return " ".join(f"{key}={value}" for key, value in shown.items()) or "(the libpq defaults)"


def _face_taken(face_id: str, collection_id: str) -> ConflictException:
    return ConflictException(
        f"The face {face_id} already exists in collection {collection_id}; give each face a new FaceId."
    )

