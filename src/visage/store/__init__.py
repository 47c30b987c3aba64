"""Persistence of collections, faces, users, tags, request tokens and the audit log.

:mod:`visage.store.base` defines the interface; :mod:`visage.store.sqlite` is the
embedded default and :mod:`visage.store.postgres` the scale-out backend. Both are
written on :mod:`visage.store.sql`, the operations they share. The embedded store
searches with :mod:`visage.store.sqlite_search`, whose big collections go through a
:mod:`visage.store.vector_index`. :func:`open_store` picks one from the settings.
"""

from __future__ import annotations

from visage.config import Settings
from visage.store.base import Store


def open_store(settings: Settings) -> Store:
    """The configured store: SQLite in the data dir, or PostgreSQL for a postgresql:// URL."""
    if settings.postgres_url is None:
        from visage.store.sqlite import SQLiteStore

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(settings.sqlite_path, exact_search_limit=settings.exact_search_limit)
    from visage.store.postgres import PostgresStore  # psycopg is loaded only for this backend

    # A connection per worker thread, and the same exact/approximate boundary as the embedded store.
    return PostgresStore(
        settings.postgres_url,
        pool_size=settings.threads + 2,
        exact_search_limit=settings.exact_search_limit,
        connect_timeout=settings.store_connect_seconds,
    )


def describe_store(settings: Settings) -> str:
    """Which store ``settings`` name, for people: its SQLite file, or its PostgreSQL server and
    database (never the password)."""
    if settings.postgres_url is None:
        return f"SQLite, {settings.sqlite_path}"
    from visage.store.postgres import describe_dsn

    return f"PostgreSQL, {describe_dsn(settings.postgres_url)}"
