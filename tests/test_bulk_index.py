"""`visage index`: a folder into a collection, with a summary, resumable."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageEnhance

from visage.store.sqlite import SQLiteStore


def run_index(
    folder: Path, data_dir: Path, *options: str, collection: str = "people"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "visage.cli",
            "index",
            str(folder),
            "--collection",
            collection,
            "--data-dir",
            str(data_dir),
            "--workers",
            "2",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "80"},
    )


def test_index_folder_then_resume(tmp_path: Path, portraits: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    for name in ("person_a_1", "person_b_1", "impostor_1"):
        shutil.copy(portraits / f"{name}.jpg", folder / "2024" / f"{name}.jpg")
    (folder / "notes.jpg").write_text("not an image")
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


def test_a_file_names_one_person_so_only_the_largest_face_is_indexed(tmp_path: Path, lfw: Path) -> None:
    """Maradona_0001 shows three faces: a bystander must not be filed under his name."""
    folder = tmp_path / "photos"
    folder.mkdir()
    people = lfw / "lfw-deepfunneled"
    crowd = people / "Diego_Armando_Maradona" / "Diego_Armando_Maradona_0001.jpg"
    shutil.copy(crowd, folder)
    for name in ("Abdullah_Gul_0001", "Sepp_Blatter_0001"):
        shutil.copy(people / name.rsplit("_", 1)[0] / f"{name}.jpg", folder)
    result = run_index(folder, tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "3 images: 3 indexed (3 faces)" in out
    assert re.search(
        r"^\d+ images with several faces \(face 1 is the largest\): only the largest is indexed", out, re.M
    )
    found = re.search(rf"^  {re.escape(str(folder / crowd.name))}: (\d+) faces, kept face 1$", out, re.M)
    assert found and int(found[1]) >= 3, out
    store = SQLiteStore(tmp_path / "data" / "visage.db")
    names = [f.external_image_id for f in store.list_faces("people", None, 100)]
    assert sorted(names) == ["Abdullah_Gul_0001", "Diego_Armando_Maradona_0001", "Sepp_Blatter_0001"]

    more = run_index(folder, tmp_path / "data", "--max-faces", "3", collection="everyone")
    assert more.returncode == 0, more.stdout + more.stderr
    kept = re.search(rf"^  {re.escape(str(folder / crowd.name))}: \d+ faces, kept faces ([\d, ]+)$", more.stdout, re.M)
    assert kept and len(kept[1].split(", ")) > 1, more.stdout
    everyone = [f.external_image_id for f in store.list_faces("everyone", None, 100)]
    assert everyone.count("Diego_Armando_Maradona_0001") == len(kept[1].split(", "))


def test_a_subject_below_the_quality_bar_is_not_replaced_by_a_bystander(tmp_path: Path, portraits: Path) -> None:
    """A dark large face (the subject) and a small good one: under HIGH the subject fails the bar,
    and the image is refused rather than its bystander named after the file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    subject, bystander = Image.open(portraits / "person_b_1.jpg"), Image.open(portraits / "person_a_1.jpg")
    canvas = Image.new("RGB", (900, 500), (128, 128, 128))
    dark = subject.convert("RGB").resize((450, round(450 * subject.height / subject.width)))
    canvas.paste(ImageEnhance.Brightness(dark).enhance(0.25), (0, 0))
    canvas.paste(bystander.convert("RGB").resize((250, round(250 * bystander.height / bystander.width))), (600, 100))
    canvas.save(folder / "person_b.jpg", quality=92)

    named = run_index(folder, tmp_path / "data", "--quality-filter", "HIGH")
    assert named.returncode == 0, named.stdout + named.stderr
    assert "1 images: 0 indexed (0 faces)" in named.stdout and "1 with every face refused" in named.stdout
    assert re.search(r"refused \(.*LOW_BRIGHTNESS.*\): .*person_b\.jpg$", named.stdout, re.M)
    assert "2 faces, none indexed" in named.stdout

    unnamed = run_index(
        folder, tmp_path / "data", "--quality-filter", "HIGH", "--external-id-from", "none", collection="anyone"
    )
    assert "1 images: 1 indexed (1 faces)" in unnamed.stdout  # IndexFaces' own rule: the best faces that pass
    assert "2 faces, kept face 2" in unnamed.stdout


def test_model_and_quality_filter_options(tmp_path: Path, portraits: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    small = Image.open(portraits / "person_a_1.jpg")
    small.resize((120, round(120 * small.height / small.width))).save(folder / "person_a_small.jpg", quality=95)
    high = run_index(folder, tmp_path / "data", "--model", "dlib", "--quality-filter", "HIGH")
    assert high.returncode == 0, high.stdout + high.stderr
    assert "refused (SMALL_BOUNDING_BOX)" in high.stdout
    store = SQLiteStore(tmp_path / "data" / "visage.db")
    assert store.get_collection("people").face_model_version == "dlib-1"
    auto = run_index(folder, tmp_path / "data", "--model", "dlib")
    assert "1 images: 1 indexed (1 faces)" in auto.stdout
    other = run_index(folder, tmp_path / "data", "--model", "sface")
    assert other.returncode == 1
    assert "Collection people holds dlib-1 vectors (dlib), not sface" in other.stderr.replace("\n", "")


def test_files_that_are_not_png_or_jpeg_are_reported(tmp_path: Path, portraits: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "phone").mkdir(parents=True)
    face = Image.open(portraits / "person_a_1.jpg")
    face.save(folder / "person_a.gif")
    face.save(folder / "phone" / "person_a.webp")
    (folder / "phone" / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / ".DS_Store").write_bytes(b"hidden")
    none = run_index(folder, tmp_path / "data")
    assert none.returncode == 1
    assert "no JPEG or PNG images" in none.stderr and "1 .gif" in none.stderr and "1 .heic" in none.stderr

    shutil.copy(portraits / "person_a_1.jpg", folder)
    result = run_index(folder, tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "3 files not indexed, as they are not PNG or JPEG (" in out
    for name in ("person_a.gif", "phone/IMG_0001.heic", "phone/person_a.webp"):
        assert f"  {folder / name}" in out.splitlines()
    assert ".DS_Store" not in out


def test_the_summary_never_breaks_a_file_name(tmp_path: Path, portraits: Path) -> None:
    """At 80 columns, each long file name of the summary stays whole on its own line:
    an image with several faces, a file that is not an image, and one that is not PNG or JPEG."""
    folder = tmp_path / "photos"
    folder.mkdir()
    stem = "the_fifth_solvay_conference_on_electrons_and_photons_brussels_october_1927_group_photo"
    assert len(stem) > 80
    shutil.copy(portraits / "solvay_conference_1927.jpg", folder / f"{stem}.jpg")
    (folder / f"{stem}_notes.jpg").write_text("not an image")
    Image.open(portraits / "person_a_1.jpg").save(folder / f"{stem}_portrait.gif")
    result = run_index(folder, tmp_path / "data")
    assert result.returncode == 1, result.stdout + result.stderr  # the text file is an error
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) > 80  # long lines were printed, not folded at the terminal's width
    several = [line for line in lines if line.startswith(f"  {folder / stem}.jpg: ")]
    assert len(several) == 1 and re.fullmatch(r".*: \d+ faces, kept face 1", several[0]), result.stdout
    assert any(line.startswith(f"  error: {folder / stem}_notes.jpg: ") for line in lines), result.stdout
    assert f"  {folder / stem}_portrait.gif" in lines, result.stdout
