"""`visage keys` through the real command line, on both stores, and what a real server makes of the keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from visage.keys import Credentials, generate_credentials

from .conftest import RunningServer

ARN = "arn:aws:rekognition:us-east-1:000000000000:collection/"


def visage(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "visage.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def pair(result: subprocess.CompletedProcess[str]) -> Credentials:
    values = dict(line.split("=", 1) for line in result.stdout.split())
    return Credentials(values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"])


def listed(*where: str) -> dict[str, dict[str, Any]]:
    """``visage keys list --json``, by access key id."""
    keys = [json.loads(line) for line in visage("keys", "list", "--json", *where).stdout.splitlines()]
    return {key["access_key_id"]: key for key in keys}


def refused_code(call: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, ...]:
    """The flags that name a store: a data dir, and for PostgreSQL its URL (the data dir then holds the key file)."""
    flags: tuple[str, ...] = ("--data-dir", str(tmp_path / "data"))
    if request.param == "postgresql":
        flags += ("--store", request.getfixturevalue("postgres_dsn"))
    return flags


def test_keys_create_list_rotate_revoke(where: tuple[str, ...], tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(
        json.dumps({"Statement": [{"Effect": "Allow", "Action": "rekognition:Search*", "Resource": ARN + "staff"}]})
    )
    admin = visage("keys", "create", "--admin", "--name", "ops", *where)
    assert "admin" in admin.stderr and "not shown again" in admin.stderr
    reader = pair(visage("keys", "create", *where))  # no flag: read-only
    staff = pair(visage("keys", "create", "--collection", "staff", *where))
    searcher = pair(visage("keys", "create", "--policy", str(tmp_path / "policy.json"), *where))

    table = visage("keys", "list", *where).stdout
    for key in (pair(admin), reader, staff, searcher):
        assert key.access_key_id in table and key.secret_access_key not in table
    assert "ops" in table and "read-only" in table and "collection staff" in table
    keys = listed(*where)
    assert set(keys) == {pair(admin).access_key_id, reader.access_key_id, staff.access_key_id, searcher.access_key_id}
    assert (keys[pair(admin).access_key_id]["name"], keys[pair(admin).access_key_id]["summary"]) == ("ops", "admin")
    assert keys[reader.access_key_id]["name"] == "read-only"
    assert keys[reader.access_key_id]["summary"].startswith("Allow Detect*,Compare*")
    assert keys[staff.access_key_id]["policy"]["Statement"][0]["Resource"] == [ARN + "staff"]
    assert keys[searcher.access_key_id]["summary"] == "Allow Search* on collection/staff"
    assert keys[searcher.access_key_id]["name"] == "policy"  # the file's name
    assert all(key["last_used_at"] is None and key["revoked_at"] is None for key in keys.values())

    rotated = visage("keys", "rotate", staff.access_key_id, *where)
    new = pair(rotated)
    assert f"replaces {staff.access_key_id}" in rotated.stderr
    assert "Revoked" in visage("keys", "revoke", reader.access_key_id, *where).stdout
    assert "already revoked" in visage("keys", "revoke", reader.access_key_id, *where).stdout
    keys = listed(*where)
    assert keys[new.access_key_id]["name"] == "collection staff"
    assert keys[new.access_key_id]["policy"] == keys[staff.access_key_id]["policy"]
    assert keys[staff.access_key_id]["revoked_at"] == keys[new.access_key_id]["created_at"]
    assert keys[reader.access_key_id]["revoked_at"] is not None and keys[new.access_key_id]["revoked_at"] is None

    unknown = visage("keys", "revoke", "VSAKNOSUCHKEYATALLXX", *where, check=False)
    assert unknown.returncode == 1 and "No access key has the id VSAKNOSUCHKEYATALLXX" in unknown.stderr
    again = visage("keys", "rotate", staff.access_key_id, *where, check=False)
    assert again.returncode == 1 and "No active access key" in again.stderr
    both = visage("keys", "create", "--admin", "--read-only", *where, check=False)
    assert both.returncode == 2 and "not --admin and --read-only" in both.stderr
    typo = {"Statement": [{"Effect": "Allow", "Action": "rekognition:SearchFace", "Resource": "*"}]}
    (tmp_path / "typo.json").write_text(json.dumps(typo))
    refused = visage("keys", "create", "--policy", str(tmp_path / "typo.json"), *where, check=False)
    assert refused.returncode == 1 and "names no action" in refused.stderr
    before = len(listed(*where))
    wildcard = visage("keys", "create", "--collection", "*", *where, check=False)
    assert wildcard.returncode == 1 and "'*' is not a CollectionId" in wildcard.stderr
    assert len(listed(*where)) == before


def test_keys_list_says_when_there_is_nothing(tmp_path: Path, postgres_dsn: str) -> None:
    missing = visage("keys", "list", "--data-dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "No Visage data in" in missing.stderr
    assert not (tmp_path / "nowhere").exists()
    empty = visage("keys", "list", "--store", postgres_dsn, "--data-dir", str(tmp_path / "data"))
    assert "No access keys in PostgreSQL" in empty.stdout and "password" not in empty.stdout


def test_a_running_server_follows_the_cli_at_once(tmp_path: Path) -> None:
    """Keys made, rotated and revoked with the CLI while two worker processes serve."""
    with RunningServer(tmp_path / "data", extra_args=("--workers", "2")) as server:
        where = ("--data-dir", str(server.data_dir))
        reader = pair(visage("keys", "create", "--read-only", *where))
        client = server.client(credentials=reader)
        for _ in range(10):  # both workers have served the key
            client.list_collections()
        assert refused_code(lambda: client.create_collection(CollectionId="x")) == "AccessDeniedException"

        new = pair(visage("keys", "rotate", reader.access_key_id, *where))
        for _ in range(10):
            assert refused_code(client.list_collections) == "UnrecognizedClientException"
        rotated = server.client(credentials=new)
        for _ in range(10):
            rotated.list_collections()
        lines = [line for line in visage("keys", "list", *where).stdout.splitlines() if new.access_key_id in line]
        assert "never" not in lines[0]  # last used

        visage("keys", "revoke", new.access_key_id, *where)
        for _ in range(10):
            assert refused_code(rotated.list_collections) == "UnrecognizedClientException"
        server.client().list_collections()  # the admin key still works


def test_serve_makes_and_prints_the_first_admin_key(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data", make_key=False)
    with server:
        printed = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in server.log_path.read_text().splitlines()
            if line.strip().startswith("export AWS_")
        )
        admin = Credentials(printed["AWS_ACCESS_KEY_ID"], printed["AWS_SECRET_ACCESS_KEY"])
        client = server.client(credentials=admin)
        client.create_collection(CollectionId="first")
        assert "first" in client.list_collections()["CollectionIds"]
    assert (server.data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    assert admin.secret_access_key.encode() not in (server.data_dir / "visage.db").read_bytes()
    logged = len(server.log_path.read_text())
    with RunningServer(tmp_path / "data", make_key=False) as again:  # a key exists now: none is made or printed
        assert "export AWS_SECRET_ACCESS_KEY" not in again.log_path.read_text()[logged:]
        again.client(credentials=admin).list_collections()


def test_a_data_dir_with_keys_json_keeps_working(tmp_path: Path) -> None:
    """A data dir from before keys lived in the store: its keys.json is imported once, as admin keys."""
    data = tmp_path / "data"
    data.mkdir()
    old = generate_credentials()
    entry = {"access_key_id": old.access_key_id, "secret_access_key": old.secret_access_key}
    (data / "keys.json").write_text(json.dumps({"keys": [entry]}))
    with RunningServer(data, make_key=False) as server:
        log = server.log_path.read_text()
        assert "export AWS_SECRET_ACCESS_KEY" not in log  # the imported key is the first admin key
        assert "Imported 1 access key(s)" in log
        client = server.client(credentials=old)
        client.create_collection(CollectionId="kept")
        assert client.list_collections()["CollectionIds"] == ["kept"]
    assert not (data / "keys.json").exists() and (data / "keys.json.imported").exists()
    listed = visage("keys", "list", "--data-dir", str(data)).stdout
    assert old.access_key_id in listed and "imported from keys.json" in listed and "admin" in listed
