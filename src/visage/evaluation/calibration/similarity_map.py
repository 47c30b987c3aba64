"""Similarity as a false-match rate: fit each face model's cosine-to-Similarity map on LFW.

The definition (decided once, for every model)::

    Similarity S means a false-match rate FMR = (100 - S) x 1e-6

so each point of Similarity below 100 is one false match in a million comparisons
of different people: S 50 is FMR 5e-5, 80 is 2e-5, 90 is 1e-5, 95 is 5e-6, 99 is
1e-6, 99.9 is 1e-7. Scores whose FMR is above 1e-4 all get Similarity 0.

Why this scale: the thresholds Rekognition users already write (80 by default, 99
for public safety) should not become more permissive by moving to Visage. The
ACLU's search (535 probes x 25,000 faces) had 28 false matches at Rekognition's
80, about 2e-6 per comparison; at 1e-5 per point Visage's 80 would have meant 2e-4,
a hundred times looser. At 1e-6 per point, 80 is 2e-5 and 99 is 1e-6, the lowest
rate LFW's 87 million impostor pairs still measure with some precision.

The fit: the impostor pairs (every pair of LFW images of different people, see
:mod:`visage.evaluation.allpairs`) give the empirical FMR of every cosine. Knots
are placed at empirical quantiles: FMR levels ten per decade from 1e-4 down,
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
from collections import Counter
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

import numpy as np

from visage.engine.similarity import SimilarityMap
from visage.evaluation.allpairs import (
    LabelledVectors,
    PairScores,
    ScoredPair,
    all_pair_scores,
    impostor_pairs_at_or_above,
)
from visage.evaluation.intervals import clopper_pearson

FMR_PER_POINT = 1e-6  # one point of Similarity below 100 is this false-match rate
MAX_FMR = 100 * FMR_PER_POINT  # Similarity 0; higher false-match rates are Similarity 0 too
MIN_EVENTS = 10  # the last empirical knot has at least this many impostors above it
LEVELS_PER_DECADE = 10
SEGMENT_SAMPLES = 4  # knots per segment between empirical quantiles
MIN_KNOT_GAP = 1e-4  # in cosine, between empirical knots (the map file keeps 6 decimals)
TABLE_SIMILARITIES = (50.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.9)
CHECK_SIMILARITIES = (1.0, 25.0, 50.0, 70.0, 80.0, 90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95)
CHECK_FACTOR = 2.0  # predicted and held-out FMR must agree within this factor ...
CHECK_DOWN_TO = 1e-6  # ... for every predicted FMR at least this
TAIL_SIMILARITY = 99.0  # false matches at and above this are listed by pair of people
HIGHEST_LISTED = 20  # the highest impostor pairs kept in the map's metadata, for inspection
DEFINITION = (
    f"Similarity S means false-match rate (100 - S) x {FMR_PER_POINT:g}, for FMR in [0, {100 * FMR_PER_POINT:g}];"
    " Similarity 0 below"
)


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
    """Quantile knots of the sorted impostor scores, from ``MAX_FMR`` down to ``MIN_EVENTS`` events."""
    total = len(impostor)
    if total * MAX_FMR < MIN_EVENTS:
        raise ValueError(f"{total} impostor pairs are too few to measure an FMR of {MAX_FMR:g}")
    knots: list[Knot] = []
    level = 0
    while True:
        count = round(total * MAX_FMR * 10 ** (-level / LEVELS_PER_DECADE))
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
    for a, b in pairwise(knots):
        for step in range(1, SEGMENT_SAMPLES + 1):
            t = step / SEGMENT_SAMPLES
            raw.append(a.raw + t * (b.raw - a.raw))
            fmr.append(math.exp((1 - t) * math.log(a.fmr) + t * math.log(b.fmr)))
    raw.append(1.0)
    fmr.append(0.0)
    similarity = similarity_for_fmr(np.array(fmr))
    similarity[0] = 0.0
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
            "fmr_per_point": FMR_PER_POINT,
            "extrapolation": _extrapolation(knots),
            "knots": [{"raw": k.raw, "impostors_at_or_above": k.count, "impostors": k.total} for k in knots],
        },
    )


def _extrapolation(knots: list[Knot]) -> str:
    """What the map assumes above its last knot, in words, with the measured tail's slope."""
    last = knots[-1]
    decade = next((k for k in reversed(knots) if k.count >= 10 * last.count), knots[0])
    slope = math.log10(decade.fmr / last.fmr) / (last.raw - decade.raw) / 10  # decades per 0.1 of cosine
    linear = 1 / (1 - last.raw) / 10 / math.log(10)  # the straight line's initial fall, same unit
    return (
        f"above cosine {last.raw} ({last.count} impostor pairs at or above it, FMR {last.fmr:.2e}, Similarity "
        f"{float(similarity_for_fmr(last.fmr)):.4f}) too few impostors remain to measure. The map rises linearly "
        "in Similarity to 100 at cosine 1, i.e. assumes the FMR falls linearly to 0 there: at first "
        f"{linear:.2f} decades per 0.1 of cosine, against {slope:.2f} over the last measured decade "
        f"(cosine {decade.raw} to {last.raw}). Conservative unless the tail flattens; in LFW the few pairs "
        "up there are mostly labelling errors (see highest_impostor_pairs)"
    )


