"""Access keys: their shapes; the key ring over both stores (secrets sealed, revocation, rotation, last used, the keys.json import)."""

from __future__ import annotations

import json
import re
import sqlite3
import string
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from visage.errors import ResourceNotFoundException, SecretKeyFileError
from visage.keys import IMPORTED_NAME, KeyRing, SecretBox, generate_credentials
from visage.policy import Policy
from visage.store.base import Store
from visage.store.sqlite import SQLiteStore


def test_generated_credentials_have_aws_shapes():
    credentials = generate_credentials()
    assert re.fullmatch(r"VSAK[A-Z2-7]{16}", credentials.access_key_id)
    assert len(credentials.secret_access_key) == 40
    assert set(credentials.secret_access_key) <= set(string.ascii_letters + string.digits + "+/")


def test_generated_credentials_differ_each_time():
    pairs = [generate_credentials() for _ in range(50)]
    assert len({c.access_key_id for c in pairs}) == 50
    assert len({c.secret_access_key for c in pairs}) == 50


def test_secret_stays_out_of_repr():
    credentials = generate_credentials()
    assert credentials.secret_access_key not in repr(credentials)
    assert credentials.access_key_id in repr(credentials)


# The key ring, on both stores ------------------------------------------------------------


def raw_rows(store: Store, request: pytest.FixtureRequest, query: str) -> list[tuple[Any, ...]]:
    """Rows read straight from the store's database, past Visage."""
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path)) as con:
            return con.execute(query).fetchall()
    with psycopg.connect(request.getfixturevalue("postgres_dsn")) as con:
        return con.execute(query).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def ring(store: Store, tmp_path: Path) -> KeyRing:
    return KeyRing(store, SecretBox(tmp_path / "keyfile" / "secret.key"))


def test_secrets_are_sealed_at_rest(ring: KeyRing, store: Store, tmp_path: Path, request: pytest.FixtureRequest):
    key, credentials = ring.create(Policy.admin(), "ops", by="test")
    assert (tmp_path / "keyfile" / "secret.key").stat().st_mode & 0o777 == 0o600
    ((sealed,),) = raw_rows(store, request, "SELECT secret FROM access_keys")
    assert credentials.secret_access_key not in sealed
    found = ring.lookup(key.access_key_id)
    assert found is not None and found.secret_access_key == credentials.secret_access_key
    assert found.key == key and key.policy == Policy.admin() and key.name == "ops" and key.active


def test_the_secrets_need_the_key_file_that_sealed_them(ring: KeyRing, store: Store, tmp_path: Path):
    key, _ = ring.create(Policy.admin(), "ops", by="test")
    other = KeyRing(store, SecretBox(tmp_path / "other.key"))
    with pytest.raises(SecretKeyFileError, match="missing"):  # no key file is made to seal keys no one else can open
        other.create(Policy.read_only(), "reader", by="test")
    assert not (tmp_path / "other.key").exists()
    (tmp_path / "other.key").write_bytes(Fernet.generate_key())
    for attempt in (
        lambda: other.lookup(key.access_key_id),
        other.check,
        lambda: other.create(Policy.admin(), "x", by="t"),
    ):
        with pytest.raises(SecretKeyFileError, match="another key file"):
            attempt()
    assert [k.access_key_id for k in ring.keys()] == [key.access_key_id]
    with pytest.raises(SecretKeyFileError, match="missing"):
        KeyRing(store, SecretBox(tmp_path / "nowhere.key")).lookup(key.access_key_id)
    (tmp_path / "bad.key").write_text("not a key\n")
    with pytest.raises(SecretKeyFileError, match="Fernet"):
        KeyRing(store, SecretBox(tmp_path / "bad.key")).lookup(key.access_key_id)
    ring.check()  # the right file


def test_a_revoked_key_is_refused_at_once_by_another_server(
    ring: KeyRing, open_store: Callable[[], Store], tmp_path: Path
):
    elsewhere = KeyRing(open_store(), SecretBox(tmp_path / "keyfile" / "secret.key"))  # another process, same store
    key, _ = ring.create(Policy.read_only(), "reader", by="test")
    assert elsewhere.lookup(key.access_key_id) is not None
    revoked = ring.revoke(key.access_key_id, by="test")
    assert not revoked.active and revoked.revoked_at is not None
    assert elsewhere.lookup(key.access_key_id) is None
    assert ring.lookup(key.access_key_id) is None
    assert ring.revoke(key.access_key_id, by="test").revoked_at == revoked.revoked_at
    with pytest.raises(ResourceNotFoundException):
        ring.revoke("VSAKNOSUCHKEYATALLXX", by="test")


