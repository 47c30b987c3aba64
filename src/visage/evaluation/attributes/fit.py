"""The landmark-ratio attributes' thresholds, fitted on half the hand labels and checked on the rest.

``tests/data/attribute_labels.json`` holds hand labels of FairFace faces for Smile,
MouthOpen and EyesOpen. Each set is split in two by label and file name (within each
label, sorted names alternately), so the split does not depend on the code measured:

- fit: the threshold on the attribute's ratio that agrees with the most fit labels
  (among equally good ones, the middle of the widest gap between neighbouring ratios),
  rounded to 2 decimals: the value :mod:`visage.engine.attributes` ships;
- check: agreement with the other half's labels at the shipped threshold, with its
  exact 95 % interval. No check label took part in choosing the threshold.

:func:`attribute_report` measures; ``visage eval attributes`` writes
``docs/attributes/attributes.json`` and the block of docs/engine.md that quotes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visage.engine import Engine
from visage.engine.attributes import (
    EYES_OPEN,
    MOUTH_OPEN,
    SMILE,
    GeometryRule,
    eye_openness,
    mouth_openness,
    smile_score,
)
from visage.engine.landmarks import ShapePredictor, shape_points
from visage.evaluation.intervals import Rate

#: The labels, beside the tests that check the attributes (labels only: no image is copied).
LABELS = Path(__file__).resolve().parents[4] / "tests" / "data" / "attribute_labels.json"


@dataclass(frozen=True)
class Attribute:
    label: str  # the key in the labels file
    name: str  # Rekognition's
    rule: GeometryRule
    ratio: Callable[[np.ndarray], float]


ATTRIBUTES = (
    Attribute("eyes_open", "EyesOpen", EYES_OPEN, eye_openness),
    Attribute("mouth_open", "MouthOpen", MOUTH_OPEN, mouth_openness),
    Attribute("smile", "Smile", SMILE, smile_score),
)


def split(labels: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The fit half and the check half: within each label, sorted file names alternately
    (so both halves hold yes and no faces in the same proportion)."""
    fit: list[str] = []
    check: list[str] = []
    for value in (True, False):
        names = sorted(n for n, label in labels.items() if label == value)
        fit += names[0::2]
        check += names[1::2]
    return sorted(fit), sorted(check)


def fit_threshold(ratios: np.ndarray, truth: np.ndarray) -> float:
    """The threshold (yes when ratio > threshold) that agrees with the most labels; among equally
    good ones, the middle of the widest gap between neighbouring ratios (the largest margin)."""
    order = np.sort(ratios)
    candidates = (order[1:] + order[:-1]) / 2
    gaps = order[1:] - order[:-1]
    correct = np.array([int(np.sum((ratios > t) == truth)) for t in candidates])
    best = np.flatnonzero(correct == correct.max())
    return float(candidates[best[np.argmax(gaps[best])]])


def label_ratios(engine: Engine, data: Path, names: list[str], attribute: Attribute) -> np.ndarray:
    """The attribute's ratio on the largest face of each labelled image."""
    predictor = ShapePredictor(68)
    out = []
    for name in names:
        image = engine.decode((data / name).read_bytes())
        detection = engine.detector.detect(image)[0]
        out.append(attribute.ratio(shape_points(predictor.shape(image.rgb, detection))))
    return np.array(out)


def attribute_report(engine: Engine, data: Path, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per attribute: the threshold fitted on the fit half, and agreement on each half at the shipped one."""
    labels = labels or json.loads(LABELS.read_text())
    report: dict[str, Any] = {
        "labels": str(LABELS.name),
        "split": "within each label, sorted file names alternately: fit, check",
    }
    for attribute in ATTRIBUTES:
        wanted: dict[str, bool] = labels[attribute.label]
        fit, check = split(wanted)
        fit_ratios, check_ratios = (label_ratios(engine, data, names, attribute) for names in (fit, check))
        fit_truth, check_truth = (np.array([wanted[n] for n in names]) for names in (fit, check))
        fitted = fit_threshold(fit_ratios, fit_truth)
        shipped = attribute.rule.threshold
        fit_rate = Rate(int(np.sum((fit_ratios > shipped) == fit_truth)), len(fit))
        check_rate = Rate(int(np.sum((check_ratios > shipped) == check_truth)), len(check))
        report[attribute.label] = {
            "name": attribute.name,
            "fitted_threshold": round(fitted, 4),
            "shipped_threshold": shipped,
            **halves(fit_rate, check_rate),
        }
    return report


def halves(fit: Rate, check: Rate) -> dict[str, dict[str, Any]]:
    """How often the shipped rule was right on each half of the labels, as the reports write it."""
    return {
        "fit": {"correct": fit.events, "faces": fit.total},
        "check": {
            "correct": check.events,
            "faces": check.total,
            "accuracy": round(check.value, 4),
            "ci95": [round(x, 4) for x in check.interval],
        },
    }


def attribute_markdown(report: dict[str, Any]) -> str:
    """The table docs/engine.md quotes."""
    lines = [
        "| attribute | threshold (fitted on the fit half) | fit half | check half (95 % CI) |",
        "|---|---|---|---|",
    ]
    for attribute in ATTRIBUTES:
        r = report[attribute.label]
        check = r["check"]
        low, high = check["ci95"]
        lines.append(
            f"| {r['name']} | {r['shipped_threshold']:g} ({r['fitted_threshold']:.3f}) | "
            f"{r['fit']['correct']}/{r['fit']['faces']} | {check['correct']}/{check['faces']} "
            f"({100 * low:.0f}–{100 * high:.0f} %) |"
        )
    return "\n".join(lines)
