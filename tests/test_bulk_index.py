"""`visage index`: a folder into a collection, with a summary, resumable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from visage.store.sqlite import SQLiteStore


def run_index(folder: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "visage.cli",
            "index",
            str(folder),
            "--collection",
            "people",
            "--data-dir",
            str(data_dir),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_index_folder_then_resume(tmp_path: Path, portraits: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    for name in ("person_a_1", "person_b_1", "impostor_1"):
        shutil.copy(portraits / f"{name}.jpg", folder / "2024" / f"{name}.jpg")
    (folder / "notes.jpg").write_text("not an image")
    from PIL import Image
    from skimage import data

    Image.fromarray(data.coffee()).save(folder / "coffee.png")

    first = run_index(folder, tmp_path / "data")
    assert first.returncode == 1  # one error: the text file
    assert "5 images: 3 indexed (3 faces)" in first.stdout.replace("\n", " ")
    assert "1 without a face" in first.stdout.replace("\n", " ")
    assert "notes.jpg" in first.stdout and "InvalidImageFormatException" in first.stdout
    store = SQLiteStore(tmp_path / "data" / "visage.db")
    faces = store.list_faces("people", None, 100)
    assert sorted(f.external_image_id for f in faces) == ["impostor_1", "person_a_1", "person_b_1"]

    (folder / "notes.jpg").unlink()
    shutil.copy(portraits / "person_b_2.jpg", folder / "person_b_2.jpg")
    second = run_index(folder, tmp_path / "data")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 indexed (1 faces), 3 already indexed" in second.stdout.replace("\n", " ")
    assert store.count("people")[0] == 4


def test_a_folder_without_images_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    result = run_index(folder, tmp_path / "data")
    assert result.returncode == 1
    assert "no JPEG or PNG images" in result.stderr and str(folder) in result.stderr.replace("\n", "")


def test_a_broken_link_is_reported_not_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere" / "gone.jpg")
    result = run_index(folder, tmp_path / "data")
    out = result.stdout.replace("\n", " ")
    assert result.returncode == 1
    assert "1 images: 0 indexed" in out and "1 errors" in out and "gone.jpg" in out
