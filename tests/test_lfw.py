"""LFW View 1 test set (pairsDevTest.txt, 500 same + 500 different pairs), 10-fold accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from visage.engine import Engine
from visage.evaluation.lfw import kfold_accuracy, score_pairs

GOALS = {"sface": 0.990, "dlib": 0.985}


@pytest.mark.parametrize("model", sorted(GOALS))
def test_lfw_dev_test_accuracy(engine: Engine, lfw: Path, model: str) -> None:
    scores, labels, folds = score_pairs(engine, "pairsDevTest.txt", model, root=lfw.parent)
    assert len(scores) == 1000
    result = kfold_accuracy(scores, labels, folds)
    print(
        f"{model}: LFW pairsDevTest 10-fold accuracy {result.accuracy:.4f} +/- {result.std:.4f}, "
        f"{int((scores == -1).sum())} pairs without a face"
    )
    assert result.accuracy >= GOALS[model] - 1e-9  # a mean of fold accuracies: allow for float rounding
