"""The Similarity map: cosine to Similarity and back, its checks, and its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visage.engine.registry import MODEL_NAMES
from visage.engine.similarity import DATA_DIR, SimilarityMap

RAW = np.array([-1.0, 0.2, 0.5, 0.6, 0.9])
SIMILARITY = np.array([0.0, 0.0, 80.0, 80.0, 100.0])
#: Knots with more decimals than a saved map keeps (6).
FINE_RAW = np.array([-1.0, 0.1234567, 0.7654321, 1.0])
FINE_SIMILARITY = np.array([0.0, 12.3456789, 87.6543219, 100.0])


@pytest.fixture()
def mapping() -> SimilarityMap:
    return SimilarityMap("m", RAW.copy(), SIMILARITY.copy(), method="test", metadata={"table": []})


def test_the_map_interpolates_between_its_knots(mapping: SimilarityMap) -> None:
    assert mapping(0.2) == 0.0 and mapping(0.5) == pytest.approx(80.0) and mapping(0.9) == 100.0
    assert mapping(0.35) == pytest.approx(40.0)
    assert mapping(0.55) == pytest.approx(80.0) and mapping(0.75) == pytest.approx(90.0)
    assert mapping(-2.0) == 0.0 and mapping(2.0) == 100.0  # clamped beyond the knots
    assert type(mapping(0.35)) is float
    np.testing.assert_allclose(mapping(np.array([0.2, 0.35, 0.9])), [0.0, 40.0, 100.0])


def test_raw_threshold_is_the_least_raw_score_that_reaches_a_similarity(mapping: SimilarityMap) -> None:
    assert mapping.raw_threshold(0.0) == -np.inf  # every score reaches the lowest Similarity
    assert mapping.raw_threshold(-5.0) == -np.inf
    assert mapping.raw_threshold(100.0) == pytest.approx(0.9)
    assert mapping.raw_threshold(100.5) == np.inf  # no score reaches it
    assert mapping.raw_threshold(40.0) == pytest.approx(0.35)
    assert mapping.raw_threshold(80.0) == pytest.approx(0.5)  # the first knot at 80, not the flat part after it
    assert mapping.raw_threshold(90.0) == pytest.approx(0.75)
    assert mapping.raw_threshold(1e-9) == pytest.approx(0.2, abs=1e-9)
    for similarity in (1.0, 40.0, 79.9, 80.0, 80.1, 99.0, 100.0):
        raw = mapping.raw_threshold(similarity)
        assert mapping(raw) >= similarity - 1e-9 and mapping(raw - 1e-6) < similarity


def test_raw_threshold_between_distinct_knots() -> None:
    steady = SimilarityMap("m", np.array([0.0, 0.5, 1.0]), np.array([0.0, 50.0, 100.0]))
    assert steady.raw_threshold(75.0) == pytest.approx(0.75)
    assert steady.raw_threshold(50.0) == pytest.approx(0.5)
    assert steady.raw_threshold(25.0) == pytest.approx(0.25)


def test_a_flat_step_answers_its_upper_knot() -> None:
    flat = SimilarityMap("m", np.array([0.0, 0.4, 0.6]), np.array([10.0, 50.0, 50.0]))
    assert flat.raw_threshold(50.0) == pytest.approx(0.4)
    stepped = SimilarityMap("m", np.array([0.0, 0.4, 0.6, 0.8]), np.array([10.0, 50.0, 50.0, 60.0]))
    assert stepped.raw_threshold(55.0) == pytest.approx(0.7)


TOO_FEW = "^a similarity map needs at least two knots, as many raw as similarity values$"


@pytest.mark.parametrize(
    ("raw", "similarity", "message"),
    [
        ([0.0], [0.0], TOO_FEW),
        ([0.0, 1.0], [0.0, 50.0, 100.0], TOO_FEW),
        ([0.0, 0.0], [0.0, 100.0], "^raw knots must be strictly increasing$"),
        ([0.5, 0.1], [0.0, 100.0], "^raw knots must be strictly increasing$"),
        ([0.0, 1.0], [60.0, 50.0], "^similarity must not decrease as the raw score grows$"),
        ([0.0, 1.0], [-1.0, 50.0], "^similarity must stay within 0-100$"),
        ([0.0, 1.0], [0.0, 100.5], "^similarity must stay within 0-100$"),
        ([0.0, 0.5, 1.0], [0.0, 50.0, 100.5], "^similarity must stay within 0-100$"),  # the last knot, not the second
    ],
)
def test_a_malformed_map_is_refused(raw: list[float], similarity: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimilarityMap("m", np.array(raw), np.array(similarity))


NOT_FINITE = r"^knots must be finite numbers \(no NaN, infinity or null\)$"


@pytest.mark.parametrize(
    ("raw", "similarity"),
    [
        ("[0, null, 1]", "[0, 50, 100]"),
        ("[0, 0.5, 1]", "[0, NaN, 100]"),
        ("[-Infinity, 0, 1]", "[0, 50, 100]"),
        ("[0, 0.5, Infinity]", "[0, 50, 100]"),
        ("[0, 1]", "[0, Infinity]"),
    ],
)
def test_a_map_file_with_a_knot_that_is_not_a_finite_number_is_refused(
    raw: str, similarity: str, tmp_path: Path
) -> None:
    """Python's json reads null, NaN and Infinity; as knots they made NaN Similarity, and passed every other check."""
    path = tmp_path / "m.json"
    path.write_text(f'{{"model": "m", "raw": {raw}, "similarity": {similarity}}}')
    with pytest.raises(ValueError, match=NOT_FINITE):
        SimilarityMap.read(path)