def test_rotation_makes_a_new_pair_with_the_same_name_and_policy(ring: KeyRing):
    policy = Policy.for_collection("arn:aws:rekognition:us-east-1:000000000000:collection/staff")
    old, old_credentials = ring.create(policy, "kiosk", by="test")
    new, credentials = ring.rotate(old.access_key_id, by="test")
    assert (new.name, new.policy) == ("kiosk", policy) and new.active
    assert credentials.access_key_id == new.access_key_id != old.access_key_id
    assert credentials.secret_access_key != old_credentials.secret_access_key
    assert ring.lookup(old.access_key_id) is None
    assert ring.get(old.access_key_id).revoked_at == new.created_at
    with pytest.raises(ResourceNotFoundException, match="active"):
        ring.rotate(old.access_key_id, by="test")
    assert [k.access_key_id for k in ring.keys()] == [old.access_key_id, new.access_key_id]


def _seal(path: Path) -> str:
    return SecretBox(path).seal("the same secret")


def test_processes_sealing_at_once_agree_on_one_key_file(tmp_path: Path) -> None:
    """Processes that each find no key file make one at once: one wins, and every secret any of
    them sealed opens with the file left in place (none is ever read half-written)."""
    import multiprocessing

    path = tmp_path / "keyfile" / "secret.key"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        tokens = pool.map(_seal, [path] * 8)
    assert {SecretBox(path).open(token) for token in tokens} == {"the same secret"}
    assert path.stat().st_mode & 0o777 == 0o600 and not list(path.parent.glob(".secret.key.*"))


def test_last_use_is_written_at_most_once_a_window(store: Store, tmp_path: Path):
    box = SecretBox(tmp_path / "secret.key")
    key, _ = KeyRing(store, box).create(Policy.admin(), "ops", by="test")
    throttled = KeyRing(store, box, touch_every=3600)
    throttled.note_use(key)
    first = throttled.get(key.access_key_id).last_used_at
    assert first is not None
    throttled.note_use(key)
    assert throttled.get(key.access_key_id).last_used_at == first
    eager = KeyRing(store, box, touch_every=0)  # another process: its own window
    eager.note_use(key)
    later = eager.get(key.access_key_id).last_used_at
    assert later is not None and later > first


def test_key_changes_are_audited(ring: KeyRing, store: Store):
    key, _ = ring.create(Policy.read_only(), "reader", by="VSAKADMIN")
    new, _ = ring.rotate(key.access_key_id, by="VSAKADMIN")
    ring.revoke(new.access_key_id, by="visage-cli:root")
    records = store.audit_records()
    assert [(r.operation, r.access_key_id, r.details["key"]) for r in records] == [
        ("CreateAccessKey", "VSAKADMIN", key.access_key_id),
        ("RotateAccessKey", "VSAKADMIN", new.access_key_id),
        ("RevokeAccessKey", "visage-cli:root", new.access_key_id),
    ]
    assert records[1].details["replaces"] == key.access_key_id
    assert records[0].details["policy"] == Policy.read_only().summary()


def test_keys_json_is_imported_once_as_admin_keys(ring: KeyRing, store: Store, tmp_path: Path):
    legacy = tmp_path / "keys.json"
    pairs = [generate_credentials(), generate_credentials()]
    keys_json = {"keys": [{"access_key_id": c.access_key_id, "secret_access_key": c.secret_access_key} for c in pairs]}
    legacy.write_text(json.dumps(keys_json))
    assert ring.import_legacy(legacy) == [c.access_key_id for c in pairs]
    assert not legacy.exists() and (tmp_path / "keys.json.imported").exists()
    for credentials in pairs:
        found = ring.lookup(credentials.access_key_id)
        assert found is not None and found.secret_access_key == credentials.secret_access_key
        assert found.key.policy.is_admin and found.key.name == IMPORTED_NAME
    assert ring.import_legacy(legacy) == []  # once
    legacy.write_text(json.dumps(keys_json))  # the file restored from a backup: nothing is imported twice
    assert ring.import_legacy(legacy) == []
    assert len(ring.keys()) == 2
    assert [r.operation for r in store.audit_records()] == ["ImportAccessKey", "ImportAccessKey"]
