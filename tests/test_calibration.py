"""The Similarity maps: Similarity S >= 50 means false-match rate (100 - S) x 1e-6, for every face
model; below 50 the scale is graded on log FMR, down to 0 at FMR 1.

The published maps are checked as data (monotone, loadable, the definition
holding on their knots, the held-out check recomputed from its rows); the
fitting and all-pairs code is checked on inputs whose answer is known.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from visage.engine import Engine
from visage.engine.registry import MODEL_NAMES, face_model_entry
from visage.engine.similarity import SimilarityMap
from visage.evaluation.allpairs import LabelledVectors, all_pair_scores
from visage.evaluation.calibration.similarity_map import (
    CHECK_DOWN_TO,
    CHECK_FACTOR,
    DEFINITION,
    FIRST_LEVEL_FMR,
    FMR_PER_POINT,
    LINEAR_FROM,
    TABLE_SIMILARITIES,
    empirical_knots,
    fit_map,
    fmr_for_similarity,
    is_checked,
    similarity_for_fmr,
)
from visage.evaluation.prediction import predicted_fmr

PUBLISHED = Path(__file__).parent / "data" / "similarity_maps_published.json"
#: The band at and above 50 is kept from the published fit, made with the engine of its day; the
#: engine's sface vectors have moved since by under 1e-4 in cosine, which moves the FMR at a knot
#: by up to this fraction.
KEPT_BAND_DRIFT = 0.1


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_similarity_of_50_and_above_is_unchanged_from_the_published_maps(model: str) -> None:
    """Every Similarity of 50 and above is as the maps in force were published (refit on clean labels
    on 2026-12-02; before, grading the scale below 50 had left the band of the maps before it)."""
    published = json.loads(PUBLISHED.read_text())["band_from_50"][model]
    before = SimilarityMap(model, np.array(published["raw"]), np.array(published["similarity"]))
    now = SimilarityMap.load(model)
    assert now.metadata["face_model_version"] == published["face_model_version"]
    cosines = np.linspace(-1.0, 1.0, 400_001)
    band = before(cosines) >= LINEAR_FROM
    assert band.sum() > 10_000
    np.testing.assert_allclose(now(cosines[band]), before(cosines[band]), rtol=0, atol=1e-5)
    for similarity in (50.0, 80.0, 90.0, 99.0, 99.9):  # (the join at 50 sits on the file's 6-decimal cosine)
        assert now.raw_threshold(similarity) == pytest.approx(before.raw_threshold(similarity), abs=5e-6)


#: The face models whose maps were published before the scale was graded below 50 (sface-crops came later).
UNGRADED = tuple(model for model in json.loads(PUBLISHED.read_text()) if model in MODEL_NAMES)


@pytest.mark.parametrize("model", UNGRADED)
def test_below_50_the_map_grades_what_read_0(model: str) -> None:
    published = json.loads(PUBLISHED.read_text())[model]
    before = SimilarityMap(model, np.array(published["raw"]), np.array(published["similarity"]))
    now = SimilarityMap.load(model)
    cosine_at_0 = float(before.raw[1])  # the published map's last cosine at Similarity 0
    assert before(cosine_at_0) == 0.0
    assert 0.0 < now(cosine_at_0 - 0.3) < now(cosine_at_0 - 0.1) < now(cosine_at_0) < LINEAR_FROM


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_below_50_strangers_spread_and_hard_same_person_pairs_score_above_them(model: str) -> None:
    histogram = SimilarityMap.load(model).metadata["similarity_histogram"]
    impostor, genuine = np.array(histogram["impostor"]), np.array(histogram["genuine"])
    below = np.array(histogram["edges"][:-1]) < LINEAR_FROM
    assert impostor[below].sum() / impostor.sum() > 0.999  # strangers stay below 50 ...
    assert np.count_nonzero(impostor[below] / impostor.sum() > 0.01) >= 4  # ... spread over several bands
    # same-person pairs that fall short of 50 (hard poses, poor photos) still score above most strangers
    bands = np.arange(len(impostor))[below]
    hard, strangers = np.repeat(bands, genuine[below]), np.repeat(bands, impostor[below])
    assert np.median(hard) > np.percentile(strangers, 90)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_map_loads_is_monotone_and_says_what_it_means(model: str) -> None:
    mapping = SimilarityMap.load(model)
    assert np.all(np.diff(mapping.raw) > 0)
    assert np.all(np.diff(mapping.similarity) >= 0)
    assert np.all(np.diff(mapping.similarity) > 0), "strictly increasing from 0 at cosine -1 to 100 at cosine 1"
    assert mapping.raw[0] == -1.0 and mapping.raw[-1] == 1.0
    assert mapping.similarity[0] == 0.0 and mapping.similarity[-1] == 100.0
    assert mapping.metadata["definition"] == DEFINITION
    assert mapping.metadata["fmr_per_point"] == FMR_PER_POINT
    assert mapping.metadata["images_without_face"] == len(mapping.metadata["images_without_face_list"])


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_map_was_fitted_for_the_model_version_in_use(engine: Engine, model: str) -> None:
    version = face_model_entry(model).version
    assert engine.face_model(model).version == version  # the registry tells the loaded model's version
    assert engine.similarity_map(model).metadata["face_model_version"] == version


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_similarity_is_the_false_match_rate_on_the_knots(model: str) -> None:
    mapping = SimilarityMap.load(model)
    knots = mapping.metadata["knots"]
    assert len(knots) >= 20
    kept = mapping.raw_threshold(LINEAR_FROM) if "kept_from_50" in mapping.metadata else math.inf
    for knot in knots:
        fmr = knot["impostors_at_or_above"] / knot["impostors"]
        if knot["raw"] < kept:  # fitted on these pairs
            assert mapping(knot["raw"]) == pytest.approx(float(similarity_for_fmr(fmr)), abs=1e-5)
        else:  # the band kept from the published fit: today's vectors moved its knots by under 1e-4 in cosine
            assert fmr_for_similarity(float(mapping(knot["raw"]))) == pytest.approx(fmr, rel=KEPT_BAND_DRIFT)
    assert [row["similarity"] for row in mapping.metadata["table"]] == list(TABLE_SIMILARITIES)
    for similarity in (5.0, 10.0, 25.0, 33.0, 40.0, 50.0, 65.0, 80.0, 99.0):  # what the audits read as the promise
        assert predicted_fmr(mapping, similarity) == pytest.approx(fmr_for_similarity(similarity), rel=1e-9)
    for row in mapping.metadata["table"]:
        assert row["predicted_fmr"] == pytest.approx(fmr_for_similarity(row["similarity"]))
        assert mapping.raw_threshold(row["similarity"]) == pytest.approx(row["raw_threshold"], abs=2e-6)
        if row["predicted_fmr"] >= fmr:  # `fmr`: the last knot's, the lowest the data measure
            # fitted on these pairs: the measured rate is the definition, to the interpolation between
            # knots; where they thin out (a few hundred pairs above), the pairs between two knots
            # scatter by their count's Poisson noise: allow 2 standard deviations of it there.
            tolerance = max(0.1, 2 / math.sqrt(row["predicted_fmr"] * row["impostor_pairs"]))
            assert row["observed_fmr"] == pytest.approx(row["predicted_fmr"], rel=tolerance), row
        else:  # beyond the data the map is conservative: it never promises fewer false matches
            assert row["observed_fmr"] <= row["predicted_fmr"]


def _heldout_rows(model: str) -> list[dict]:
    rows = SimilarityMap.load(model).metadata["heldout_check"]["rows"]
    for row in rows:
        assert row["observed_fmr"] == pytest.approx(row["false_matches"] / row["impostor_pairs"])
    return rows


def _agrees(row: dict) -> bool:
    return 1 / CHECK_FACTOR <= row["observed_fmr"] / row["predicted_fmr"] <= CHECK_FACTOR


# dlib misses the factor the other way from Similarity 80 to 97 (FMR 2e-5 to 3e-6): 152 held-out
# false matches where 331 are predicted at 80 (0.46x), down to 0.40x at 95; its map promises more
# false matches than happen there (conservative), as at every checked threshold from 40 (0.40x-0.73x).
# strict, like the one below.
KNOWN_MISS_ABOVE_1E6 = {"dlib"}


def _models_failing(known: set[str], reason: str) -> list[object]:
    """Every model, those in ``known`` marked as strict expected failures with ``reason``."""
    return [pytest.param(m, marks=pytest.mark.xfail(m in known, strict=True, reason=reason)) for m in MODEL_NAMES]


@pytest.mark.parametrize(
    "model",
    _models_failing(KNOWN_MISS_ABOVE_1E6, "held-out FMR 0.40x-0.46x the prediction from 2e-5 to 3e-6 (see comment)"),
)
def test_heldout_check_holds_above_1e6(model: str) -> None:
    """Predicted and held-out FMR agree within the factor at every checked threshold above 1e-6."""
    rows = [
        r for r in _heldout_rows(model) if is_checked(r["predicted_fmr"]) and r["predicted_fmr"] > 1.5 * CHECK_DOWN_TO
    ]
    assert len(rows) >= 8
    for row in rows:
        assert _agrees(row), row


# The brief asks for agreement down to 1e-6. Refit on clean labels with at most 20 photos per
# person, sface and fusion hold it on the split fixed before any result (seed 2024: 24 and 26
# held-out false matches at Similarity 99 where 17 are predicted, 1.45x and 1.57x), and on 3 of
# the 4 other splits (docs/accuracy.md). dlib misses it on the safe side, as above: 8 where 17
# are predicted (0.48x).
KNOWN_MISS_AT_1E6 = {"dlib"}


@pytest.mark.parametrize(
    "model", _models_failing(KNOWN_MISS_AT_1E6, "held-out FMR at 1e-6 is 0.48x the prediction (see comment)")
)
def test_heldout_check_holds_at_1e6(model: str) -> None:
    (row,) = [r for r in _heldout_rows(model) if r["predicted_fmr"] == pytest.approx(CHECK_DOWN_TO)]
    assert _agrees(row), row


# The fitting, on scores whose distribution is known --------------------------------------------


def _normal_tail(x: np.ndarray | float, scale: float) -> np.ndarray:
    return 0.5 * np.vectorize(math.erfc)(np.asarray(x) / (scale * math.sqrt(2)))


def test_fit_recovers_a_known_false_match_rate_and_extrapolates_conservatively() -> None:
    scale = 0.12
    impostor = np.sort(np.random.default_rng(7).normal(0.0, scale, 4_000_000).astype(np.float32))
    mapping = fit_map("test", impostor)
    # 4 million scores measure FMR down to about 2.5e-6 (10 events): Similarity 97.5. The fit
    # may be off by the counting noise of its knots: allow 4 Poisson standard deviations.
    for similarity in (10, 25, 40, 50, 80, 90, 95):
        expected_events = len(impostor) * fmr_for_similarity(similarity)
        tolerance = 1 + 4 / math.sqrt(expected_events)
        true = float(_normal_tail(mapping.raw_threshold(similarity), scale))
        assert 1 / tolerance <= true / fmr_for_similarity(similarity) <= tolerance, similarity
    last = mapping.metadata["knots"][-1]["raw"]
    beyond = np.linspace(last + 1e-3, 0.99, 50)
    promised = (100 - mapping(beyond)) * FMR_PER_POINT
    assert np.all(promised >= _normal_tail(beyond, scale)), (
        "beyond the data the map must not promise fewer false matches"
    )


def test_knots_thin_out_where_the_data_are_thin() -> None:
    impostor = np.sort(np.random.default_rng(3).normal(0.0, 0.1, 2_000_000).astype(np.float32))
    knots = empirical_knots(impostor)
    counts = [k.count for k in knots]
    # the first knot is the first level (to the few scores its 6-decimal cosine moves across)
    assert abs(counts[0] - 2_000_000 * FIRST_LEVEL_FMR) <= 10 and counts[-1] >= 10
    assert all(a - b >= 3 * math.sqrt(a) for a, b in pairwise(counts))
    for knot in knots:
        assert int(np.sum(impostor.astype(np.float64) >= knot.raw)) == knot.count  # compared exactly


def test_all_pair_scores_count_every_pair_once() -> None:
    rng = np.random.default_rng(1)
    people = np.sort(rng.integers(0, 40, 300))
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labelled = LabelledVectors("test", [str(i) for i in range(40)], [str(i) for i in range(300)], people, vectors, [])
    scores = all_pair_scores(labelled, chunk=37)
    full = vectors @ vectors.T
    upper = np.triu_indices(300, k=1)
    same = people[upper[0]] == people[upper[1]]
    np.testing.assert_allclose(scores.genuine, np.sort(full[upper][same]), atol=1e-6)
    np.testing.assert_allclose(scores.impostor, np.sort(full[upper][~same]), atol=1e-6)
    assert scores.fmr(0.3) == pytest.approx(np.mean(full[upper][~same] >= 0.3), abs=1e-6)


def test_a_refit_can_keep_the_band_from_50_knot_for_knot() -> None:
    rng = np.random.default_rng(11)
    published = fit_map("test", np.sort(rng.normal(0.0, 0.12, 2_000_000).astype(np.float32)))
    today = np.sort(rng.normal(0.002, 0.12, 2_000_000).astype(np.float32))  # the vectors moved a little
    refit, kept = fit_map("test", today), fit_map("test", today, keep_from_50=published)
    cosines = np.linspace(-1, 1, 200_001)
    band = published(cosines) >= LINEAR_FROM
    assert np.abs(refit(cosines[band]) - published(cosines[band])).max() > 0.01  # a plain refit moves the band
    np.testing.assert_allclose(kept(cosines[band]), published(cosines[band]), rtol=0, atol=1e-5)
    below = cosines < kept.raw_threshold(LINEAR_FROM) - 0.01
    np.testing.assert_allclose(kept(cosines[below]), refit(cosines[below]), rtol=0, atol=1e-5)  # graded from today
    assert np.all(np.diff(kept.raw) > 0) and np.all(np.diff(kept.similarity) > 0)
