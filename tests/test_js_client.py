"""A client that matches on Rekognition's messages: double-take's calls, through the AWS SDK for JavaScript.

tests/js/double_take.mjs makes double-take's Rekognition calls with ``@aws-sdk/client-rekognition``
(pinned in tests/js/package-lock.json), pointed at a real server only through
``AWS_ENDPOINT_URL_REKOGNITION``. ``make test`` installs it (``npm ci``); without node or
the installed package the test skips, and under ``CI=true`` fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from skimage import data

from .conftest import RunningServer, encode, under_ci

SCRIPT = Path(__file__).parent / "js" / "double_take.mjs"
SDK = SCRIPT.parent / "node_modules" / "@aws-sdk" / "client-rekognition"


def _node() -> str:
    node = shutil.which("node")
    missing = "node is not installed" if node is None else None
    if node is not None and not SDK.is_dir():
        missing = f"the JavaScript SDK is not installed in {SCRIPT.parent} (run `npm ci` there, or `make test`)"
    if missing is None:
        assert node is not None
        return node
    if under_ci():
        pytest.fail(f"under CI the JavaScript client test must run: {missing}")
    pytest.skip(missing)


def test_double_take_calls_and_its_no_faces_check(server: RunningServer, portraits: Path, tmp_path: Path) -> None:
    node = _node()
    assert server.credentials is not None
    no_face = tmp_path / "coffee.jpg"
    no_face.write_bytes(encode(data.coffee()))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL_REKOGNITION": server.url,  # the only way the endpoint reaches the SDK
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": server.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.credentials.secret_access_key,
    }
    args = ["double-take", str(portraits / "person_a_1.jpg"), str(portraits / "person_a_2.jpg"), str(no_face)]
    run = subprocess.run(
        [node, SCRIPT.name, *args], cwd=SCRIPT.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    steps: dict[str, dict[str, Any]] = {}
    for line in run.stdout.splitlines():
        record = json.loads(line)
        steps[record.pop("step")] = record

    assert steps["describe"]["existed"] is False
    assert steps["describe"]["failure"]["name"] == "ResourceNotFoundException"
    assert steps["describe"]["failure"]["message"].startswith("The collection id: double-take does not exist")
    assert steps["create"]["status"] == 200
    (face_id,) = steps["index"]["faceIds"]
    assert [m["faceId"] for m in steps["recognize"]["matches"]] == [face_id]
    assert steps["recognize"]["matches"][0]["similarity"] >= 80
    # Rekognition's text: double-take finds "no faces" in it and reads the error as no match.
    no_faces = steps["recognize-no-face"]
    assert no_faces["failure"]["name"] == "InvalidParameterException"
    assert no_faces["failure"]["message"].startswith("There are no faces in the image. Should be at least 1.")
    assert no_faces["matches"] == []
    assert steps["delete"]["deleted"] == [face_id]
    assert steps["describe-after"]["faceCount"] == 0
