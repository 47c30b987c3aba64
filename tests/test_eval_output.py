"""Evaluations write where the user says, by default a new folder here, and change what ships
(docs/, the Similarity maps, the fusion weight) only when asked; missing data is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from visage.engine.recognition import FUSION_FILE
from visage.engine.registry import MODEL_NAMES
from visage.engine.similarity import DATA_DIR

from .conftest import run_visage as visage


@pytest.mark.parametrize(
    "command",
    [("eval", "lfw", "--limit", "1"), ("eval", "calibrate"), ("eval", "fusion-weight"), ("audit",)],
    ids=lambda c: " ".join(c[:2]),
)
def test_missing_evaluation_data_is_one_line_naming_the_variable_and_folder(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    result = visage(*command, cwd=tmp_path, env={"VISAGE_EVAL_DATA": str(tmp_path / "nowhere")})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: no evaluation data: {tmp_path / 'nowhere'} (VISAGE_EVAL_DATA=")
    assert "does not exist; set VISAGE_EVAL_DATA to the folder that holds " in line and "lfw/" in line
    assert list(tmp_path.iterdir()) == []  # no output folder was made


def test_missing_part_of_the_data_is_named(tmp_path: Path) -> None:
    (tmp_path / "eval" / "lfw").mkdir(parents=True)
    result = visage("audit", "--limit", "2", cwd=tmp_path, env={"VISAGE_EVAL_DATA": str(tmp_path / "eval")})
    (line,) = result.stderr.strip().splitlines()
    assert "has no utkface_crop_part1/, fairface_age_gender_540/" in line


def test_eval_lfw_writes_to_a_new_folder_here_by_default(lfw: Path, tmp_path: Path) -> None:
    first = visage("eval", "lfw", "--limit", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = visage("eval", "lfw", "--limit", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(name.startswith("visage-lfw-sface-") for name in folders)
    for name in folders:
        assert (tmp_path / name / "lfw-sface.json").exists()
        assert f"wrote {name}/lfw-sface.json" in (first.stdout + second.stdout)


def test_calibrate_and_fusion_weight_change_what_ships_only_with_install(tmp_path: Path) -> None:
    both = visage("eval", "calibrate", "--install", "--out", "maps", cwd=tmp_path)
    assert both.returncode == 2 and "either --install or --out" in both.stderr
    for command in ("calibrate", "fusion-weight"):
        text = " ".join(visage("eval", command, "--help", cwd=tmp_path).stdout.split())
        assert "--install Write" in text and "into the package" in text
        assert "default: a new folder" in text


def _small_lfw(lfw: Path, root: Path, pairs: int) -> Path:
    """An evaluation data folder with the first ``pairs`` same and different pairs of pairsDevTrain
    (real LFW images, linked), in the real file's format."""
    lines = (lfw / "pairsDevTrain.txt").read_text().splitlines()
    count = int(lines[0])
    same, different = lines[1 : 1 + pairs], lines[1 + count : 1 + count + pairs]
    folder = root / "lfw"
    (folder / "lfw-deepfunneled").mkdir(parents=True)
    (folder / "pairsDevTrain.txt").write_text("\n".join([str(pairs), *same, *different]) + "\n")
    for line in same + different:
        parts = line.split()
        for person in (parts[0], parts[2] if len(parts) == 4 else parts[0]):
            link = folder / "lfw-deepfunneled" / person
            if not link.exists():
                link.symlink_to(lfw / "lfw-deepfunneled" / person)
    return root


def test_fusion_weight_writes_a_new_folder_not_the_shipped_weight(lfw: Path, tmp_path: Path) -> None:
    data = _small_lfw(lfw, tmp_path / "eval", pairs=20)
    shipped = FUSION_FILE.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    result = visage("eval", "fusion-weight", cwd=work, env={"VISAGE_EVAL_DATA": str(data)})
    assert result.returncode == 0, result.stderr
    (folder,) = work.iterdir()
    assert folder.name.startswith("visage-fusion-weight-") and (folder / "fusion.json").exists()
    assert FUSION_FILE.read_bytes() == shipped
    assert sorted(p.name for p in DATA_DIR.iterdir()) == sorted(f"{model}.json" for model in MODEL_NAMES)
