"""Fit each face model's cosine-to-Similarity map on LFW ``pairsDevTrain.txt`` and save it.

Method: logistic regression of "same person" on the cosine of the 1,100 same
and 1,100 different pairs of LFW View 1 training, so that Similarity is the
probability (in %) that a pair of that score is the same person, on a balanced
set. Similarity 50 sits at the equal-odds score; the default threshold of 80
asks for 4:1 odds. The curve is stored as 401 knots over cosine [-1, 1] in
``visage/data/similarity/<model>.json``.

Rerun::

    python -m visage.evaluation.fit_similarity [--models sface dlib]
"""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np

from visage.engine import Engine
from visage.evaluation.lfw import best_threshold, score_pairs
from visage.similarity import SimilarityMap


def fit_logistic(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """(a, b) maximising the likelihood of P(same) = 1 / (1 + exp(-(a * score + b))), by Newton's method."""
    x = np.column_stack([scores, np.ones_like(scores)])
    y = labels.astype(np.float64)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (y - p)
        hessian = -(x.T * (p * (1 - p))) @ x - 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def logistic_map(model: str, a: float, b: float, **metadata: object) -> SimilarityMap:
    raw = np.linspace(-1.0, 1.0, 401)
    similarity = 100.0 / (1.0 + np.exp(-(a * raw + b)))
    return SimilarityMap(
        model=model,
        raw=raw,
        similarity=similarity,
        method="logistic regression of same-person on cosine, LFW pairsDevTrain.txt (balanced)",
        metadata={"a": a, "b": b, **metadata},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["sface", "dlib"])
    args = parser.parse_args(argv)
    engine = Engine()
    for model in args.models:
        scores, labels, _ = score_pairs(engine, "pairsDevTrain.txt", model)
        a, b = fit_logistic(scores, labels)
        threshold = best_threshold(scores, labels)
        accuracy = float(np.mean((scores >= threshold) == labels))
        fitted = logistic_map(
            model,
            a,
            b,
            fitted_on="LFW pairsDevTrain.txt (1,100 same + 1,100 different pairs)",
            fitted=date.today().isoformat(),
            train_accuracy=round(accuracy, 4),
            equal_odds_cosine=round(-b / a, 4),
        )
        path = fitted.save()
        print(f"{model}: a={a:.3f} b={b:.3f}, Similarity 50 at cosine {-b / a:.3f}, "
              f"80 at {fitted.raw_threshold(80):.3f}, 99 at {fitted.raw_threshold(99):.3f}; "
              f"train accuracy {accuracy:.4f} -> {path}")


if __name__ == "__main__":
    main()
