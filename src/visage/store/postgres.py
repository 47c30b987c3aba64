"""The PostgreSQL store: any PostgreSQL 13+ with pgvector 0.5+, shared by several servers.

``visage serve --store postgresql://user:password@host/dbname`` selects it. It
implements :class:`visage.store.base.Store` and passes the same conformance tests
as the SQLite store (tests/test_store.py). docs/postgres.md is the operator's guide.
The operations are written once in :mod:`visage.store.sql`; this module owns the
schema, the connections, how its SQL differs (:class:`PostgresDialect`) and search.

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
database that stays busy for ``retry_for`` seconds gives
:class:`~visage.errors.ThrottlingException`.

Outages. A database that cannot be reached (no connection within ``connect_timeout``
seconds, or a connection cut by a restart) gives
:class:`~visage.errors.StoreUnavailableError` (ThrottlingException on the wire) at
once, never a hang; the pool drops dead connections and connects again by itself
when the database is back. A full disk on the database's side gives
:class:`~visage.errors.StoreWriteError` (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from visage.errors import StoreUnavailableError, StoreWriteError
from visage.store.base import ScoredFace
from visage.store.sql import (
    EXACT_SEARCH_LIMIT,
    Backoff,
    Dialect,
    SQLStore,
    chain_audit_log,
    check_limit,
    no_collection,
    utc,
)

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

#: Advisory lock keys ("visage" + a number): migrations, building a dimension's index, appending to the
#: audit log, creating video jobs.
MIGRATION_LOCK = 8_532_477_831_213_809_665
INDEX_LOCK = 8_532_477_831_213_809_666
AUDIT_LOCK = 8_532_477_831_213_809_667
JOBS_LOCK = 8_532_477_831_213_809_668
#: pgvector 0.5.0 brought HNSW; 0.8.0 iterative index scans (used when present).
MIN_PGVECTOR = (0, 5, 0)
ITERATIVE_SCAN_PGVECTOR = (0, 8, 0)
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search

#: Schema migrations, applied in order and recorded in schema_migrations (version = position, from 1).
#: Append new ones, never edit old ones. A step is a statement, or a function of the connection.
MIGRATIONS: tuple[tuple[str | Callable[[Connection], None], ...], ...] = (
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
    (
        # Access keys with their policies (they were in each server's keys.json), and the audit
        # log as a hash chain (visage.store.audit_chain), the records already written chained first.
        """CREATE TABLE access_keys (
            access_key_id text COLLATE "C" PRIMARY KEY,
            name text NOT NULL,
            secret text NOT NULL,  -- encrypted: a Fernet token (visage.keys.SecretBox)
            policy text NOT NULL,  -- JSON (visage.policy)
            created_at timestamptz NOT NULL,
            last_used_at timestamptz,
            revoked_at timestamptz
        )""",
        """ALTER TABLE audit_log
            ADD COLUMN probe_sha256 text,
            ADD COLUMN outcome text NOT NULL DEFAULT 'ok',
            ADD COLUMN details text NOT NULL DEFAULT '{}',  -- JSON object, as hashed
            ADD COLUMN prev_hash text,
            ADD COLUMN hash text""",
        lambda con: chain_audit_log(con, PostgresDialect()),
    ),
    (
        # The console: when each face was indexed, thumbnails kept on request, reviewers' decisions.
        "ALTER TABLE faces ADD COLUMN indexed_at timestamptz",  # NULL for faces indexed before it was kept
        "ALTER TABLE collections ADD COLUMN keep_face_thumbnails boolean",  # NULL: as the server's setting
        """CREATE TABLE face_thumbnails (
            collection_pk bigint NOT NULL,
            face_id text COLLATE "C" NOT NULL,
            jpeg bytea NOT NULL,
            PRIMARY KEY (collection_pk, face_id),
            FOREIGN KEY (collection_pk, face_id) REFERENCES faces (collection_pk, face_id) ON DELETE CASCADE
        )""",
        """CREATE TABLE reviews (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection_pk bigint NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            time timestamptz NOT NULL,
            access_key_id text NOT NULL,
            probe_sha256 text NOT NULL,
            face_id text COLLATE "C" NOT NULL,  -- no foreign key: the decision outlives the face
            similarity double precision NOT NULL,
            decision text NOT NULL CHECK (decision IN ('same', 'different', 'cannot_tell')),
            note text NOT NULL
        )""",
        "CREATE INDEX reviews_by_probe ON reviews (collection_pk, probe_sha256)",
    ),
    (
        # Video jobs: a queue shared by every server on the database, and each job's results (visage.jobs).
        """CREATE TABLE jobs (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- queue order
            job_id text NOT NULL UNIQUE,
            operation text NOT NULL,
            request text NOT NULL,  -- JSON
            access_key_id text NOT NULL,
            created_at timestamptz NOT NULL,
            status text NOT NULL,  -- QUEUED, RUNNING, SUCCEEDED, FAILED
            status_message text,
            video_metadata text,  -- JSON
            client_token text UNIQUE,
            request_digest text NOT NULL,
            progress double precision NOT NULL DEFAULT 0,
            attempts integer NOT NULL DEFAULT 0,
            worker text,
            lease_until timestamptz,
            started_at timestamptz,
            finished_at timestamptz
        )""",
        "CREATE INDEX jobs_by_status ON jobs (status, seq)",
        "CREATE INDEX jobs_by_finish ON jobs (finished_at)",
        """CREATE TABLE job_results (
            job_seq bigint NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
            seq integer NOT NULL,  -- time order within the job
            timestamp_ms bigint NOT NULL,
            person_index bigint,
            body text NOT NULL,  -- JSON: a FaceDetection or a PersonMatch
            PRIMARY KEY (job_seq, seq)
        )""",
        "CREATE INDEX job_results_by_person ON job_results (job_seq, person_index, seq)",
    ),
)


class PostgresDialect(Dialect):
    """PostgreSQL's SQL: times as timestamptz, vectors as pgvector's ``vector``, lists as ``text[]``."""

    vector_column = "embedding"
    #: Writes hold their collection's row (and a user's) so that a concurrent delete waits for them.
    lock = " FOR KEY SHARE"
    null_safe_equal = "IS NOT DISTINCT FROM"
    duplicate = errors.UniqueViolation
    #: Appending to the audit log: one writer at a time, in every server sharing the database.
    hold_audit_log = f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})"
    claim_lock = " FOR UPDATE SKIP LOCKED"
    jobs_lock = f"SELECT pg_advisory_xact_lock({JOBS_LOCK})"

    def sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def among(self, column: str, sqltype: str = "text") -> str:
        return f"{column} = ANY(?::{sqltype}[])"

    def list_to_db(self, values: Sequence[Any]) -> list[Any]:
        return list(values)

    def list_from_db(self, value: Sequence[Any]) -> list[Any]:
        return list(value)

    def time_to_db(self, moment: datetime) -> datetime:
        return utc(moment)

    def time_from_db(self, value: datetime) -> datetime:
        return utc(value)

    def vector_to_db(self, vector: np.ndarray) -> np.ndarray:
        return vector

    def vector_from_db(self, value: Any) -> np.ndarray:
        return np.array(value.to_numpy() if isinstance(value, Vector) else value, dtype=np.float32)


DIALECT = PostgresDialect()
_FACE_COLUMNS = DIALECT.face_columns
_SCORE = "1 - (embedding <=> %(query)s::vector)"  # cosine, float64


class PostgresStore(SQLStore):
    """A :class:`~visage.store.base.Store` in a PostgreSQL database with pgvector."""

    dialect = DIALECT

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        exact_search_limit: int = EXACT_SEARCH_LIMIT,
        ef_search: int = 400,
        retry_for: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        """``dsn``: a libpq URL or key=value string. Collections of up to ``exact_search_limit``
        faces are searched exactly, bigger ones through HNSW with ``ef_search`` (at most 1000);
        a caller waits at most ``retry_for`` seconds for a busy database, and ``connect_timeout``
        seconds for a connection (then the database is taken as down: StoreUnavailableError)."""
        if exact_search_limit < 0 or not 1 <= ef_search <= MAX_EF_SEARCH or pool_size < 1:
            raise ValueError(f"Need exact_search_limit >= 0, 1 <= ef_search <= {MAX_EF_SEARCH}, pool_size >= 1.")
        self.exact_search_limit = exact_search_limit
        self.ef_search = ef_search
        self.retry_for = retry_for
        self.connect_timeout = connect_timeout
        self._where = describe_dsn(dsn)
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=int(retry_for) or 1) as con:
                migrate(con)
        except psycopg.OperationalError as error:
            raise RuntimeError(f"Could not open the PostgreSQL store at {self._where}: {error}") from error
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            # Transactions are explicit (con.transaction()); a database that does not answer is down.
            kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout))},
            configure=_configure,
            check=ConnectionPool.check_connection,  # a server restart leaves dead idle connections
            timeout=connect_timeout,
            # While the database is down the pool stops trying after this long, and the next call
            # tries again at once: so the first call after it is back gets a connection.
            reconnect_timeout=connect_timeout,
            name="visage",
            open=False,
        )
        self._pool.open(wait=True, timeout=retry_for)

    # Connections and transactions -------------------------------------------------
    def _run(self, fn: Callable[[Connection], T], *, write: bool, single: bool = False) -> T:
        """Runs ``fn`` in one transaction, retried from the start after a deadlock or serialization failure;
        a ``single`` read statement runs on its own, in one round trip instead of four."""
        backoff = Backoff(self.retry_for)
        while True:
            try:
                with self._pool.connection() as con:
                    if single and not write:
                        return fn(con)
                    with con.transaction():
                        if not write:
                            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        return fn(con)
            except PoolTimeout as error:
                raise StoreUnavailableError(
                    f"No connection to the database {self._where} was free or could be opened in "
                    f"{self.connect_timeout:g} s: it is busy, down or restarting. Retry shortly."
                ) from error
            except (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable) as error:
                backoff.wait(error, self._where, "busy")
            except errors.DiskFull as error:
                raise StoreWriteError(
                    f"The database {self._where} could not write: its disk is full ({error}). "
                    "Nothing of this request was saved; retry once space is freed."
                ) from error
            except psycopg.OperationalError as error:  # the connection broke: the database stopped or restarted
                raise StoreUnavailableError(
                    f"The connection to the database {self._where} was lost ({_first_line(error)}): it is down "
                    "or restarting. A write in progress may not have been saved; retry shortly."
                ) from error

    def warm(self) -> None:
        """Checks that the database answers. There is nothing to load: the HNSW indexes live in
        PostgreSQL, whose buffer cache keeps their hot pages (pg_prewarm can preload them)."""
        self._run(lambda con: con.execute("SELECT 1"), write=False)

    def close(self) -> None:
        self._pool.close()

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
                raise ValueError(
                    f"The query vector has shape {query.shape}; this collection's vectors have {dim} floats."
                )
            params.update(pk=pk, query=query)
            if face_count > self.exact_search_limit:
                candidates = max(2 * limit, 100)  # room for ties at the limit and for the re-ranking
                use_hnsw(con, max(self.ef_search, candidates))
                rows = con.execute(approximate_search_sql(where, dim), {**params, "candidates": candidates})
            else:
                rows = con.execute(exact_search_sql(where), params)
            return [ScoredFace(self.dialect.face(row[:-1]), float(row[-1])) for row in rows]

        return self._run(read, write=False)

    # Hooks of the shared operations ------------------------------------------------
    def _vector_length(self, con: Connection, pk: int, length: int) -> int:
        row = con.execute("SELECT dim FROM collections WHERE pk = %s", (pk,)).fetchone()
        assert row is not None  # the caller holds the row FOR KEY SHARE: it cannot have gone
        return int(row[0]) if row[0] is not None else _pin_dimension(con, pk, length)

    def _faces_changed(self, con: Connection, pk: int, added: int) -> None:
        # Last in the write, so that concurrent writers to the collection queue on its row only briefly.
        if added:
            con.execute("UPDATE collections SET face_count = face_count + %s WHERE pk = %s", (added, pk))


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
                if callable(statement):
                    statement(con)
                else:
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
        raise RuntimeError(
            f"pgvector {found} has no HNSW index; Visage needs 0.5.0 or newer (ALTER EXTENSION vector UPDATE)."
        )


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
    row = con.execute(
        "UPDATE collections SET dim = coalesce(dim, %s) WHERE pk = %s RETURNING dim", (dim, pk)
    ).fetchone()
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


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(an unparsable DSN)"
    shown = {key: value for key, value in parts.items() if key in ("host", "port", "dbname", "user")}
    return " ".join(f"{key}={value}" for key, value in shown.items()) or "(the libpq defaults)"
