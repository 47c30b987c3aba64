"""Similarity as a false-match rate: fit each face model's cosine-to-Similarity map on LFW.

The definition (decided once, for every model)::

    Similarity S means a false-match rate FMR = (100 - S) x 1e-5

so each point of Similarity below 100 is one false match in 100,000 comparisons
of different people: S 50 is FMR 5e-4, 80 is 2e-4, 90 is 1e-4, 95 is 5e-5, 99 is
1e-5, 99.9 is 1e-6. Scores whose FMR is above 1e-3 all get Similarity 0.

The fit: the impostor pairs (every pair of LFW images of different people, see
:mod:`visage.evaluation.allpairs`) give the empirical FMR of every cosine. Knots
are placed at empirical quantiles: FMR levels ten per decade from 1e-3 down,
skipping a level until its count of impostors differs from the last knot's by
three Poisson standard deviations (so where data are thin, knots thin out and
each segment's slope is measured rather than noise), down to the last level
with at least ``MIN_EVENTS`` impostors above it. Between knots log FMR is
interpolated linearly in the cosine, sampled at a few points per segment, which
makes the map smooth and strictly increasing. Above the last knot there are
too few impostors to measure, and the map rises linearly in Similarity to 100
at cosine 1: this treats the FMR as falling linearly to 0, far more slowly than
the exponential fall the measured tail shows, so Similarity there is understated
(conservative).

The check: the map is fitted on a seeded half of the people and its predicted
FMR at each threshold compared with the FMR observed on the other half; the
published map is then fitted on everyone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from visage.evaluation.allpairs import LabelledVectors, PairScores, all_pair_scores
from visage.similarity import SimilarityMap

FMR_PER_POINT = 1e-5  # one point of Similarity below 100 is this false-match rate
MIN_EVENTS = 10  # the last empirical knot has at least this many impostors above it
LEVELS_PER_DECADE = 10
SEGMENT_SAMPLES = 4  # knots per segment between empirical quantiles
MIN_KNOT_GAP = 1e-4  # in cosine, between empirical knots (the map file keeps 6 decimals)
TABLE_SIMILARITIES = (50.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.9)
CHECK_SIMILARITIES = (1.0, 50.0, 80.0, 90.0, 95.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99)
CHECK_FACTOR = 2.0  # predicted and held-out FMR must agree within this factor ...
CHECK_DOWN_TO = 1e-6  # ... for every predicted FMR at least this
DEFINITION = "Similarity S means false-match rate (100 - S) x 1e-5, for FMR in [0, 1e-3]; Similarity 0 below"


def fmr_for_similarity(similarity: float) -> float:
    return (100.0 - similarity) * FMR_PER_POINT


def similarity_for_fmr(fmr: float | np.ndarray) -> np.ndarray:
    return np.clip(100.0 - np.asarray(fmr, dtype=np.float64) / FMR_PER_POINT, 0.0, 100.0)


@dataclass(frozen=True)
class Knot:
    """An empirical quantile: exactly ``count`` of ``total`` impostor scores are at or above ``raw``."""

    raw: float
    count: int
    total: int

    @property
    def fmr(self) -> float:
        return self.count / self.total


def empirical_knots(impostor: np.ndarray) -> list[Knot]:
    """Quantile knots of the sorted impostor scores, from FMR 1e-3 down to ``MIN_EVENTS`` events."""
    total = len(impostor)
    if total * 1e-3 < MIN_EVENTS:
        raise ValueError(f"{total} impostor pairs are too few to measure an FMR of 1e-3")
    knots: list[Knot] = []
    level = 0
    while True:
        count = int(round(total * 1e-3 * 10 ** (-level / LEVELS_PER_DECADE)))
        level += 1
        if count < MIN_EVENTS:
            break
        if knots and knots[-1].count - count < 3 * math.sqrt(knots[-1].count):
            continue
        # exactly `count` scores at or above the midpoint of the count-th and (count+1)-th largest
        raw = (float(impostor[total - count]) + float(impostor[total - count - 1])) / 2
        if knots and round(raw, 6) - knots[-1].raw < MIN_KNOT_GAP:
            continue  # (nearly) tied scores: this level cannot be told apart from the last
        knots.append(Knot(round(raw, 6), count, total))
    return knots


def fit_map(model: str, impostor: np.ndarray, metadata: dict[str, Any] | None = None) -> SimilarityMap:
    """The Similarity map of sorted impostor scores, by the definition above."""
    knots = empirical_knots(impostor)
    raw: list[float] = [-1.0, knots[0].raw]
    fmr: list[float] = [1.0, knots[0].fmr]
    for a, b in zip(knots, knots[1:]):
        for step in range(1, SEGMENT_SAMPLES + 1):
            t = step / SEGMENT_SAMPLES
            raw.append(a.raw + t * (b.raw - a.raw))
            fmr.append(math.exp((1 - t) * math.log(a.fmr) + t * math.log(b.fmr)))
    raw.append(1.0)
    fmr.append(0.0)
    similarity = similarity_for_fmr(np.array(fmr))
    similarity[0] = 0.0
    last = knots[-1]
    return SimilarityMap(
        model=model,
        raw=np.round(np.array(raw), 6),
        similarity=np.round(similarity, 6),
        method=(
            "false-match-rate calibration: " + DEFINITION + ". Knots at empirical quantiles of the "
            "impostor scores, log FMR interpolated linearly between them (visage.evaluation.calibration)"
        ),
        metadata={
            **(metadata or {}),
            "definition": DEFINITION,
            "extrapolation": (
                f"above cosine {last.raw} ({last.count} impostor pairs at or above it, FMR {last.fmr:.2e}, "
                f"Similarity {float(similarity_for_fmr(last.fmr)):.4f}) too few impostors remain to measure; "
                "the map rises linearly in Similarity to 100 at cosine 1, i.e. assumes the FMR falls "
                "linearly to 0, far slower than the measured exponential tail: conservative"
            ),
            "knots": [{"raw": k.raw, "impostors_at_or_above": k.count, "impostors": k.total} for k in knots],
        },
    )


def poisson_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a Poisson mean seen as ``count`` events (Byar's approximation;
    exact 0 and -ln(alpha/2) for the bounds at zero events)."""
    z = _normal_quantile(1 - (1 - confidence) / 2)
    upper_k = count + 1
    upper = upper_k * (1 - 1 / (9 * upper_k) + z / (3 * math.sqrt(upper_k))) ** 3
    if count == 0:
        return 0.0, -math.log((1 - confidence) / 2)
    lower = count * (1 - 1 / (9 * count) - z / (3 * math.sqrt(count))) ** 3
    return max(lower, 0.0), upper


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF by bisection on math.erf (accurate to 1e-12)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def rate_row(mapping: SimilarityMap, scores: PairScores, similarity: float) -> dict[str, Any]:
    """Predicted and observed error rates of ``scores`` at one Similarity threshold."""
    threshold = mapping.raw_threshold(similarity)
    count, total = scores.impostors_at_or_above(threshold), len(scores.impostor)
    low, high = poisson_interval(count)
    predicted = fmr_for_similarity(similarity)
    return {
        "similarity": similarity,
        "raw_threshold": round(threshold, 6),
        "predicted_fmr": predicted,
        "false_matches": count,
        "impostor_pairs": total,
        "observed_fmr": count / total,
        "observed_fmr_95ci": [low / total, high / total],
        "ratio": (count / total) / predicted if predicted > 0 else None,
        "false_non_matches": scores.genuine_below(threshold),
        "genuine_pairs": len(scores.genuine),
        "fnmr": scores.fnmr(threshold),
    }


