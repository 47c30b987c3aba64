"""Calibration for your own population: ``visage eval calibrate --data DIR`` and ``--similarity-map``.

DIR holds one folder per person. The tests lay LFW out that way (a sample of its people,
linked, so the evaluation cache is shared), fit a map, serve with it, and check that a
folder of too few people is refused with how many are needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from visage.config import Settings, SettingsError
from visage.engine import Engine
from visage.engine.recognition import cosine
from visage.engine.similarity import SimilarityMap
from visage.evaluation.allpairs import LabelledVectors
from visage.evaluation.calibration.similarity_map import (
    MIN_EVENTS,
    MIN_PEOPLE,
    TooFewPeople,
    calibrate,
    similarity_for_fmr,
)
from visage.evaluation.cli import eval_group

from .conftest import RunningServer

PEOPLE, IMAGES = 50, 10  # LFW people with at least IMAGES photos, their first IMAGES photos


def test_too_few_people_are_refused_with_how_many_are_needed(portraits: Path, tmp_path: Path) -> None:
    for person, photos in {"a": ["person_a_1", "person_a_2"], "b": ["person_b_1", "person_b_2"]}.items():
        (tmp_path / person).mkdir()
        for photo in photos:
            (tmp_path / person / f"{photo}.jpg").symlink_to(portraits / f"{photo}.jpg")
    result = CliRunner().invoke(eval_group, ["calibrate", "--data", str(tmp_path), "--out", str(tmp_path / "maps")])
    assert result.exit_code != 0
    assert f"has 2 people with a face; a calibration needs at least {MIN_PEOPLE}" in result.output
    assert f"Add {MIN_PEOPLE - 2} more." in result.output
    assert not (tmp_path / "maps").exists()


def test_the_fit_itself_refuses_too_few_people_with_a_face() -> None:
    people = MIN_PEOPLE - 1
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(people * 3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labelled = LabelledVectors(
        "sface",
        [f"p{i}" for i in range(people)],
        [str(i) for i in range(people * 3)],
        np.repeat(np.arange(people), 3),
        vectors,
        [],
    )
    with pytest.raises(
        TooFewPeople, match=f"has {people} people with a face; a calibration needs at least {MIN_PEOPLE}"
    ):
        calibrate(labelled, "sface-1", fitted_on="a test population")


@pytest.fixture(scope="module")
def population(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEOPLE LFW people laid out as DIR/<person>/<image> (links to LFW's files)."""
    images = lfw / "lfw-deepfunneled"
    folder = tmp_path_factory.mktemp("population")
    chosen = [p for p in sorted(images.iterdir()) if len(list(p.glob("*.jpg"))) >= IMAGES][:PEOPLE]
    assert len(chosen) == PEOPLE
    for person in chosen:
        (folder / person.name).mkdir()
        for photo in sorted(person.glob("*.jpg"))[:IMAGES]:
            (folder / person.name / photo.name).symlink_to(photo)
    (folder / chosen[0].name / "notes.txt").write_text("not an image: left out")
    return folder


