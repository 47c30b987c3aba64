"""Similarity as a false-match rate: fit each face model's cosine-to-Similarity map on LFW.

The definition (decided once, for every model)::

    Similarity S >= 50 means a false-match rate FMR = (100 - S) x 1e-6
    Similarity S <  50 means FMR = (5e-5) ** (S / 50), i.e. S = 50 x log(FMR) / log(5e-5)

so each point of Similarity from 50 to 100 is one false match in a million
comparisons of different people: S 50 is FMR 5e-5, 80 is 2e-5, 90 is 1e-5, 95 is
5e-6, 99 is 1e-6, 99.9 is 1e-7. Below 50 the scale is graded on the logarithm of
the FMR, down to 0 for an FMR of 1: S 40 is FMR 3.7e-4, 25 is 7.1e-3, 10 is 0.14.
Pairs of strangers then spread over 0-50 (most score 0-15), and two photos of one
person in a hard pose, which fall short of 50, still score above strangers, so
a low threshold keeps a meaning and results below 50 come back in a useful order.
The two pieces meet at S 50, and the band at and above 50 is exactly the linear
scale as first published.

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

The same method fits a map for any population laid out as one folder per person
(``visage eval calibrate --data DIR``): it needs at least ``MIN_PEOPLE`` people with
a face, and says down to which FMR its impostor pairs can speak (the last knot);
above that Similarity the map is the conservative extrapolation described above.
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

FMR_PER_POINT = 1e-6  # one point of Similarity from 50 to 100 is this false-match rate
LINEAR_FROM = 50.0  # Similarity at and above this is linear in the FMR; below, linear in its logarithm
LINEAR_FMR = (100.0 - LINEAR_FROM) * FMR_PER_POINT  # the FMR at Similarity 50, where the two pieces meet
MIN_EVENTS = 10  # the last empirical knot has at least this many impostors above it
LEVELS_PER_DECADE = 10
FIRST_LEVEL_FMR = 10 ** (-1 / LEVELS_PER_DECADE)  # the first empirical knot's FMR
SEGMENT_SAMPLES = 4  # knots per segment between empirical quantiles
MIN_KNOT_GAP = 1e-4  # in cosine, between empirical knots (the map file keeps 6 decimals)
TABLE_SIMILARITIES = (20.0, 40.0, 50.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.9)
CHECK_SIMILARITIES = (10.0, 25.0, 40.0, 50.0, 70.0, 80.0, 90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95)
#: What each face rule of :class:`~visage.evaluation.allpairs.LabelledVectors` means, as the map's metadata says it.
FACE_RULES = {
    "central": "the face nearest the centre of each image",
    "agreeing": "in an image with several faces, the one that agrees with the person's other photos "
    "(visage.evaluation.labels)",
}
CHECK_FACTOR = 2.0  # predicted and held-out FMR must agree within this factor ...
CHECK_DOWN_TO = 1e-6  # ... for every predicted FMR at least this
TAIL_SIMILARITY = 99.0  # false matches at and above this are listed by pair of people
HIGHEST_LISTED = 20  # the highest impostor pairs kept in the map's metadata, for inspection
#: People (with a face) a calibration needs: the held-out check fits on half of them and checks
#: on the other half, and each half needs 20 people, so that its false matches come from 190
#: pairs of people and not from the few pairs a handful of people make.
MIN_PEOPLE = 40
LFW = "LFW deep-funneled, every pair of images: genuine = same person, impostor = different people"


class TooFewPeople(ValueError):
    """A population too small to calibrate on; the message says how many people are needed."""


DEFINITION = (
    f"Similarity S >= {LINEAR_FROM:g} means false-match rate (100 - S) x {FMR_PER_POINT:g}; below {LINEAR_FROM:g}, "
    f"FMR = {LINEAR_FMR:g} ** (S / {LINEAR_FROM:g}) (graded on log FMR, Similarity 0 at FMR 1)"
)


def fmr_for_similarity(similarity: float) -> float:
    if similarity >= LINEAR_FROM:
        return (100.0 - similarity) * FMR_PER_POINT
    return float(LINEAR_FMR ** (max(similarity, 0.0) / LINEAR_FROM))


def similarity_for_fmr(fmr: float | np.ndarray) -> np.ndarray:
    """The Similarity of each FMR in [0, 1]: linear in the FMR up to 50, then in its logarithm."""
    fmr = np.clip(np.asarray(fmr, dtype=np.float64), 0.0, 1.0)
    linear = 100.0 - fmr / FMR_PER_POINT
    with np.errstate(divide="ignore"):
        graded = LINEAR_FROM * np.log(np.maximum(fmr, LINEAR_FMR)) / math.log(LINEAR_FMR)
    return np.clip(np.where(fmr <= LINEAR_FMR, linear, graded), 0.0, 100.0)


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
    """Quantile knots of the sorted impostor scores, from FMR 10 ** -0.1 down to ``MIN_EVENTS`` events."""
    total = len(impostor)
    if total * FIRST_LEVEL_FMR < MIN_EVENTS + 1:
        raise ValueError(f"{total} impostor pairs are too few to measure any false-match rate")
    knots: list[Knot] = []
    level = 1  # level 0, FMR 1, is every impostor: the map's first point, cosine -1
    while True:
        count = round(total * 10 ** (-level / LEVELS_PER_DECADE))
        level += 1
        if count < MIN_EVENTS:
            break
        if knots and knots[-1].count - count < 3 * math.sqrt(knots[-1].count):
            continue
        # exactly `count` scores at or above the midpoint of the count-th and (count+1)-th largest
        raw = (float(impostor[total - count]) + float(impostor[total - count - 1])) / 2
        if knots and round(raw, 6) - knots[-1].raw < MIN_KNOT_GAP:
            continue  # (nearly) tied scores: this level cannot be told apart from the last
        # the map file keeps 6 decimals; where scores are that dense, count what the rounded knot has above it
        at_or_above = total - int(np.searchsorted(impostor, round(raw, 6), side="left"))
        knots.append(Knot(round(raw, 6), at_or_above, total))
    return knots


def fit_map(
    model: str,
    impostor: np.ndarray,
    metadata: dict[str, Any] | None = None,
    keep_from_50: SimilarityMap | None = None,
) -> SimilarityMap:
    """The Similarity map of sorted impostor scores, by the definition above.

    With ``keep_from_50``, the band at and above Similarity 50 is that map's, knot for knot
    (the thresholds users have written keep their cosines), and the data fit the band below.
    """
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
    knots_raw, similarity = _join_at_linear_from(np.round(np.array(raw), 6), np.array(fmr))
    if keep_from_50 is not None:
        knots_raw, similarity = _keep_from_50(knots_raw, similarity, keep_from_50)
    extrapolation = _extrapolation(knots)
    if similarity_for_fmr(knots[-1].fmr) < LINEAR_FROM:  # the data stop short of 50: say where the join is
        join = float(knots_raw[int(np.searchsorted(similarity, LINEAR_FROM - 1e-3))])
        extrapolation += (
            f". Here the data stop below Similarity {LINEAR_FROM:g}: from the last knot the map rises linearly to "
            f"{LINEAR_FROM:g} at cosine {join}, where the linear scale's map (FMR falling linearly to 0 at cosine 1) "
            f"reaches {LINEAR_FROM:g}, and on as that map to 100"
        )
    return SimilarityMap(
        model=model,
        raw=knots_raw,
        similarity=np.round(similarity, 6),
        method=(
            "false-match-rate calibration: " + DEFINITION + ". Knots at empirical quantiles of the "
            "impostor scores, log FMR interpolated linearly between them (visage.evaluation.calibration)"
        ),
        metadata={
            **(metadata or {}),
            "definition": DEFINITION,
            "fmr_per_point": FMR_PER_POINT,
            "graded_below": LINEAR_FROM,
            "extrapolation": extrapolation,
            "measured_down_to": {
                "fmr": knots[-1].fmr,
                "similarity": round(float(similarity_for_fmr(knots[-1].fmr)), 4),
                "cosine": knots[-1].raw,
                "impostors_at_or_above": knots[-1].count,
            },
            "knots": [{"raw": k.raw, "impostors_at_or_above": k.count, "impostors": k.total} for k in knots],
        },
    )


def _join_at_linear_from(raw: np.ndarray, fmr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map's knots: graded Similarity below 50, and from 50 up exactly the linear scale's map.

    Where the linear scale's map (linear in Similarity between the same raw knots) reaches 50,
    a knot is added at that cosine (to the map file's 6 decimals) with the linear map's own
    value there; from it up the knots are the linear scale's, so every Similarity of 50 and
    above is what the linear scale gave, and below it the graded scale takes over.
    """
    linear = np.clip(100.0 - fmr / FMR_PER_POINT, 0.0, 100.0)
    linear[0] = 0.0
    graded = similarity_for_fmr(fmr)
    above = int(np.searchsorted(linear, LINEAR_FROM, side="left"))  # first knot at or above 50
    if above == 0 or above == len(raw):
        return raw, graded  # the data never reach 50, or start above it: one piece
    below = above - 1
    t = (LINEAR_FROM - linear[below]) / (linear[above] - linear[below])
    join = round(float(raw[below] + t * (raw[above] - raw[below])), 6)
    at_join = float(np.interp(join, raw, linear))
    keep_below = raw < join  # the graded knots below the join stay only where they are below its value
    keep_below &= graded < at_join
    joined_raw = np.concatenate([raw[keep_below], [join], raw[above:][raw[above:] > join]])
    joined = np.concatenate([graded[keep_below], [at_join], linear[above:][raw[above:] > join]])
    return joined_raw, joined


