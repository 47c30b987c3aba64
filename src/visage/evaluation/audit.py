"""``visage audit``: the engine's error rates per demographic group, with their uncertainty.

Three labelled sets, each split into cells (demographic groups):

- UTKFace, balanced subset (10 gender x race cells of 200 faces): detection rate,
  gender error rate, age mean absolute error (the AgeRange midpoint against the
  labelled age), and the false-match rate (FMR) of all pairs within a cell at
  Similarity 80, 90 and 99. UTKFace has no identity labels: every pair is taken
  as two different people, so the rare same-person pair counts as a false match.
- FairFace sample (9 age groups x 2 genders, 30 faces each): detection rate, gender
  error rate, age error against the labelled group (0 when the AgeRange midpoint
  falls inside the group, else its distance to the group), and how often it falls outside.
- LFW by gender (the per-image gender lists): false non-match rate (FNMR) of all
  same-person pairs and FMR of all pairs of different people of the same gender.

Cosine scores become Similarity through the face model's configured map, and the
FMR the map promises at each threshold is read from the map file
(:mod:`visage.evaluation.prediction`). Engine results come from the evaluation cache.
Writes ``audit.json``, ``report.html`` and ``plots/`` to ``--out``, and with
``--markdown`` a markdown page (docs/bias-audit.md) from the same numbers.

Run: ``visage audit --out docs/bias-audit --markdown docs/bias-audit.md``
(reduced: ``--limit 20``), or ``python -m visage.evaluation.audit ...``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np

from visage.engine import Engine
from visage.evaluation.cache import AnalysisCache
from visage.evaluation.data import eval_data_dir
from visage.evaluation.intervals import Mean, Measure, Rate, bootstrap_mean, clopper_pearson
from visage.evaluation.labelled import LabelledFace, age_group_bounds, by_cell, fairface, lfw_by_gender, limit_per_cell, utkface
from visage.evaluation.lfw import central_face, embed_images
from visage.evaluation.pairs import BINS, PairScores, genuine_scores, impostor_scores
from visage.evaluation.prediction import map_identity, predicted_fmr
from visage.faces import Face
from visage.similarity import SimilarityMap

THRESHOLDS = (80.0, 90.0, 99.0)
ATTRIBUTES = ("ALL",)


@dataclass(frozen=True)
class MeasureInfo:
    key: str
    label: str
    unit: str = ""  # "" for rates
    higher_is_better: bool = False


DETECTION = MeasureInfo("detection_rate", "Detection rate", higher_is_better=True)
GENDER = MeasureInfo("gender_error", "Gender error rate")
AGE_MAE = MeasureInfo("age_mae", "Age MAE (AgeRange midpoint)", " years")
AGE_ERROR = MeasureInfo("age_error", "Age error outside the group", " years")
AGE_MISS = MeasureInfo("age_outside_group", "Age midpoint outside the group")


def fmr_info(threshold: float) -> MeasureInfo:
    return MeasureInfo(f"fmr@{threshold:g}", f"FMR at Similarity {threshold:g}")


def fnmr_info(threshold: float) -> MeasureInfo:
    return MeasureInfo(f"fnmr@{threshold:g}", f"FNMR at Similarity {threshold:g}")


@dataclass
class Cell:
    name: str
    size: int  # labelled faces in the cell
    measures: dict[str, Measure]
    impostor: PairScores | None = None
    genuine: PairScores | None = None


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
            for kind, scores in (("impostor", cell.impostor), ("genuine", cell.genuine)):
                if scores is not None:
                    entry[f"{kind}_pairs"] = scores.pairs
                    entry[f"{kind}_histogram"] = scores.histogram.tolist()
            cells[cell.name] = entry
        return {
            "title": self.title,
            "measures": {m.key: m.label + m.unit for m in self.measures},
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
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

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
    measures: dict[str, Measure] = {DETECTION.key: Rate(len(detected), len(faces)), GENDER.key: Rate(wrong, len(detected))}
    if faces and faces[0].age is not None:
        measures[AGE_MAE.key] = bootstrap_mean(np.array([abs(age_midpoint(x) - (f.age or 0)) for f, x in detected]))
    if faces and faces[0].age_group is not None:
        errors = np.array([distance_outside(age_midpoint(x), f.age_group or "") for f, x in detected])
        measures[AGE_ERROR.key] = bootstrap_mean(errors)
        measures[AGE_MISS.key] = Rate(int(np.count_nonzero(errors)), len(errors))
    return measures


def vectors(found: list[Face | None]) -> np.ndarray:
    rows = [x.embedding.vector for x in found if x is not None and x.embedding is not None]
    return np.array(rows, dtype=np.float32).reshape(len(rows), -1)


def fmr_measures(scores: PairScores, thresholds: tuple[float, ...]) -> dict[str, Measure]:
    return {fmr_info(t).key: Rate(int(c), scores.pairs) for t, c in zip(thresholds, scores.at_or_above)}


def fnmr_measures(scores: PairScores, missing_pairs: int, thresholds: tuple[float, ...]) -> dict[str, Measure]:
    """Pairs with an undetected face are false non-matches at every threshold."""
    total = scores.pairs + missing_pairs
    return {fnmr_info(t).key: Rate(int(total - c), total) for t, c in zip(thresholds, scores.at_or_above)}


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


def audit_utkface(engine: Engine, model: str, raw: np.ndarray, thresholds: tuple[float, ...], faces: list[LabelledFace]) -> DatasetAudit:
    found = dict(zip((f.path for f in faces), analysed(engine, model, faces)))
    cells = []
    for name, members in by_cell(faces).items():
        results = [found[f.path] for f in members]
        impostor = impostor_scores(vectors(results), None, raw)
        measures = attribute_measures(members, results) | fmr_measures(impostor, thresholds)
        cells.append(Cell(name, len(members), measures, impostor=impostor))
    infos = [DETECTION, GENDER, AGE_MAE, *map(fmr_info, thresholds)]
    return DatasetAudit("utkface", "UTKFace balanced subset (gender x race)", infos, cells)


def audit_fairface(engine: Engine, model: str, faces: list[LabelledFace]) -> DatasetAudit:
    found = dict(zip((f.path for f in faces), analysed(engine, model, faces)))
    groups = by_cell(faces)
    cells = [Cell(name, len(groups[name]), attribute_measures(groups[name], [found[f.path] for f in groups[name]])) for name in groups]
    return DatasetAudit("fairface", "FairFace sample (age group x gender)", [DETECTION, GENDER, AGE_ERROR, AGE_MISS], cells)


def audit_lfw(engine: Engine, model: str, raw: np.ndarray, thresholds: tuple[float, ...], faces: list[LabelledFace]) -> DatasetAudit:
    found = embed_images(engine, [f.path for f in faces], model)
    cells = []
    for name, members in by_cell(faces).items():
        results = [found[f.path] for f in members]
        ids = [f.identity or "" for f, x in zip(members, results) if x is not None]
        vecs = vectors(results)
        genuine = genuine_scores(vecs, ids, raw)
        impostor = impostor_scores(vecs, ids, raw)
        measures: dict[str, Measure] = {DETECTION.key: Rate(len(ids), len(members))}
        measures |= fnmr_measures(genuine, missing_genuine_pairs(members, results), thresholds)
        measures |= fmr_measures(impostor, thresholds)
        cells.append(Cell(name, len(members), measures, impostor=impostor, genuine=genuine))
    infos = [DETECTION, *map(fnmr_info, thresholds), *map(fmr_info, thresholds)]
    audit = DatasetAudit("lfw", "LFW by gender (impostors: same gender)", infos, cells)
    audit.notes.append(largest_identity_note(faces))
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
    scored = [(c.name, c.measures[info.key]) for c in cells if info.key in c.measures and _size(c.measures[info.key]) > 0]
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


def run_audit(data: Path, model: str = "sface", limit: int | None = None, seed: int = 0, engine: Engine | None = None,
              thresholds: tuple[float, ...] = THRESHOLDS, progress: bool = False) -> Audit:
    started = time.monotonic()
    engine = engine or Engine()
    face_model = engine.face_model(model)
    raw = np.array([face_model.similarity.raw_threshold(t) for t in thresholds])

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
    return Audit(model, face_model.version, face_model.similarity, thresholds, limit, seed, datasets,
                 runtime_seconds=time.monotonic() - started)


def _round(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else round(float(x), 8)


@click.command("audit")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Evaluation data folder (default: VISAGE_EVAL_DATA or ../shared/eval).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for report.html, audit.json and plots/.")
@click.option("--model", default="sface", show_default=True, help="Face model to audit.")
@click.option("--limit", type=click.IntRange(2), default=None, help="At most N faces per cell (a reduced run).")
@click.option("--seed", default=0, show_default=True, help="Seed of the --limit sample.")
@click.option("--markdown", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the report as markdown here (docs/bias-audit.md).")
def audit_command(data: Path | None, out: Path, model: str, limit: int | None, seed: int, markdown: Path | None) -> None:
    """Error rates per demographic group: detection, gender, age, false matches."""
    from visage.evaluation.audit_report import write_report

    audit = run_audit(data or eval_data_dir(), model, limit, seed, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(audit.to_json(), indent=1) + "\n")
    written = write_report(audit, out, markdown)
    for path in [out / "audit.json", *written]:
        click.echo(str(path))


if __name__ == "__main__":
    audit_command()
