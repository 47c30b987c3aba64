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
live in the same table, no schema change needed. A ``vector(128)`` column would
need a new column, table or migration per model.

Search. A score is the cosine, ``1 - (embedding <=> query)``, computed by
PostgreSQL in float64 (from float32 sums) and compared with ``min_score`` as
float64; best first, ties by face_id. Up to ``exact_search_limit`` faces a collection
is scanned exactly, every face scored. Above it, the product-quantised index that this
process keeps of the collection (:mod:`visage.store.collection_indexes`, the embedded
store's) proposes candidates by their integer key (``faces.seq``), brought up to date
first from the change log (``face_changes``, kept by statement triggers), and
PostgreSQL scores them exactly and sorts them as above. pgvector's HNSW indexes, which
earlier versions searched, found the best face for only 76 % of queries at a million
faces; migration 6 drops them (docs/scale.md).

Concurrency. Besides the vector indexes (a cache of the database, checked against it at
every search) the store keeps no state but a connection pool: every call borrows a
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

from collections.abc import Callable, Iterator, Sequence
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
from visage.store.collection_indexes import CollectionIndexes
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
from visage.store.vector_index import TRAINING_VECTORS

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

#: Advisory lock keys ("visage" + a number): migrations, appending to the audit log, creating video jobs.
#: (...666 held the build of an HNSW index in versions that had them.)
MIGRATION_LOCK = 8_532_477_831_213_809_665
AUDIT_LOCK = 8_532_477_831_213_809_667
JOBS_LOCK = 8_532_477_831_213_809_668
#: The oldest pgvector Visage is tested with (it needs only the vector type and its cosine distance).
MIN_PGVECTOR = (0, 5, 0)

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
    (
        # Search through a vector index in each server (visage.store.collection_indexes), fed by a
        # change log kept by triggers; pgvector's HNSW indexes, which missed a quarter of the best
        # matches at a million faces (docs/scale.md), go.
        "ALTER TABLE faces ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",  # the key in the vector index
        "CREATE UNIQUE INDEX faces_by_seq ON faces (seq)",
        """ALTER TABLE collections
            ADD COLUMN changes bigint NOT NULL DEFAULT 0,  -- the number of its newest change
            ADD COLUMN changes_trimmed_to bigint NOT NULL DEFAULT 0""",
        """CREATE TABLE face_changes (
            collection_pk bigint NOT NULL REFERENCES collections (pk) ON DELETE CASCADE,
            seq bigint NOT NULL,  -- numbered per collection, in commit order
            face_seq bigint NOT NULL,  -- faces.seq
            added boolean NOT NULL,  -- false: deleted
            PRIMARY KEY (collection_pk, seq)
        )""",
        # Statement triggers: one update of the collection's row per statement, which also holds the
        # row until the commit, so that the collection's changes are numbered in commit order. When a
        # whole collection goes (ON DELETE CASCADE) its row is gone: nothing is logged, its log goes too.
        *(
            f"""CREATE FUNCTION visage_faces_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                WITH counted AS (
                    SELECT collection_pk, count(*) AS n FROM {name} GROUP BY collection_pk
                ), numbered AS (
                    UPDATE collections c SET face_count = c.face_count {sign} counted.n, changes = c.changes + counted.n
                    FROM counted WHERE c.pk = counted.collection_pk RETURNING c.pk, c.changes - counted.n AS before
                )
                INSERT INTO face_changes (collection_pk, seq, face_seq, added)
                SELECT f.collection_pk, numbered.before + row_number() OVER (PARTITION BY f.collection_pk ORDER BY f.seq),
                    f.seq, {added}
                FROM {name} f JOIN numbered ON numbered.pk = f.collection_pk;
                RETURN NULL;
            END $$"""
            for name, sign, added in (("added", "+", "true"), ("deleted", "-", "false"))
        ),
        """CREATE TRIGGER faces_added AFTER INSERT ON faces REFERENCING NEW TABLE AS added
            FOR EACH STATEMENT EXECUTE FUNCTION visage_faces_added()""",
        """CREATE TRIGGER faces_deleted AFTER DELETE ON faces REFERENCING OLD TABLE AS deleted
            FOR EACH STATEMENT EXECUTE FUNCTION visage_faces_deleted()""",
        lambda con: _drop_hnsw_indexes(con),
    ),
    (
        # A repeated AssociateFaces or DisassociateFaces answers with the first request's response.
        "ALTER TABLE request_tokens ADD COLUMN IF NOT EXISTS response text",  # JSON; NULL: none kept
    ),
)


