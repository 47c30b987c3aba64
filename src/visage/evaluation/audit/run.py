"""The bias audit's measures: error rates per demographic cell, with their uncertainty.

See :mod:`visage.evaluation.audit.command` for what is measured and why; this module
computes it. :func:`run_audit` returns an :class:`Audit`, which renders itself
as JSON; :mod:`visage.evaluation.audit.report` turns it into HTML and markdown.
Engine results come from the evaluation cache; pair scores from
:mod:`visage.evaluation.allpairs` (blocked matrix products).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np

from visage.engine import Engine
from visage.engine.similarity import SimilarityMap
from visage.evaluation.allpairs import LabelledVectors, PairScores, all_pair_scores
from visage.evaluation.cache import AnalysisCache
from visage.evaluation.intervals import Measure, Rate, bootstrap_mean, clopper_pearson
from visage.evaluation.labelled import (
    LabelledFace,
    age_group_bounds,
    by_cell,
    fairface,
    lfw_by_gender,
    limit_per_cell,
    utkface,
)
from visage.evaluation.lfw import central_face, embed_images
from visage.evaluation.prediction import map_identity, predicted_fmr
from visage.faces import Face

THRESHOLDS = (80.0, 90.0, 99.0)
ATTRIBUTES = ("ALL",)
ADULT = 18  # years: UTKFace gender error and FMR are also given over faces (pairs of faces) at least this old
BINS = np.linspace(-1.0, 1.0, 201)  # cosine histogram bins of the score plots, 0.01 wide


@dataclass(frozen=True)
class MeasureInfo:
    key: str
    label: str
    unit: str = ""  # "" for rates
    higher_is_better: bool = False
    scale: float = 1.0  # shown times this (100: a mean of rates, in %)
    threshold: float | None = None  # the Similarity threshold of a matching measure
    false_match: bool = False  # an FMR, which the map makes a promise about


DETECTION = MeasureInfo("detection_rate", "Detection rate", higher_is_better=True)
GENDER = MeasureInfo("gender_error", "Gender error rate")
ADULT_GENDER = MeasureInfo("adult_gender_error", "Gender error rate, 18+")
AGE_MAE = MeasureInfo("age_mae", "Age MAE (AgeRange midpoint)", " years")
AGE_ERROR = MeasureInfo("age_error", "Age error outside the group", " years")
AGE_MISS = MeasureInfo("age_outside_group", "Age midpoint outside the group")


def fmr_info(threshold: float) -> MeasureInfo:
    return MeasureInfo(f"fmr@{threshold:g}", f"FMR at Similarity {threshold:g}", threshold=threshold, false_match=True)


def adult_fmr_info(threshold: float) -> MeasureInfo:
    return MeasureInfo(
        f"adult_fmr@{threshold:g}",
        f"FMR at Similarity {threshold:g}, both {ADULT}+",
        threshold=threshold,
        false_match=True,
    )


def fnmr_info(threshold: float) -> MeasureInfo:
    return MeasureInfo(f"fnmr@{threshold:g}", f"FNMR at Similarity {threshold:g}", threshold=threshold)


def person_fnmr_info(threshold: float) -> MeasureInfo:
    return MeasureInfo(
        f"person_fnmr@{threshold:g}",
        f"FNMR at Similarity {threshold:g}, each person equal",
        " %",
        scale=100.0,
        threshold=threshold,
    )


@dataclass
class Cell:
    name: str
    size: int  # labelled faces in the cell
    measures: dict[str, Measure]
    histograms: dict[str, np.ndarray] = field(default_factory=dict)  # "impostor"/"genuine": pairs per BINS interval
    top_pairs: list[dict[str, Any]] = field(default_factory=list)  # the highest-scoring impostor pairs, to check by eye


@dataclass(frozen=True)
class Extremes:
    measure: MeasureInfo
    worst: str
    best: str
    worst_value: Measure
    best_value: Measure
    ratio: float | None  # worst / best of the error (for detection: of the miss rate)
    ratio_at_least: float | None  # when the best cell has no errors: worst / best's 95 % upper bound

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure.key,
            "worst": self.worst,
            "best": self.best,
            "worst_value": self.worst_value.to_json(),
            "best_value": self.best_value.to_json(),
            "ratio": _round(self.ratio),
            "ratio_at_least": _round(self.ratio_at_least),
            "ratio_of": "miss rate (1 - detection rate)" if self.measure.higher_is_better else self.measure.label,
        }


@dataclass
class DatasetAudit:
    key: str
    title: str
    measures: list[MeasureInfo]
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)

    def extremes(self) -> list[Extremes]:
        return [e for e in (extremes(self.cells, m) for m in self.measures) if e is not None]

    def to_json(self) -> dict[str, Any]:
        cells = {}
        for cell in self.cells:
            entry: dict[str, Any] = {"size": cell.size, "measures": {k: m.to_json() for k, m in cell.measures.items()}}
            for kind, histogram in cell.histograms.items():
                entry[f"{kind}_histogram"] = histogram.tolist()
            if cell.top_pairs:
                entry["top_pairs"] = cell.top_pairs
            cells[cell.name] = entry
        return {
            "title": self.title,
            "measures": {m.key: m.label + (f" ({m.unit.strip()})" if m.unit else "") for m in self.measures},
            "cells": cells,
            "extremes": [e.to_json() for e in self.extremes()],
            "notes": self.notes,
        }


@dataclass
class Audit:
    model: str
    model_version: str
    similarity_map: SimilarityMap
    thresholds: tuple[float, ...]
    limit: int | None
    seed: int
    datasets: list[DatasetAudit]
    runtime_seconds: float = 0.0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def raw_threshold(self, threshold: float) -> float:
        return self.similarity_map.raw_threshold(threshold)

    def predicted(self, threshold: float) -> float | None:
        return predicted_fmr(self.similarity_map, threshold)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_version": self.model_version,
            "similarity_map": map_identity(self.similarity_map),
            "thresholds": {
                f"{t:g}": {"raw_cosine": _round(self.raw_threshold(t)), "predicted_fmr": _round(self.predicted(t))}
                for t in self.thresholds
            },
            "limit_per_cell": self.limit,
            "seed": self.seed,
            "created": self.created,
            "runtime_seconds": round(self.runtime_seconds, 1),
            "histogram_bins": [round(float(b), 3) for b in BINS],
            "datasets": {d.key: d.to_json() for d in self.datasets},
        }


# Measures ------------------------------------------------------------------------------


def age_midpoint(face: Face) -> float:
    age = face.detail.age_range
    if age is None:
        raise ValueError("the face was analysed without AGE_RANGE")
    return (age.low + age.high) / 2.0


def distance_outside(value: float, group: str) -> float:
    """0 inside the age group [a, b + 1), else the distance to its nearest end."""
    low, high = age_group_bounds(group)
    return max(0.0, low - value, value - high)


def attribute_measures(faces: list[LabelledFace], found: list[Face | None]) -> dict[str, Measure]:
    detected = [(f, x) for f, x in zip(faces, found) if x is not None]
    wrong = sum(1 for f, x in detected if x.detail.gender is None or x.detail.gender.value != f.gender)
    measures: dict[str, Measure] = {
        DETECTION.key: Rate(len(detected), len(faces)),
        GENDER.key: Rate(wrong, len(detected)),
    }
    if faces and faces[0].age is not None:
        measures[AGE_MAE.key] = bootstrap_mean(np.array([abs(age_midpoint(x) - (f.age or 0)) for f, x in detected]))
    if faces and faces[0].age_group is not None:
        errors = np.array([distance_outside(age_midpoint(x), f.age_group or "") for f, x in detected])
        measures[AGE_ERROR.key] = bootstrap_mean(errors)
        measures[AGE_MISS.key] = Rate(int(np.count_nonzero(errors)), len(errors))
    return measures


def labelled_vectors(model: str, members: list[LabelledFace], found: list[Face | None]) -> LabelledVectors:
    """The detected faces' vectors, rows sorted by person; a face without identity is its own person."""
    rows = sorted(
        (
            (f.identity if f.identity is not None else f.path.name, str(f.path), x.embedding.vector)
            for f, x in zip(members, found)
            if x is not None and x.embedding is not None
        ),
        key=lambda row: row[0],
    )
    names, people = np.unique([r[0] for r in rows], return_inverse=True)
    dimension = rows[0][2].size if rows else 0
    return LabelledVectors(
        model=model,
        names=[str(n) for n in names],
        paths=[r[1] for r in rows],
        people=np.asarray(people, dtype=np.int64),
        vectors=np.array([r[2] for r in rows], dtype=np.float32).reshape(len(rows), dimension),
        without_face=[str(f.path) for f, x in zip(members, found) if x is None],
    )