def _keep_from_50(raw: np.ndarray, similarity: np.ndarray, kept: SimilarityMap) -> tuple[np.ndarray, np.ndarray]:
    """The fitted knots below the kept map's cosine at Similarity 50, then the kept map's from there."""
    join = round(kept.raw_threshold(LINEAR_FROM), 6)
    at_join = float(kept(join))  # 50, to the 6 decimals the file keeps
    below = (raw < join) & (similarity < at_join)
    above = kept.raw > join
    return (
        np.concatenate([raw[below], [join], kept.raw[above]]),
        np.concatenate([similarity[below], [at_join], kept.similarity[above]]),
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


def is_checked(predicted_fmr: float, impostor_pairs: int | None = None) -> bool:
    """Whether the held-out rule applies at this FMR: down to ``CHECK_DOWN_TO`` (1e-9 of slack: 100 -
    99.9 is not exactly 0.1), and, given the held-out impostor pairs, where they expect at least
    ``MIN_EVENTS`` false matches (always so on half of LFW; a small population stops sooner)."""
    measurable = impostor_pairs is None or predicted_fmr * impostor_pairs >= MIN_EVENTS
    return predicted_fmr >= CHECK_DOWN_TO * (1 - 1e-9) and measurable


def heldout_check(mapping: SimilarityMap, heldout: PairScores, tail: list[ScoredPair]) -> dict[str, Any]:
    rows = [rate_row(mapping, heldout, s, tail) for s in CHECK_SIMILARITIES]
    checked = [r for r in rows if is_checked(r["predicted_fmr"], r["impostor_pairs"])]
    passed = all(1 / CHECK_FACTOR <= r["ratio"] <= CHECK_FACTOR for r in checked)
    return {
        "rule": (
            f"observed / predicted FMR within a factor of {CHECK_FACTOR:g} for every predicted FMR >= "
            f"{CHECK_DOWN_TO:g} at which the held-out pairs expect at least {MIN_EVENTS} false matches"
        ),
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


def require_people(people: int, where: str) -> None:
    """Refuse, with how many are needed, a population of fewer than ``MIN_PEOPLE`` people."""
    if people < MIN_PEOPLE:
        raise TooFewPeople(
            f"{where} has {people} {'person' if people == 1 else 'people'} with a face; a calibration needs at "
            f"least {MIN_PEOPLE} (one folder per person, DIR/<person>/<image>), so that the held-out check "
            f"can fit on {MIN_PEOPLE // 2} people and check on {MIN_PEOPLE // 2} others. Add "
            f"{MIN_PEOPLE - people} more."
        )


def calibrate(
    labelled: LabelledVectors,
    version: str,
    seed: int = 2024,
    other_splits: int = 4,
    fitted_on: str = LFW,
    keep_from_50: SimilarityMap | None = None,
) -> SimilarityMap:
    """Check on held-out people (the split of ``seed``, and ``other_splits`` more to show how
    much the split matters), then fit on everyone. ``fitted_on`` says what the pairs are;
    ``keep_from_50`` keeps that map's band at and above Similarity 50 (:func:`fit_map`)."""
    require_people(len(np.unique(labelled.people)), fitted_on)
    check = split_check(labelled, seed)
    others = [split_check(labelled, seed + i) for i in range(1, other_splits + 1)]
    scores = all_pair_scores(labelled)
    highest = impostor_pairs_at_or_above(labelled, float(scores.impostor[-HIGHEST_LISTED]))[:HIGHEST_LISTED]
    described = {
        "fitted_on": fitted_on,
        "fitted": date.today().isoformat(),
        "face_model_version": version,
        "labels": {
            "face": FACE_RULES[labelled.face_rule],
            "same_people": dict(sorted(labelled.same_as.items())),
            "left_out": labelled.left_out,
            "photos_per_person": labelled.photos_per_person or "all",
        },
        "images": len(labelled.paths) + len(labelled.without_face),
        "images_without_face": len(labelled.without_face),
        "images_without_face_list": labelled.without_face,
        **({"images_unreadable_list": labelled.unreadable} if labelled.unreadable else {}),
        "people": len(labelled.names),
        "people_with_a_face": len(np.unique(labelled.people)),
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
    if keep_from_50 is not None:
        described["kept_from_50"] = (
            f"the band at and above Similarity {LINEAR_FROM:g} is the previous map's, fitted "
            f"{keep_from_50.metadata.get('fitted', '?')} on {keep_from_50.fitted_on}, knot for knot (its cosine at "
            f"Similarity {LINEAR_FROM:g}: {keep_from_50.raw_threshold(LINEAR_FROM):.6f}); the data fit the band below"
        )
    mapping = fit_map(labelled.model, scores.impostor, described, keep_from_50)
    tail = impostor_pairs_at_or_above(labelled, mapping.raw_threshold(TAIL_SIMILARITY))
    mapping.metadata["table"] = [rate_row(mapping, scores, s, tail) for s in TABLE_SIMILARITIES]
    mapping.metadata["similarity_histogram"] = similarity_histogram(mapping, scores)
    return mapping


def similarity_histogram(mapping: SimilarityMap, scores: PairScores, width: float = 5.0) -> dict[str, Any]:
    """How many genuine and impostor pairs score in each band of Similarity (``width`` wide, from 0 to 100)."""
    edges = np.arange(0.0, 100.0 + width / 2, width)
    cuts = [mapping.raw_threshold(float(e)) for e in edges[1:-1]]
    genuine = np.diff([0, *(np.searchsorted(scores.genuine, c, side="left") for c in cuts), len(scores.genuine)])
    impostor = np.diff([0, *(np.searchsorted(scores.impostor, c, side="left") for c in cuts), len(scores.impostor)])
    return {"edges": edges.tolist(), "genuine": genuine.tolist(), "impostor": impostor.tolist()}


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