class PostgresDialect(Dialect):
    """PostgreSQL's SQL: times as timestamptz, vectors as pgvector's ``vector``, lists as ``text[]``."""

    vector_column = "embedding"
    #: Writes hold their collection's row (and a user's) so that a concurrent delete waits for them.
    lock = " FOR KEY SHARE"
    lock_alone = " FOR NO KEY UPDATE"
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
        retry_for: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        """``dsn``: a libpq URL or key=value string. Collections of up to ``exact_search_limit``
        faces are searched exactly, bigger ones through a vector index kept in this process;
        a caller waits at most ``retry_for`` seconds for a busy database, and ``connect_timeout``
        seconds for a connection (then the database is taken as down: StoreUnavailableError)."""
        if exact_search_limit < 0 or pool_size < 1:
            raise ValueError("Need exact_search_limit >= 0 and pool_size >= 1.")
        self.exact_search_limit = exact_search_limit
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
        self.indexes = CollectionIndexes(self._run, DIALECT, _STATE, _read_vectors)

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
        """Builds the vector index of every big collection from the database, so first searches are fast."""
        self.indexes.warm(self.exact_search_limit)

    def close(self) -> None:
        self.indexes.close()
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
                "SELECT pk, dim, face_count FROM collections WHERE collection_id = %s",
                (collection_id,),
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
            # Users hold at most 100 faces each: their faces are few even in a big collection.
            if face_count > self.exact_search_limit and not with_user_only:
                keys = self.indexes.candidates(con, pk, query, limit + (exclude_face_id is not None), min_score)
                params["keys"] = keys.tolist()
                rows = con.execute(exact_search_sql(where + " AND seq = ANY(%(keys)s::bigint[])"), params)
            else:
                rows = con.execute(exact_search_sql(where), params)
            return [ScoredFace(self.dialect.face(row[:-1]), float(row[-1])) for row in rows]

        return self._run(read, write=False)

    # Hooks of the shared operations ------------------------------------------------
    def _vector_length(self, con: Connection, pk: int, length: int) -> int:
        row = con.execute("SELECT dim FROM collections WHERE pk = %s", (pk,)).fetchone()
        assert row is not None  # the caller holds the row FOR KEY SHARE: it cannot have gone
        if row[0] is not None:
            return int(row[0])
        # Pinned by its first faces (unless a concurrent write did it first).
        row = con.execute(
            "UPDATE collections SET dim = coalesce(dim, %s) WHERE pk = %s RETURNING dim", (length, pk)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _faces_changed(self, con: Connection, pk: int, added: int) -> None:
        # Triggers keep the face count and the change log (migration 6).
        if added:
            self.indexes.trim_log(con, pk)

    def _collection_deleted(self, collection_id: str, pk: int) -> None:
        self.indexes.forget(pk)


#: A collection's last change, how far its log was trimmed, and its face count (see CollectionIndexes).
_STATE = "SELECT changes, changes_trimmed_to, face_count FROM collections WHERE pk = ?"


def _read_vectors(con: Connection, pk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every face of the collection: keys and vectors, in batches of ``TRAINING_VECTORS``.

    Read with a binary COPY, parsed by numpy: a million faces come in seconds, where
    one Python object per row would take a minute. A row of COPY's binary format is its
    field count, then each field's length and bytes; pgvector sends a vector as its
    length, two unused bytes and the floats, all big-endian.
    """
    (dim,) = con.execute("SELECT dim FROM collections WHERE pk = %s", (pk,)).fetchone() or (None,)
    if dim is None:
        return
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("seq_length", ">i4"),
            ("seq", ">i8"),
            ("vector_length", ">i4"),
            ("dim", ">u2"),
            ("unused", ">u2"),
            ("vector", ">f4", (dim,)),
        ]
    )
    header, trailer = 19, b"\xff\xff"  # signature, flags and extension length; a field count of -1
    statement = sql.SQL("COPY (SELECT seq, embedding FROM faces WHERE collection_pk = {}) TO STDOUT (FORMAT BINARY)")
    pending = bytearray()
    with con.cursor().copy(statement.format(sql.Literal(pk))) as copy:
        for data in copy:
            pending += data
            if header and len(pending) >= header:
                del pending[:header]
                header = 0
            if not header and len(pending) >= TRAINING_VECTORS * row.itemsize:
                yield _parse_rows(pending, row, TRAINING_VECTORS)
    if header or bytes(pending[-2:]) != trailer or (len(pending) - 2) % row.itemsize:
        raise RuntimeError("Unexpected data from COPY ... (FORMAT BINARY)")
    if len(pending) > 2:
        yield _parse_rows(pending, row, (len(pending) - 2) // row.itemsize)


def _parse_rows(pending: bytearray, row: np.dtype, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` rows of ``pending`` as (keys, float32 vectors), removed from it."""
    records = np.frombuffer(pending, row, count=count)
    keys, vectors = records["seq"].astype(np.int64), records["vector"].astype(np.float32)
    del records
    del pending[: count * row.itemsize]
    return keys, vectors


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
        raise RuntimeError(f"pgvector {found} is too old; Visage needs 0.5.0 or newer (ALTER EXTENSION vector UPDATE).")


def _pgvector_version(con: Connection, missing_ok: bool = False) -> tuple[int, ...]:
    """The installed pgvector version, () if ``missing_ok`` and it is not installed."""
    row = con.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        if missing_ok:
            return ()
        raise RuntimeError("The pgvector extension is not installed in this database.")
    return tuple(int(part) for part in str(row[0]).split("-")[0].split(".") if part.isdigit())


# Search ---------------------------------------------------------------------------------
# Parameters: %(pk)s, %(query)s, %(min_score)s, %(limit)s, %(exclude)s and %(keys)s if ``where`` names them.


def exact_search_sql(where: str) -> sql.Composed:
    """The faces ``where`` selects scored exactly, filtered by the score and sorted: best first, ties by face_id."""
    return sql.SQL(
        "SELECT {columns}, {score} AS score FROM faces WHERE {where} AND {score} >= %(min_score)s"
        " ORDER BY score DESC, face_id LIMIT %(limit)s"
    ).format(columns=sql.SQL(_FACE_COLUMNS), score=sql.SQL(_SCORE), where=sql.SQL(where))


def _drop_hnsw_indexes(con: Connection) -> None:
    """Drops the HNSW indexes (``faces_hnsw_<dim>``) of earlier versions: unused, and paid for by every insert."""
    names = con.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'faces'"
        " AND indexname LIKE 'faces\\_hnsw\\_%'"
    ).fetchall()
    for (name,) in names:
        con.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))


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
