"""Choose the fusion model's sface weight ``w`` on LFW pairsDevTrain, and keep it as data.

The fusion cosine of a pair is ``w * cos_sface + (1 - w) * cos_dlib``. For each
``w`` on a grid of 0.01 the 2,200 pairs of ``pairsDevTrain.txt`` are split into
the 10 folds of :func:`visage.evaluation.lfw.fold_indices` and the 10-fold
accuracy computed (each fold's threshold chosen on the other nine); the chosen
``w`` is the middle of the weights that reach the best accuracy. ``pairs.txt``,
which reports accuracy, is never looked at. The result goes to
``visage/data/fusion.json``; a different weight gets a new version, since
fusion vectors made with the old weight would not match new ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from visage.engine import Engine
from visage.engine.recognition import FUSION_FILE
from visage.evaluation.lfw import kfold_accuracy, score_pairs

GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
PAIRS_FILE = "pairsDevTrain.txt"


@dataclass(frozen=True)
class WeightChoice:
    weight: float
    accuracy: float  # 10-fold accuracy on pairsDevTrain at that weight
    grid: list[tuple[float, float]]  # (w, 10-fold accuracy)


def choose_weight(sface: np.ndarray, dlib: np.ndarray, labels: np.ndarray, folds: int) -> WeightChoice:
    """The middle of the best-scoring weights of ``GRID`` (scores of the same pairs, by model)."""
    grid = [(float(w), kfold_accuracy(w * sface + (1 - w) * dlib, labels, folds).accuracy) for w in GRID]
    best = max(accuracy for _, accuracy in grid)
    tied = [w for w, accuracy in grid if accuracy >= best - 1e-12]
    weight = tied[len(tied) // 2]
    return WeightChoice(weight=weight, accuracy=best, grid=grid)


def fit_fusion_weight(engine: Engine, root: Path | None = None, path: Path = FUSION_FILE) -> dict[str, Any]:
    """Score pairsDevTrain with both models, choose ``w``, write ``path`` (the shipped file by
    default); return what was written."""
    sface, labels, folds = score_pairs(engine, PAIRS_FILE, "sface", root)
    dlib, dlib_labels, _ = score_pairs(engine, PAIRS_FILE, "dlib", root)
    if not np.array_equal(labels, dlib_labels):
        raise RuntimeError("the two models scored different pairs")
    missing = (sface == -1.0) | (dlib == -1.0)  # a pair without a face scores -1 in both
    choice = choose_weight(sface, dlib, labels, folds)
    version = _version(choice.weight, FUSION_FILE)  # relative to the weight that ships
    data = {
        "version": version,
        "sface_weight": choice.weight,
        "chosen_on": f"LFW {PAIRS_FILE} ({int(labels.sum())} same + {int((~labels).sum())} different pairs, "
        f"{int(missing.sum())} without a face), 10-fold accuracy, middle of the best weights on a 0.01 grid",
        "chosen": date.today().isoformat(),
        "dev_train_accuracy": {
            "fusion": choice.accuracy,
            "sface": kfold_accuracy(sface, labels, folds).accuracy,
            "dlib": kfold_accuracy(dlib, labels, folds).accuracy,
        },
        "grid": [[w, round(a, 5)] for w, a in choice.grid],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _version(weight: float, path: Path) -> str:
    """The current version if the weight is unchanged, else the next one."""
    if not path.exists():
        return "fusion-1"
    current = json.loads(path.read_text())
    if abs(float(current["sface_weight"]) - weight) < 1e-9:
        return str(current["version"])
    return f"fusion-{int(str(current['version']).rsplit('-', 1)[1]) + 1}"