def rate_row(
    mapping: SimilarityMap, scores: PairScores, similarity: float, tail: list[ScoredPair] | None = None
) -> dict[str, Any]:
    """Predicted and observed error rates of ``scores`` at one Similarity threshold.

    ``tail``, the highest impostor pairs, gives how many different pairs of people
    the false matches come from, where it reaches down to the threshold: a single
    mislabelled image makes false matches with every photo of the person it shows,
    so false matches come in clusters and a binomial interval is too narrow.
    """
    threshold = mapping.raw_threshold(similarity)
    count, total = scores.impostors_at_or_above(threshold), len(scores.impostor)
    in_tail = [p for p in tail or [] if p.score >= threshold]
    clusters = Counter(tuple(sorted(p.people)) for p in in_tail) if in_tail and len(in_tail) == count else None
    predicted = fmr_for_similarity(similarity)
    return {
        "similarity": similarity,
        "raw_threshold": round(threshold, 6),
        "predicted_fmr": predicted,
        "false_matches": count,
        "impostor_pairs": total,
        "observed_fmr": count / total,
        "observed_fmr_95ci": list(clopper_pearson(count, total)),
        "people_pairs": len(clusters) if clusters is not None else None,
        "largest_people_pair": (
            {"people": list(clusters.most_common(1)[0][0]), "false_matches": clusters.most_common(1)[0][1]}
            if clusters
            else None
        ),
        "ratio": (count / total) / predicted if predicted > 0 else None,
        "false_non_matches": scores.genuine_below(threshold),
        "genuine_pairs": len(scores.genuine),
        "fnmr": scores.fnmr(threshold),
    }


def is_checked(predicted_fmr: float) -> bool:
    """Whether the held-out rule applies at this FMR (1e-9 of slack: 100 - 99.9 is not exactly 0.1)."""
    return predicted_fmr >= CHECK_DOWN_TO * (1 - 1e-9)


def heldout_check(mapping: SimilarityMap, heldout: PairScores, tail: list[ScoredPair]) -> dict[str, Any]:
    rows = [rate_row(mapping, heldout, s, tail) for s in CHECK_SIMILARITIES]
    checked = [r for r in rows if is_checked(r["predicted_fmr"])]
    passed = all(1 / CHECK_FACTOR <= r["ratio"] <= CHECK_FACTOR for r in checked)
    return {
        "rule": f"observed / predicted FMR within a factor of {CHECK_FACTOR:g} for every predicted FMR >= {CHECK_DOWN_TO:g}",
        "passed": passed,
        "rows": rows,
    }


def split_people(labelled: LabelledVectors, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random half of the people, and the other half."""
    order = np.random.default_rng(seed).permutation(len(labelled.names))
    half = len(order) // 2
    return np.sort(order[:half]), np.sort(order[half:])


def split_check(labelled: LabelledVectors, seed: int) -> dict[str, Any]:
    """Fit a map on a seeded half of the people and check it on the other half."""
    fit_people, check_people = split_people(labelled, seed)
    fit_half, check_half = labelled.subset(fit_people), labelled.subset(check_people)
    half_map = fit_map(labelled.model, all_pair_scores(fit_half).impostor)
    check_tail = impostor_pairs_at_or_above(check_half, half_map.raw_threshold(TAIL_SIMILARITY))
    return {
        "split": f"people shuffled with numpy default_rng({seed}); map fitted on the first half, checked on the second",
        "seed": seed,
        "fit_half": _half_summary(fit_half),
        "check_half": _half_summary(check_half),
        **heldout_check(half_map, all_pair_scores(check_half), check_tail),
    }


def calibrate(labelled: LabelledVectors, version: str, seed: int = 2024, other_splits: int = 4) -> SimilarityMap:
    """Check on held-out people (the split of ``seed``, and ``other_splits`` more to show how
    much the split matters), then fit on everyone."""
    check = split_check(labelled, seed)
    others = [split_check(labelled, seed + i) for i in range(1, other_splits + 1)]
    scores = all_pair_scores(labelled)
    highest = impostor_pairs_at_or_above(labelled, float(scores.impostor[-HIGHEST_LISTED]))[:HIGHEST_LISTED]
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
        "highest_impostor_pairs": [[round(p.score, 4), p.left, p.right] for p in highest],
        "heldout_check": check,
        "other_splits": [
            {
                "seed": o["seed"],
                "passed": o["passed"],
                "ratios": {str(r["similarity"]): r["ratio"] for r in o["rows"]},
                "false_matches": {str(r["similarity"]): r["false_matches"] for r in o["rows"]},
                "largest_people_pair": {str(r["similarity"]): r["largest_people_pair"] for r in o["rows"]},
            }
            for o in others
        ],
    }
    mapping = fit_map(labelled.model, scores.impostor, described)
    tail = impostor_pairs_at_or_above(labelled, mapping.raw_threshold(TAIL_SIMILARITY))
    mapping.metadata["table"] = [rate_row(mapping, scores, s, tail) for s in TABLE_SIMILARITIES]
    return mapping


def _half_summary(half: LabelledVectors) -> dict[str, int]:
    people = len(np.unique(half.people))
    counts = np.bincount(half.people)
    counts = counts[counts > 0]
    genuine = int(np.sum(counts * (counts - 1) // 2))
    n = len(half.people)
    return {
        "people_with_a_face": people,
        "images": n,
        "genuine_pairs": genuine,
        "impostor_pairs": n * (n - 1) // 2 - genuine,
    }