def histograms(scores: PairScores) -> dict[str, np.ndarray]:
    return {
        kind: np.histogram(np.clip(values, -1.0, 1.0), BINS)[0]
        for kind, values in (("impostor", scores.impostor), ("genuine", scores.genuine))
        if values.size
    }


def fmr_measures(
    scores: PairScores, raw: np.ndarray, thresholds: tuple[float, ...], info: Callable[[float], MeasureInfo] = fmr_info
) -> dict[str, Measure]:
    total = len(scores.impostor)
    return {info(t).key: Rate(scores.impostors_at_or_above(r), total) for t, r in zip(thresholds, raw)}


def fnmr_measures(
    scores: PairScores, missing_pairs: int, raw: np.ndarray, thresholds: tuple[float, ...]
) -> dict[str, Measure]:
    """Pairs with an undetected face are false non-matches at every threshold."""
    total = len(scores.genuine) + missing_pairs
    return {fnmr_info(t).key: Rate(scores.genuine_below(r) + missing_pairs, total) for t, r in zip(thresholds, raw)}


def person_fnmr(
    members: list[LabelledFace], found: list[Face | None], raw: np.ndarray, thresholds: tuple[float, ...]
) -> dict[str, Measure]:
    """FNMR averaged over people with two or more images, so that no one person outweighs the rest
    (an image without a detected face makes its pairs false non-matches)."""
    people: dict[str, list[Face | None]] = {}
    for face, result in zip(members, found):
        people.setdefault(face.identity or "", []).append(result)
    rates = []
    for images in people.values():
        if len(images) < 2:
            continue
        vectors = np.array([x.embedding.vector for x in images if x is not None and x.embedding is not None])
        scores = (vectors @ vectors.T)[np.triu_indices(len(vectors), k=1)] if len(vectors) > 1 else np.empty(0)
        pairs = len(images) * (len(images) - 1) // 2
        rates.append([(np.count_nonzero(scores < r) + pairs - scores.size) / pairs for r in raw])
    table = np.array(rates).reshape(len(rates), len(raw))
    return {person_fnmr_info(t).key: bootstrap_mean(table[:, i]) for i, t in enumerate(thresholds)}


