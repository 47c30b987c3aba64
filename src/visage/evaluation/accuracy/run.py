"""``visage eval lfw``: one face model on LFW, written as JSON and PNG.

- Accuracy: the standard protocol on View 2 ``pairs.txt`` (10 folds of 300 same +
  300 different pairs; each fold's threshold chosen on the other nine), mean and
  standard deviation over the folds.
- TAR at FAR 1e-3 and 1e-4, ROC and DET curves: on the pairs of ``pairs.txt``
  (3,000 impostor pairs, so FAR 1e-4 cannot be measured there), and, unless
  switched off, on every pair of LFW images (about 87 million impostor pairs; see
  :mod:`visage.evaluation.allpairs`).
- At each Similarity threshold of the published table, the same-person pairs of
  ``pairs.txt`` rejected (FNMR) and different-person pairs accepted, with the
  model's current Similarity map.
- Not speed: each model's embedding time is measured once, by ``benchmarks/engine_speed.py``.
- ``pair_scores``: each pair's cosine, in the order of the pairs run (-1 where an image
  has no face), to 6 decimals: a reduced run is checked pair by pair against the
  published full run (tests/test_eval_lfw.py), so the published figures are those of
  the vectors the code computes now.

``limit`` makes a reduced run for CI: the first ``limit`` same and the first
``limit`` different pairs of each fold.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from visage.engine import Engine
from visage.engine.similarity import SimilarityMap
from visage.evaluation.accuracy.curves import Curve, error_curve, split_scores, tar_at_far
from visage.evaluation.accuracy.plots import det_plot, roc_plot
from visage.evaluation.allpairs import all_pair_scores, lfw_vectors
from visage.evaluation.calibration.similarity_map import TABLE_SIMILARITIES
from visage.evaluation.lfw import (
    Pair,
    embed_images,
    kfold_accuracy,
    lfw_dir,
    pair_scores,
    read_pairs,
)

FARS = (1e-3, 1e-4)


def limited_pairs(pairs: list[Pair], folds: int, limit: int | None) -> list[Pair]:
    """The first ``limit`` same and ``limit`` different pairs of each fold (all pairs if None)."""
    if limit is None:
        return pairs
    size = len(pairs) // folds
    out: list[Pair] = []
    for fold in range(folds):
        chunk = pairs[fold * size : (fold + 1) * size]
        out += [p for p in chunk if p.same][:limit] + [p for p in chunk if not p.same][:limit]
    return out


def run_lfw(
    engine: Engine,
    model: str,
    out: Path,
    limit: int | None = None,
    all_pairs: bool = True,
    root: Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model``, write ``lfw-<model>.json`` and its plots into ``out``, return the JSON."""
    images = lfw_dir(root) / "lfw-deepfunneled"
    every_pair, folds = read_pairs(lfw_dir(root) / "pairs.txt")
    pairs = limited_pairs(every_pair, folds, limit)
    paths = [images / p.left for p in pairs] + [images / p.right for p in pairs]
    faces = embed_images(engine, paths, model)
    scores = pair_scores(pairs, faces, images)
    labels = np.array([p.same for p in pairs])
    kfold = kfold_accuracy(scores, labels, folds)
    genuine, impostor = split_scores(scores, labels)
    curves = {"LFW pairs.txt": error_curve(genuine, impostor)}
    result: dict[str, Any] = {
        "model": model,
        "face_model_version": engine.face_model(model).version,
        "protocol": "LFW View 2 pairs.txt, 10 folds, each fold's threshold chosen on the other nine"
        + (f"; reduced run: first {limit} same + {limit} different pairs of each fold" if limit else ""),
        "limit": limit,
        "pairs": len(pairs),
        "same_pairs": int(labels.sum()),
        "different_pairs": int((~labels).sum()),
        "images_without_face": sum(faces[p] is None for p in set(paths)),
        "pairs_without_face": int(np.sum(scores == -1.0)),
        "accuracy": {
            "mean": kfold.accuracy,
            "std": kfold.std,
            "folds": kfold.fold_accuracies,
            "thresholds": [round(t, 6) for t in kfold.thresholds],
        },
        "tar_at_far": {"pairs.txt": [tar_at_far(genuine, impostor, far) for far in FARS]},
        "at_similarity": [
            _at_similarity(engine.similarity_map(model), s, genuine, impostor) for s in TABLE_SIMILARITIES
        ],
        "pair_scores": [round(float(s), 6) for s in scores],
    }
    if all_pairs:
        every = all_pair_scores(lfw_vectors(engine, model, root))
        result["tar_at_far"]["all_pairs"] = [tar_at_far(every.genuine, every.impostor, far) for far in FARS]
        curves["LFW all pairs"] = error_curve(every.genuine, every.impostor)
    result["curves"] = {label: curve.to_json() for label, curve in curves.items()}
    result["files"] = _plots(model, curves, out)
    result["generated"] = date.today().isoformat()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lfw-{model}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _at_similarity(
    mapping: SimilarityMap, similarity: float, genuine: np.ndarray, impostor: np.ndarray
) -> dict[str, Any]:
    """Error counts of the pairs at a Similarity threshold of the model's map."""
    threshold = mapping.raw_threshold(similarity)
    misses = int(np.searchsorted(genuine, threshold, side="left"))
    false_matches = len(impostor) - int(np.searchsorted(impostor, threshold, side="left"))
    return {
        "similarity": similarity,
        "raw_threshold": round(threshold, 6),
        "false_non_matches": misses,
        "same_pairs": len(genuine),
        "fnmr": misses / len(genuine),
        "false_matches": false_matches,
        "different_pairs": len(impostor),
    }


def _plots(model: str, curves: dict[str, Curve], out: Path) -> dict[str, str]:
    roc = roc_plot(curves, out / f"lfw-{model}-roc.png", f"ROC, face model {model}, LFW")
    det = det_plot(curves, out / f"lfw-{model}-det.png", f"DET, face model {model}, LFW")
    return {"roc": roc.name, "det": det.name}