def test_the_edges_are_allowed() -> None:
    SimilarityMap("m", np.array([0.0, 1.0]), np.array([0.0, 100.0]))
    SimilarityMap("m", np.array([0.0, 1.0]), np.array([50.0, 50.0]))


def test_a_saved_map_loads_as_it_was_to_six_decimals(tmp_path: Path) -> None:
    fine = SimilarityMap("m", FINE_RAW, FINE_SIMILARITY, method="test", metadata={"table": [1]})
    folder = tmp_path / "new" / "maps"  # made, parents too
    path = fine.save(folder)
    assert path == folder / "m.json"
    saved = json.loads(path.read_text())
    assert saved["raw"] == [-1.0, 0.123457, 0.765432, 1.0]
    assert saved["similarity"] == [0.0, 12.345679, 87.654322, 100.0]
    assert saved["model"] == "m" and saved["method"] == "test" and saved["table"] == [1]
    loaded = SimilarityMap.load("m", folder)
    assert loaded.model == "m" and loaded.method == "test" and loaded.metadata == {"table": [1]}
    assert loaded.raw.dtype == np.float64 and loaded.similarity.dtype == np.float64
    np.testing.assert_array_equal(loaded.raw, saved["raw"])
    np.testing.assert_array_equal(loaded.similarity, saved["similarity"])
    fine.save(folder)  # saving again over the file is fine


def test_a_hand_written_map_file_reads_with_float_knots_and_an_empty_method(tmp_path: Path) -> None:
    """Integers in the file are read as floats; a file without "method" reads as method ""."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"model": "m", "raw": [-1, 0, 1], "similarity": [0, 50, 100]}))
    loaded = SimilarityMap.read(path)
    assert loaded.model == "m" and loaded.method == "" and loaded.metadata == {}
    assert loaded.raw.dtype == np.float64 and loaded.similarity.dtype == np.float64
    np.testing.assert_array_equal(loaded.raw, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(loaded.similarity, [0.0, 50.0, 100.0])
    assert loaded(0.5) == pytest.approx(75.0)
    assert json.loads(loaded.save(tmp_path / "again").read_text())["method"] == ""


def test_the_shipped_maps_load_from_the_package() -> None:
    for model in MODEL_NAMES:
        shipped = SimilarityMap.load(model)
        assert shipped.model == model and (DATA_DIR / f"{model}.json").exists()
        assert shipped.similarity[0] == 0.0 and shipped.similarity[-1] == 100.0


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_saving_a_shipped_map_again_writes_the_same_file(model: str, tmp_path: Path) -> None:
    """A loaded map saves to its file byte for byte (one space of indent, keys in order): rerunning the
    calibration on the same data leaves the shipped file without a diff."""
    saved = SimilarityMap.load(model).save(tmp_path)
    assert saved.read_bytes() == (DATA_DIR / f"{model}.json").read_bytes()
