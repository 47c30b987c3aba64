"""Access keys: their shapes, and the key file a server re-reads."""

from __future__ import annotations

import re
import string
from pathlib import Path

from visage.keys import KeyStore, generate_credentials


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


def test_key_store_keeps_pairs_in_a_private_file(tmp_path: Path):
    store = KeyStore(tmp_path / "data" / "keys.json")
    assert store.access_key_ids() == []
    first, second = store.create(), store.create()
    assert store.access_key_ids() == [first.access_key_id, second.access_key_id]
    assert store.secret(second.access_key_id) == second.secret_access_key
    assert store.secret("VSAKNOTAKEYNOTAKEYNO") is None
    assert (tmp_path / "data" / "keys.json").stat().st_mode & 0o777 == 0o600
    assert KeyStore(tmp_path / "data" / "keys.json").secret(first.access_key_id) == first.secret_access_key
