"""``visage eval cfp``: verification across pose, on CFP (Celebrities in Frontal-Profile).

The data (``VISAGE_EVAL_DATA/cfp_half``, see its SOURCE.md) hold the people of CFP's
folds 1-5 and the official pairs of those folds: frontal-frontal (FF) and
frontal-profile (FP), 350 same-person and 350 different-person pairs per fold.

The standard protocol, per protocol: each fold's threshold is the one that is most
accurate on the other folds, and the accuracy on the fold itself is reported, as mean
and standard deviation over the folds. TAR at FAR 1e-3 is over all the protocol's
pairs at once (1,750 different-person pairs: at most one false accept).

Each image is embedded with the face nearest its centre. An image where no face is
found, or that the engine refuses (smaller than 80 px on a side), gets no vector, and
its pairs score -1: they count as misses, never dropped. The results name both kinds
(the refused ones by the sizes ``labels.csv`` gives).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from visage.engine import Engine
from visage.engine.recognition import cosine
from visage.evaluation.accuracy.curves import split_scores, tar_at_far
from visage.evaluation.data import eval_data_dir
from visage.evaluation.lfw import best_threshold, embed_images
from visage.faces import Face

PROTOCOLS = ("FF", "FP")
FAR = 1e-3


@dataclass(frozen=True)
class CfpPair:
    fold: int
    left: str  # relative to the cfp_half folder
    right: str
    same: bool


def cfp_dir(root: Path | None = None) -> Path:
    return (root or eval_data_dir()) / "cfp_half"


def read_cfp_pairs(folder: Path, protocol: str) -> list[CfpPair]:
    with (folder / f"pairs_{protocol}.csv").open(newline="") as handle:
        return [CfpPair(int(r["fold"]), r["path1"], r["path2"], r["same"] == "1") for r in csv.DictReader(handle)]


def fold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    """Each fold's accuracy at the threshold most accurate on the other folds."""
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = best_threshold(scores[train], labels[train])
        thresholds.append(round(threshold, 6))
        accuracies.append(float(np.mean((scores[test] >= threshold) == labels[test])))
    return {
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)),
        "folds": [int(f) for f in np.unique(folds)],
        "fold_accuracies": accuracies,
        "thresholds": thresholds,
    }


def small_images(folder: Path, min_side: int) -> set[str]:
    """The images (paths relative to ``folder``) that ``labels.csv`` says are under ``min_side`` px on a side."""
    with (folder / "labels.csv").open(newline="") as handle:
        return {r["path"] for r in csv.DictReader(handle) if min(int(r["width"]), int(r["height"])) < min_side}


def limited(pairs: list[CfpPair], limit: int | None) -> list[CfpPair]:
    """The first ``limit`` same and ``limit`` different pairs of each fold (all of them if None)."""
    if limit is None:
        return pairs
    out: list[CfpPair] = []
    for fold in sorted({p.fold for p in pairs}):
        for same in (True, False):
            out += [p for p in pairs if p.fold == fold and p.same == same][:limit]
    return out


def run_cfp(
    engine: Engine, model: str, out: Path, root: Path | None = None, limit: int | None = None
) -> dict[str, Any]:
    """FF and FP accuracy and TAR at FAR 1e-3 of ``model``; writes ``out/cfp-<model>.json``.
    ``limit``: a reduced run on the first ``limit`` same and different pairs of each fold."""
    folder = cfp_dir(root)
    pairs = {protocol: limited(read_cfp_pairs(folder, protocol), limit) for protocol in PROTOCOLS}
    paths = sorted({folder / p for protocol in pairs.values() for pair in protocol for p in (pair.left, pair.right)})
    faces = embed_images(engine, paths, model)
    small = small_images(folder, engine.settings.min_image_side)
    result: dict[str, Any] = {
        "model": model,
        "face_model_version": engine.face_model(model).version,
        "data": "CFP folds 1-5 (cfp_half): official frontal-frontal and frontal-profile pairs",
        "images": len(paths),
        "limit": limit,
        "images_without_face": sorted(str(p.relative_to(folder)) for p, f in faces.items() if f is None),
        "images_refused": sorted(str(p.relative_to(folder)) for p in faces if str(p.relative_to(folder)) in small),
        "protocols": {},
        "generated": date.today().isoformat(),
    }
    for protocol, listed in pairs.items():
        scores = np.array([_score(faces[folder / p.left], faces[folder / p.right]) for p in listed])
        labels = np.array([p.same for p in listed])
        folds = np.array([p.fold for p in listed])
        genuine, impostor = split_scores(scores, labels)
        result["protocols"][protocol] = {
            "pairs": len(listed),
            "same_pairs": int(labels.sum()),
            "different_pairs": int((~labels).sum()),
            "pairs_without_face": int(np.sum(scores == -1.0)),
            "accuracy": fold_accuracy(scores, labels, folds),
            "tar_at_far": tar_at_far(genuine, impostor, FAR),
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cfp-{model}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _score(a: Face | None, b: Face | None) -> float:
    return -1.0 if a is None or b is None else float(cosine(a.embedded, b.embedded))
