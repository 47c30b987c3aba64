"""LFW verification: pairs files, one embedding per image, k-fold accuracy.

Pairs files are the official ones (``pairs.txt``: 10 folds of 300 + 300;
``pairsDevTrain.txt``, ``pairsDevTest.txt``). Each image is embedded with the
face nearest its centre, the person LFW labels; an image with no face gets no
vector and its pairs score -1 (counted, never dropped).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visage.engine import Engine
from visage.engine.recognition import FusionWeight, cosine
from visage.errors import VisageError
from visage.evaluation.cache import AnalysisCache
from visage.evaluation.data import eval_data_dir
from visage.faces import Face


@dataclass(frozen=True)
class Pair:
    left: str  # image path relative to lfw-deepfunneled
    right: str
    same: bool


def lfw_dir(root: Path | None = None) -> Path:
    return (root or eval_data_dir()) / "lfw"


def image_path(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


def read_pairs(path: Path) -> tuple[list[Pair], int]:
    """Pairs in file order, and the number of folds the header declares (1 for View 1 files)."""
    lines = path.read_text().split("\n")
    header = lines[0].split()
    folds = int(header[0]) if len(header) == 2 else 1
    pairs = []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 3:
            pairs.append(Pair(image_path(parts[0], int(parts[1])), image_path(parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(Pair(image_path(parts[0], int(parts[1])), image_path(parts[2], int(parts[3])), False))
    return pairs, folds


def central_face(faces: list[Face]) -> Face | None:
    """The face whose box centre is nearest the image centre (LFW's labelled person)."""

    def distance(face: Face) -> float:
        box = face.detail.bounding_box
        return (box.left + box.width / 2 - 0.5) ** 2 + (box.top + box.height / 2 - 0.5) ** 2

    return min(faces, key=distance, default=None)


def embed_images(engine: Engine, paths: Iterable[Path], model: str, threads: int = 2) -> dict[Path, Face | None]:
    """The central face of each image, with its embedding (None where no face was found, or where
    the engine refuses the image: smaller than 80 px on a side, say).

    Results are kept in the evaluation cache (:mod:`visage.evaluation.cache`).
    """
    return {path: central_face(faces) for path, faces in embedded_faces(engine, paths, model, threads).items()}


def embedded_faces(engine: Engine, paths: Iterable[Path], model: str, threads: int = 2) -> dict[Path, list[Face]]:
    """Every face of each image, with its ``model`` vector where the engine made one (from the
    evaluation cache); an image the engine refuses has none."""
    if model == "fusion":
        return fused_images(engine, paths, threads)
    return analysed(AnalysisCache(engine, model), paths, threads)


def analysed(cache: AnalysisCache, paths: Iterable[Path], threads: int = 2) -> dict[Path, list[Face]]:
    """The cached faces of each image; an image the engine refuses has none."""

    def faces(path: Path) -> list[Face]:
        try:
            return cache.faces(path)
        except VisageError:
            return []

    unique = sorted(set(paths))
    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(unique, pool.map(faces, unique)))


def fused_images(engine: Engine, paths: Iterable[Path], threads: int = 2) -> dict[Path, list[Face]]:
    """Fusion vectors of every face, composed from the cached sface and dlib results of each image.

    Both come from the same detections in the same order, so this is what
    ``FusionModel.embed`` computes, without running detection a third time.
    """
    weight = FusionWeight.load()
    paths = list(paths)
    sface = analysed(AnalysisCache(engine, "sface"), paths, threads)
    dlib = analysed(AnalysisCache(engine, "dlib"), paths, threads)
    out: dict[Path, list[Face]] = {}
    for path, faces in sface.items():
        if [f.detail.bounding_box for f in faces] != [f.detail.bounding_box for f in dlib[path]]:
            raise RuntimeError(f"sface and dlib cache entries of {path} hold different detections")
        out[path] = [
            Face(detail=a.detail, embedding=weight.combine(a.embedding, b.embedding))
            for a, b in zip(faces, dlib[path])
            if a.embedding is not None and b.embedding is not None
        ]
    return out


def pair_scores(pairs: list[Pair], faces: dict[Path, Face | None], root: Path) -> np.ndarray:
    scores = np.full(len(pairs), -1.0)
    for i, pair in enumerate(pairs):
        a, b = faces[root / pair.left], faces[root / pair.right]
        if a is not None and b is not None:
            scores[i] = cosine(a.embedded, b.embedded)
    return scores


def score_pairs(
    engine: Engine, pairs_file: str, model: str, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw scores and labels of every pair in an LFW pairs file, and its fold count."""
    images = lfw_dir(root) / "lfw-deepfunneled"
    pairs, folds = read_pairs(lfw_dir(root) / pairs_file)
    faces = embed_images(engine, [images / p.left for p in pairs] + [images / p.right for p in pairs], model)
    labels = np.array([p.same for p in pairs])
    return pair_scores(pairs, faces, images), labels, folds


def fold_indices(labels: np.ndarray, folds: int) -> list[np.ndarray]:
    """Fold membership: the file's own folds (``pairs.txt`` lists them in order), or, for a
    single-block View 1 file, ``folds`` interleaved slices of its same and different pairs."""
    n = len(labels)
    if folds > 1:
        return [np.arange(i * n // folds, (i + 1) * n // folds) for i in range(folds)]
    same, different = np.flatnonzero(labels), np.flatnonzero(~labels)
    return [np.concatenate([same[i::10], different[i::10]]) for i in range(10)]


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises accuracy (midpoint between neighbouring scores)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[1:] + order[:-1]) / 2, [order[-1] + 1e-6]])
    same, different = np.sort(scores[labels]), np.sort(scores[~labels])
    accepted_same = len(same) - np.searchsorted(same, candidates, side="left")  # same pairs scoring >= t
    rejected_different = np.searchsorted(different, candidates, side="left")  # different pairs scoring < t
    accuracies = (accepted_same + rejected_different) / len(scores)
    return float(candidates[int(np.argmax(accuracies))])


@dataclass(frozen=True)
class KFoldResult:
    accuracy: float  # mean over folds
    std: float
    fold_accuracies: list[float]
    thresholds: list[float]


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: int) -> KFoldResult:
    """The standard LFW protocol: per fold, the threshold is chosen on the other folds."""
    accuracies, thresholds = [], []
    indices = fold_indices(labels, folds)
    for i, test in enumerate(indices):
        train = np.concatenate([idx for j, idx in enumerate(indices) if j != i])
        threshold = best_threshold(scores[train], labels[train])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((scores[test] >= threshold) == labels[test])))
    return KFoldResult(float(np.mean(accuracies)), float(np.std(accuracies)), accuracies, thresholds)