def heldout_check(mapping: SimilarityMap, heldout: PairScores) -> dict[str, Any]:
    rows = [rate_row(mapping, heldout, s) for s in CHECK_SIMILARITIES]
    checked = [r for r in rows if r["predicted_fmr"] >= CHECK_DOWN_TO]
    passed = all(1 / CHECK_FACTOR <= r["ratio"] <= CHECK_FACTOR for r in checked)
    return {
        "rule": f"observed / predicted FMR within a factor of {CHECK_FACTOR:g} for every predicted FMR >= {CHECK_DOWN_TO:g}",
        "passed": passed,
        "rows": rows,
    }


@dataclass(frozen=True)
class Calibration:
    mapping: SimilarityMap
    scores: PairScores


def split_people(labelled: LabelledVectors, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random half of the people, and the other half."""
    order = np.random.default_rng(seed).permutation(len(labelled.names))
    half = len(order) // 2
    return np.sort(order[:half]), np.sort(order[half:])


def calibrate(labelled: LabelledVectors, version: str, seed: int = 2024) -> Calibration:
    """Fit on half of the people, check on the other half, then fit on everyone."""
    fit_people, check_people = split_people(labelled, seed)
    fit_half, check_half = labelled.subset(fit_people), labelled.subset(check_people)
    fit_scores = all_pair_scores(fit_half)
    half_map = fit_map(labelled.model, fit_scores.impostor)
    del fit_scores
    check_scores = all_pair_scores(check_half)
    check = heldout_check(half_map, check_scores)
    del check_scores
    scores = all_pair_scores(labelled)
    described = {
        "fitted_on": "LFW deep-funneled, every pair of images: genuine = same person, impostor = different people",
        "fitted": date.today().isoformat(),
        "face_model_version": version,
        "images": len(labelled.paths) + len(labelled.without_face),
        "images_without_face": len(labelled.without_face),
        "images_without_face_list": labelled.without_face,
        "people": len(labelled.names),
        "genuine_pairs": len(scores.genuine),
        "impostor_pairs": len(scores.impostor),
        "heldout_check": {
            "split": f"people shuffled with numpy default_rng({seed}); map fitted on the first half, checked on the second",
            "fit_half": _half_summary(fit_half),
            "check_half": _half_summary(check_half),
            **check,
        },
    }
    mapping = fit_map(labelled.model, scores.impostor, described)
    table = [rate_row(mapping, scores, s) for s in TABLE_SIMILARITIES]
    mapping.metadata["table"] = table
    return Calibration(mapping, scores)


def _half_summary(half: LabelledVectors) -> dict[str, int]:
    people = len(np.unique(half.people))
    counts = np.bincount(half.people)
    counts = counts[counts > 0]
    genuine = int(np.sum(counts * (counts - 1) // 2))
    n = len(half.people)
    return {"people_with_a_face": people, "images": n, "genuine_pairs": genuine, "impostor_pairs": n * (n - 1) // 2 - genuine}
