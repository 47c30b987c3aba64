"""The administration a server's owner does from the command line, against a running server:
access keys (made by `visage keys create`, used at once) and the audit log's exports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from visage.keys import Credentials

from .conftest import RunningServer


def visage(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "visage.cli", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def created_key(output: str) -> Credentials:
    values = dict(line.split("=", 1) for line in output.split())
    return Credentials(values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"])


def key_ids(data_dir: Path) -> set[str]:
    return {
        json.loads(line)["access_key_id"]
        for line in visage("keys", "list", "--json", "--data-dir", str(data_dir)).splitlines()
    }


def test_a_key_made_by_the_cli_is_accepted_at_once_by_a_running_server(server: RunningServer, rekognition: Any) -> None:
    rekognition.list_collections()  # the server has read its keys
    before = key_ids(server.data_dir)
    credentials = created_key(visage("keys", "create", "--data-dir", str(server.data_dir)))
    client = server.client(credentials=credentials)
    assert "CollectionIds" in client.list_collections()  # no restart, no wait
    assert key_ids(server.data_dir) == before | {credentials.access_key_id}
    assert credentials.access_key_id not in before


def test_the_secrets_are_sealed_by_a_key_file_readable_by_its_owner_only(tmp_path: Path) -> None:
    """No file holds a secret in clear; the key file that seals them has mode 0600, however the
    first key is made, and keeps it when more keys are made."""
    for _ in range(2):
        credentials = created_key(visage("keys", "create", "--data-dir", str(tmp_path)))
        clear = [
            p for p in tmp_path.rglob("*") if p.is_file() and credentials.secret_access_key.encode() in p.read_bytes()
        ]
        assert clear == [], "a secret is kept in clear"
        key_file = tmp_path / "secret.key"
        assert key_file.stat().st_mode & 0o777 == 0o600, key_file


FIELDS = ["time", "access_key_id", "operation", "collection_id", "threshold", "match_count"]


def test_the_csv_export_holds_the_same_records_as_the_jsonl_export(
    server: RunningServer, rekognition: Any, portraits: Path
) -> None:
    collection = "audit-export"
    rekognition.create_collection(CollectionId=collection)
    for name in ("person_a_1", "person_b_1", "impostor_1"):
        rekognition.index_faces(CollectionId=collection, Image={"Bytes": (portraits / f"{name}.jpg").read_bytes()})
    probe = {"Bytes": (portraits / "person_a_2.jpg").read_bytes()}
    rekognition.search_faces_by_image(CollectionId=collection, Image=probe, FaceMatchThreshold=0)  # several matches
    rekognition.search_faces_by_image(CollectionId=collection, Image=probe, FaceMatchThreshold=100)  # none
    rekognition.compare_faces(SourceImage=probe, TargetImage=probe)  # no collection

    records = [json.loads(line) for line in visage("audit-log", "--data-dir", str(server.data_dir)).splitlines()]
    rows = list(csv.DictReader(io.StringIO(visage("audit-log", "--data-dir", str(server.data_dir), "--format", "csv"))))
    assert len(rows) == len(records) >= 3
    for row, record in zip(rows, records, strict=True):
        assert set(row) == set(record)
        for field in FIELDS:
            assert row[field] == ("" if record[field] is None else str(record[field])), (field, row, record)
        assert row["best_similarity"] == ("" if record["best_similarity"] is None else repr(record["best_similarity"]))
        assert row["face_ids"].split() == record["face_ids"] and row["user_ids"].split() == record["user_ids"]
    mine = [r for r in rows if r["collection_id"] == collection]
    assert [r["match_count"] for r in mine] == ["3", "0"] and mine[1]["best_similarity"] == ""
    assert len(mine[0]["face_ids"].split()) == 3
    assert rows[-1]["operation"] == "CompareFaces" and rows[-1]["collection_id"] == ""
    assert float(rows[-1]["best_similarity"]) == pytest.approx(100, abs=0.5)