def missing_genuine_pairs(faces: list[LabelledFace], found: list[Face | None]) -> int:
    """Same-person pairs in which at least one image has no detected face."""
    people: dict[str, list[bool]] = {}
    for face, result in zip(faces, found):
        people.setdefault(face.identity or "", []).append(result is not None)
    return sum(len(d) * (len(d) - 1) // 2 - sum(d) * (sum(d) - 1) // 2 for d in people.values())


# Datasets --------------------------------------------------------------------------------


def analysed(engine: Engine, model: str, faces: list[LabelledFace]) -> list[Face | None]:
    """The labelled (central) face of each image, with age, gender and embedding, from the cache."""
    found = AnalysisCache(engine, model, ATTRIBUTES).many([f.path for f in faces])
    return [central_face(found[f.path]) for f in faces]


def audit_utkface(
    engine: Engine, model: str, raw: np.ndarray, thresholds: tuple[float, ...], faces: list[LabelledFace]
) -> DatasetAudit:
    found = dict(zip((f.path for f in faces), analysed(engine, model, faces)))
    similarity = engine.similarity_map(model)
    cells = []
    minor_matches, minor_pairs = np.zeros(len(thresholds), dtype=np.int64), 0
    for name, members in by_cell(faces).items():
        results = [found[f.path] for f in members]
        scores = all_pair_scores(labelled_vectors(model, members, results))
        adults = all_pair_scores(labelled_vectors(model, *_aged(members, results, adult=True)))
        minors = all_pair_scores(labelled_vectors(model, *_aged(members, results, adult=False)))
        minor_matches += [minors.impostors_at_or_above(r) for r in raw]
        minor_pairs += len(minors.impostor)
        measures = attribute_measures(members, results)
        measures[ADULT_GENDER.key] = attribute_measures(*_aged(members, results, adult=True))[GENDER.key]
        measures |= fmr_measures(scores, raw, thresholds) | fmr_measures(adults, raw, thresholds, adult_fmr_info)
        cells.append(Cell(name, len(members), measures, histograms(scores), top_pairs(members, results, similarity)))
    infos = [DETECTION, GENDER, ADULT_GENDER, AGE_MAE, *map(fmr_info, thresholds), *map(adult_fmr_info, thresholds)]
    audit = DatasetAudit("utkface", "UTKFace balanced subset (gender x race)", infos, cells)
    audit.notes.append(age_mix_note(faces, thresholds, [Rate(int(k), minor_pairs) for k in minor_matches]))
    return audit


def top_pairs(
    members: list[LabelledFace], found: list[Face | None], similarity: SimilarityMap, count: int = 10
) -> list[dict[str, Any]]:
    """The ``count`` highest-scoring pairs of a cell without identity labels: file names, ages and Similarity."""
    kept = [(f, x.embedding.vector) for f, x in zip(members, found) if x is not None and x.embedding is not None]
    if len(kept) < 2:
        return []
    vectors = np.array([v for _, v in kept])
    rows, columns = np.triu_indices(len(kept), k=1)
    scores = np.einsum("ij,ij->i", vectors[rows], vectors[columns])
    best = np.argsort(-scores, kind="stable")[:count]
    return [
        {
            "a": kept[rows[i]][0].path.name,
            "b": kept[columns[i]][0].path.name,
            "ages": [kept[rows[i]][0].age, kept[columns[i]][0].age],
            "cosine": round(float(scores[i]), 4),
            "similarity": round(float(similarity(float(scores[i]))), 3),
        }
        for i in best
    ]


def _aged(
    members: list[LabelledFace], found: list[Face | None], adult: bool
) -> tuple[list[LabelledFace], list[Face | None]]:
    """The faces (and their results) of people at least ADULT years old, or of those younger."""
    kept = [(f, x) for f, x in zip(members, found) if ((f.age or 0) >= ADULT) == adult]
    return [f for f, _ in kept], [x for _, x in kept]


def age_mix_note(faces: list[LabelledFace], thresholds: tuple[float, ...], minor_fmr: list[Rate]) -> str:
    """How many of each cell's faces are children, and how often two children's faces match falsely."""
    shares = ", ".join(
        f"{cell} {sum((f.age or 0) < ADULT for f in members) / len(members):.0%}"
        for cell, members in by_cell(faces).items()
    )
    rates = "; ".join(f"at {t:g}: {r.describe()}" for t, r in zip(thresholds, minor_fmr))
    return (
        f"Share of faces under {ADULT} per cell: {shares}. Pairs of two under-{ADULT} faces in the same cell, all cells "
        f"together, false-match {rates}. Children's faces match each other far more often than adults' do, so a cell's "
        f'FMR over all pairs depends on how many children it holds; the "both {ADULT}+" columns compare adults with adults.'
    )


def audit_fairface(engine: Engine, model: str, faces: list[LabelledFace]) -> DatasetAudit:
    found = dict(zip((f.path for f in faces), analysed(engine, model, faces)))
    groups = by_cell(faces)
    cells = [
        Cell(name, len(groups[name]), attribute_measures(groups[name], [found[f.path] for f in groups[name]]))
        for name in groups
    ]
    return DatasetAudit(
        "fairface", "FairFace sample (age group x gender)", [DETECTION, GENDER, AGE_ERROR, AGE_MISS], cells
    )


def audit_lfw(
    engine: Engine, model: str, raw: np.ndarray, thresholds: tuple[float, ...], faces: list[LabelledFace]
) -> DatasetAudit:
    found = embed_images(engine, [f.path for f in faces], model)
    cells = []
    for name, members in by_cell(faces).items():
        results = [found[f.path] for f in members]
        scores = all_pair_scores(labelled_vectors(model, members, results))
        measures: dict[str, Measure] = {DETECTION.key: Rate(sum(x is not None for x in results), len(members))}
        measures |= fnmr_measures(scores, missing_genuine_pairs(members, results), raw, thresholds)
        measures |= person_fnmr(members, results, raw, thresholds)
        measures |= fmr_measures(scores, raw, thresholds)
        cells.append(Cell(name, len(members), measures, histograms(scores)))
        del scores  # the male cell's 53 million impostor scores
    infos = [DETECTION, *map(fnmr_info, thresholds), *map(person_fnmr_info, thresholds), *map(fmr_info, thresholds)]
    audit = DatasetAudit("lfw", "LFW by gender (impostors: same gender)", infos, cells)
    audit.notes.append(largest_identity_note(faces))
    fitted_on = engine.similarity_map(model).metadata.get("fitted_on")
    if fitted_on:
        audit.notes.append(
            f"The map was fitted on: {fitted_on}. Its promise is an average over all those pairs, pairs of a man and a "
            "woman included, which rarely match; pairs of two people of the same gender match more often than that "
            "average, so an FMR above the promise here is what a search among people of one gender meets."
        )
    return audit


def largest_identity_note(faces: list[LabelledFace]) -> str:
    counts: dict[tuple[str, str], int] = {}
    for face in faces:
        key = (face.cell, face.identity or "")
        counts[key] = counts.get(key, 0) + 1
    pairs_per_cell: dict[str, int] = {}
    for (cell, _), n in counts.items():
        pairs_per_cell[cell] = pairs_per_cell.get(cell, 0) + n * (n - 1) // 2
    (cell, person), n = max(counts.items(), key=lambda item: item[1])
    share = n * (n - 1) / 2 / max(pairs_per_cell[cell], 1)
    return (
        f"{person.replace('_', ' ')} has {n} images: {share:.0%} of the {pairs_per_cell[cell]:,} same-person pairs "
        f"of cell {cell}, so that cell's FNMR is largely one person's."
    )


# Worst and best ------------------------------------------------------------------------


def _badness(measure: Measure, info: MeasureInfo) -> Measure:
    """The measure as an error: detection rate becomes the miss rate."""
    if info.higher_is_better and isinstance(measure, Rate):
        return Rate(measure.total - measure.events, measure.total)
    return measure


def _size(measure: Measure) -> int:
    return measure.total if isinstance(measure, Rate) else measure.n


def extremes(cells: list[Cell], info: MeasureInfo) -> Extremes | None:
    """The worst and best cell of a measure; among equals, the larger cell (the tighter estimate)."""
    scored = [
        (c.name, c.measures[info.key]) for c in cells if info.key in c.measures and _size(c.measures[info.key]) > 0
    ]
    if not scored:
        return None
    bad = [(name, m, _badness(m, info)) for name, m in scored]
    worst = max(bad, key=lambda x: (x[2].value, _size(x[2])))
    best = min(bad, key=lambda x: (x[2].value, -_size(x[2])))
    worst_bad, best_bad = worst[2].value, best[2].value
    ratio = worst_bad / best_bad if best_bad > 0 else None
    at_least = None
    if best_bad == 0 and worst_bad > 0 and isinstance(best[2], Rate):
        bound = worst_bad / clopper_pearson(best[2].events, best[2].total)[1]
        at_least = bound if bound > 1 else None  # below 1 the data cannot even order the two cells
    return Extremes(info, worst[0], best[0], worst[1], best[1], ratio, at_least)


# Running ---------------------------------------------------------------------------------


def run_audit(
    data: Path,
    model: str = "sface",
    limit: int | None = None,
    seed: int = 0,
    engine: Engine | None = None,
    thresholds: tuple[float, ...] = THRESHOLDS,
    progress: bool = False,
) -> Audit:
    started = time.monotonic()
    engine = engine or Engine()
    face_model = engine.face_model(model)
    raw = np.array([engine.similarity_map(model).raw_threshold(t) for t in thresholds])

    def say(message: str) -> None:
        if progress:
            click.echo(f"[{time.monotonic() - started:6.0f} s] {message}", err=True)

    say("UTKFace")
    datasets = [audit_utkface(engine, model, raw, thresholds, limit_per_cell(utkface(data), limit, seed))]
    say("FairFace")
    datasets.append(audit_fairface(engine, model, limit_per_cell(fairface(data), limit, seed)))
    say("LFW")
    datasets.append(audit_lfw(engine, model, raw, thresholds, limit_per_cell(lfw_by_gender(data), limit, seed)))
    say("done")
    return Audit(
        model,
        face_model.version,
        engine.similarity_map(model),
        thresholds,
        limit,
        seed,
        datasets,
        runtime_seconds=time.monotonic() - started,
    )


def _round(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else round(float(x), 8)
