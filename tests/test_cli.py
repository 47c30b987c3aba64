"""The command line a newcomer meets, run as a real process on real images: `visage detect`,
`compare`, `keys list` and `audit-log`, at an 80-column terminal."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from visage.engine.registry import MODEL_NAMES
from visage.store.base import AuditRecord
from visage.store.sqlite import SQLiteStore

from .conftest import run_visage as visage


def assert_fits_80_columns(text: str, *paths: Path | str) -> None:
    """Every line fits, but a line that holds a file name (whole, on its own line)."""
    for line in text.splitlines():
        if not any(str(path) in line for path in paths):
            assert len(line) <= 80, f"{len(line)} columns: {line!r}"
    assert "…" not in text  # rich's mark of a cut-off cell


# visage detect ------------------------------------------------------------------------------


def test_detect_tables_fit_80_columns_and_name_every_attribute(portraits: Path) -> None:
    solvay = portraits / "solvay_conference_1927.jpg"
    result = visage("detect", str(solvay), "--attributes", "ALL")
    assert result.returncode == 0, result.stderr
    assert_fits_80_columns(result.stdout, solvay)
    assert f"{solvay}: 29 faces" in result.stdout.splitlines()  # the file name whole, on a line of its own
    for header in ("box (left,top,width,height)", "confidence", "roll/yaw/pitch", "bright/sharp"):
        assert header in result.stdout
    for header in ("age", "gender", "smile", "eyes open", "mouth open", "gaze"):
        assert re.search(rf"(^|\s){header}(\s|$)", result.stdout, re.M), header
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"\s*29\s", line)]
    assert len(rows) == 2  # face 29 in both tables, every cell present
    # #, age, gender, smile, eyes open, mouth open; gaze is blank: face 29, the smallest, is under 80 px
    assert len(rows[1]) == 1 + 1 + 2 + 2 + 2 + 2
    assert "add --attributes" not in result.stdout


def test_detect_without_attributes_says_how_to_get_them(portraits: Path) -> None:
    result = visage("detect", str(portraits / "person_a_1.jpg"))
    assert result.returncode == 0, result.stderr
    assert_fits_80_columns(result.stdout, portraits)
    assert "age, gender, smile, eyes open, mouth open, gaze: add --attributes ALL" in result.stdout
    smile = visage("detect", str(portraits / "person_a_1.jpg"), "--attributes", "smile,mouth_open")
    assert "age, gender, eyes open, gaze: add --attributes ALL" in smile.stdout
    assert re.search(r"^\s*1\s+(yes|no) \d+\s+(yes|no) \d+\s*$", smile.stdout, re.M), smile.stdout


def test_detect_refuses_unknown_attributes_with_the_valid_ones(portraits: Path) -> None:
    result = visage("detect", str(portraits / "person_a_1.jpg"), "--attributes", "SMILE,SMIILE")
    assert result.returncode == 2
    assert "SMIILE must be one of DEFAULT, ALL, AGE_RANGE" in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr


def test_detect_goes_on_past_a_bad_file_and_fails_at_the_end(portraits: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    good = portraits / "person_a_1.jpg"
    result = visage("detect", str(notes), str(tmp_path / "missing.jpg"), str(good))
    assert result.returncode == 1
    assert f"{good}: 1 face" in result.stdout  # the image after the bad ones was described
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert errors[0].startswith(f"error: {notes}: InvalidImageFormatException: ")
    assert errors[1].startswith(f"error: {tmp_path / 'missing.jpg'}: FileNotFoundError")
    for line in errors:  # messages for command line users, not for SDK users
        assert "SDK" not in line and "base64" not in line


def test_detect_json_has_one_shape_for_one_image_and_many(portraits: Path, tmp_path: Path) -> None:
    one = visage("detect", str(portraits / "person_a_1.jpg"), "--json")
    assert one.returncode == 0, one.stderr
    (entry,) = json.loads(one.stdout)
    assert entry["Image"] == str(portraits / "person_a_1.jpg") and len(entry["FaceDetails"]) == 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    many = visage("detect", str(portraits / "person_a_1.jpg"), str(bad), "--json")
    assert many.returncode == 1
    first, second = json.loads(many.stdout)
    assert first == entry
    assert second["Image"] == str(bad) and second["Error"]["Code"] == "InvalidImageFormatException"


def test_an_image_over_the_limit_gets_the_servers_refusal(portraits: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8)  # random pixels do not compress
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)
    size = big.stat().st_size
    assert size > 5 * 1024 * 1024
    result = visage("detect", str(big))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"error: {big}: ImageTooLargeException: The image is {size:,} bytes; the limit is 5,242,880 bytes. "
        "Resize or recompress it, or have the server read it as Image.S3Object, which takes larger images."
    )
    compared = visage("compare", str(big), str(portraits / "person_a_1.jpg"))
    assert compared.returncode == 2 and "ImageTooLargeException: The image is" in compared.stderr


def test_draw_scales_marks_with_each_face_and_writes_a_jpeg(portraits: Path, tmp_path: Path) -> None:
    from visage.engine import Engine

    solvay = portraits / "solvay_conference_1927.jpg"
    drawn = tmp_path / "solvay.jpg"
    result = visage("detect", str(solvay), "--draw", str(drawn), "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert drawn.read_bytes()[:3] == b"\xff\xd8\xff"
    assert drawn.stat().st_size < solvay.stat().st_size  # not a many-megabyte PNG of a JPEG
    picture = np.asarray(Image.open(drawn).convert("RGB")).astype(int)
    original = Engine().decode(solvay.read_bytes()).rgb.astype(int)
    height, width = picture.shape[:2]
    for face in entry["FaceDetails"]:
        box = face["BoundingBox"]
        left, top = round(box["Left"] * width), round(box["Top"] * height)
        right, bottom = round((box["Left"] + box["Width"]) * width), round((box["Top"] + box["Height"]) * height)
        inside = (slice(top + 3, bottom - 3), slice(left + 3, right - 3))  # within the box's outline
        changed = np.abs(picture[inside] - original[inside]).max(axis=2) > 60
        assert changed.mean() < 0.1, f"landmark marks cover {changed.mean():.0%} of face {box}"
    bad = visage("detect", str(solvay), "--draw", str(tmp_path / "solvay.gif"))
    assert bad.returncode == 2 and ".jpg, .jpeg or .png" in bad.stderr


def test_draw_of_several_images_keeps_each_format(portraits: Path, tmp_path: Path) -> None:
    png = tmp_path / "person_b.png"
    Image.open(portraits / "person_b_1.jpg").save(png)
    result = visage("detect", str(portraits / "person_a_1.jpg"), str(png), "--draw", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "person_a_1.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (tmp_path / "out" / "person_b.png").read_bytes()[:4] == b"\x89PNG"


# visage compare ----------------------------------------------------------------------------


def test_compare_exit_status_is_0_on_a_match_1_on_none_2_on_an_error(portraits: Path) -> None:
    a1, a2, other = (str(portraits / f"{n}.jpg") for n in ("person_a_1", "person_a_2", "impostor_1"))
    match = visage("compare", a1, a2, "--threshold", "90")
    assert match.returncode == 0, match.stderr
    assert_fits_80_columns(match.stdout, a1, a2)
    assert [line for line in match.stdout.splitlines() if line.startswith(("source:", "target:"))] == [
        f"source: {a1}",
        f"target: {a2}",
    ]
    assert "threshold 90: a match" in match.stdout
    assert visage("compare", a1, other).returncode == 1
    assert visage("compare", a1, a1 + ".missing").returncode == 2
    described = visage("compare", "--help").stdout.replace("\n", " ")
    assert "0 when a target face matches" in " ".join(described.split())


def test_compare_help_says_what_99_costs_from_the_shipped_map() -> None:
    from visage.engine.similarity import SimilarityMap

    row = next(r for r in SimilarityMap.load("sface").metadata["table"] if r["similarity"] == 99)
    # (the help is wrapped to the terminal, which may break a line after a hyphen)
    described = " ".join(re.sub(r"-\n\s*", "-", visage("compare", "--help").stdout).split())
    assert f"misses {100 * row['fnmr']:.1f} % of same-person pairs" in described


def test_every_help_that_takes_a_face_model_lists_them() -> None:
    for command in (("--help",), ("serve", "--help"), ("index", "--help"), ("compare", "--help")):
        text = " ".join(visage(*command).stdout.split())
        for model in MODEL_NAMES:
            assert f"{model} (" in text, (command, model)
    for command in (("eval", "lfw", "--help"), ("audit", "--help")):
        text = " ".join(visage(*command).stdout.split())
        assert all(f"{model} (" in text for model in MODEL_NAMES), command


# visage keys list, visage audit-log -----------------------------------------------------------


def test_keys_list_says_when_there_are_none(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "visage.db").close()  # a data dir with a store and no key
    empty = visage("keys", "list", "--data-dir", str(tmp_path))
    assert empty.returncode == 0
    assert f"No access keys in {tmp_path}" in " ".join(empty.stdout.split())


def _audit_records(data_dir: Path, count: int) -> None:
    store = SQLiteStore(data_dir / "visage.db")
    for i in range(count):
        store.append_audit(
            AuditRecord(datetime.now(UTC), "VSAKTESTTESTTESTTEST", "SearchFacesByImage", f"c{i}", 99.0, 0, None)
        )
    store.close()


def test_audit_log_says_when_it_is_empty(tmp_path: Path) -> None:
    _audit_records(tmp_path, 0)
    result = visage("audit-log", "--data-dir", str(tmp_path))
    assert result.returncode == 0 and result.stdout == ""
    assert "has no records" in result.stderr


def test_audit_log_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    _audit_records(tmp_path, 2000)  # far more than a pipe's buffer
    process = subprocess.Popen(
        [sys.executable, "-m", "visage.cli", "audit-log", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # what `| head -1` reads before it exits
    process.stdout.close()
    status = process.wait(timeout=120)
    error = process.stderr.read().decode()
    assert json.loads(first)["operation"] == "SearchFacesByImage"
    assert status == 0 and error == "", error


def test_detect_json_into_a_closed_pipe_ends_quietly(portraits: Path) -> None:
    """The closed pipe is handled for every command, not only audit-log."""
    command = f"{sys.executable} -m visage.cli detect {portraits / 'solvay_conference_1927.jpg'} --json | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=600)
    assert result.stdout == "[\n" and result.stderr == "", result.stderr