@pytest.fixture(scope="module")
def fitted(population: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("maps")
    result = CliRunner().invoke(
        eval_group, ["calibrate", "--data", str(population), "--models", "sface", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out / "sface.json", result.output


def test_a_population_map_says_what_it_was_fitted_on_and_how_far_it_speaks(
    fitted: tuple[Path, str], population: Path
) -> None:
    path, output = fitted
    mapping = SimilarityMap.read(path)
    meta: dict[str, Any] = mapping.metadata
    assert mapping.model == "sface" and meta["face_model_version"] == "sface-1"
    assert mapping.fitted_on.startswith(f"{population.resolve()}, every pair of images")
    assert meta["people"] == PEOPLE and meta["images"] == PEOPLE * IMAGES
    with_face = PEOPLE * IMAGES - meta["images_without_face"]
    assert meta["genuine_pairs"] + meta["impostor_pairs"] == with_face * (with_face - 1) // 2
    assert meta["genuine_pairs"] <= PEOPLE * IMAGES * (IMAGES - 1) // 2
    reach = meta["measured_down_to"]
    assert reach["impostors_at_or_above"] >= MIN_EVENTS
    assert reach["fmr"] == pytest.approx(reach["impostors_at_or_above"] / meta["impostor_pairs"])
    assert reach["similarity"] == pytest.approx(float(similarity_for_fmr(reach["fmr"])), abs=1e-3)
    assert reach["fmr"] < 1e-3  # about 120,000 impostor pairs reach past 1e-4
    check = meta["heldout_check"]
    assert check["fit_half"]["people_with_a_face"] + check["check_half"]["people_with_a_face"] == PEOPLE
    assert isinstance(check["passed"], bool) and len(meta["other_splits"]) == 4
    # what the command says
    assert f"{PEOPLE} people with a face" in output
    assert f"{meta['genuine_pairs']:,} genuine and {meta['impostor_pairs']:,} impostor pairs" in output
    assert f"down to {reach['fmr']:.1e}" in output
    assert "held-out check" in output and ("passed" in output or "FAILED" in output)
    # and it is the graded scale, strictly increasing
    assert np.all(np.diff(mapping.raw) > 0) and np.all(np.diff(mapping.similarity) > 0)


def test_a_map_for_a_face_model_version_not_in_use_is_refused(fitted: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = fitted
    assert Settings(similarity_map=path).similarity_map == path
    stale = json.loads(path.read_text()) | {"face_model_version": "sface-0"}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    for bad in (tmp_path / "stale.json", tmp_path / "missing.json"):
        with pytest.raises(SettingsError, match="VISAGE_SIMILARITY_MAP"):
            Settings(similarity_map=bad)


def test_a_server_serves_with_the_population_map(
    fitted: tuple[Path, str], portraits: Path, tmp_path: Path, engine: Engine
) -> None:
    path, _ = fitted
    own, shipped = SimilarityMap.read(path), SimilarityMap.load("sface")
    a, b = (portraits / "person_a_1.jpg").read_bytes(), (portraits / "person_a_2.jpg").read_bytes()
    raw = cosine(engine.embed(a)[0].embedded, engine.embed(b)[0].embedded)
    assert own(raw) != pytest.approx(shipped(raw), abs=0.01), "the two maps must differ here for the test to tell"
    with RunningServer(tmp_path / "data", extra_args=("--similarity-map", str(path))) as server:
        response = server.client().compare_faces(
            SourceImage={"Bytes": a}, TargetImage={"Bytes": b}, SimilarityThreshold=0
        )
        (match,) = response["FaceMatches"]
        assert match["Similarity"] == pytest.approx(own(raw), abs=1e-4)
        assert f"sface's from {path}" in server.log_path.read_text()


def test_the_accuracy_page_says_which_map_is_in_force(fitted: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = fitted
    published = Path(__file__).parent.parent / "docs" / "accuracy"
    (tmp_path / "accuracy").mkdir()
    for result in published.glob("*.json"):
        (tmp_path / "accuracy" / result.name).write_text(result.read_text())
    result = CliRunner().invoke(
        eval_group,
        ["docs", "--out", str(tmp_path), "--results", str(tmp_path / "accuracy"), "--similarity-map", str(path)],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    page = (tmp_path / "accuracy.md").read_text()
    section = page[page.index("## The maps in force") :].split("\n## ")[0]
    own = SimilarityMap.read(path)
    (sface,) = [line for line in section.splitlines() if line.startswith("| sface |")]
    assert f"`{path}`" in sface and own.fitted_on in sface
    (dlib,) = [line for line in section.splitlines() if line.startswith("| dlib |")]
    assert "(shipped)" in dlib and "LFW" in dlib
    assert (tmp_path / "accuracy" / "similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
