"""``visage eval lfw``: a reduced run writes every file, and agrees with the published full run.

The reduced run scores the first ``LIMIT`` same and ``LIMIT`` different pairs of each
fold (``2 * LIMIT * 10`` pairs, not 6,000). Two checks tie it to the published run:

- pair by pair: each of its 400 cosines equals the published run's cosine of the same
  pair to within ``SCORE_TOLERANCE`` (1e-4). Two runs of the same code agree to about
  1e-6 (float32 and thread scheduling); a change to detection, alignment, the colour
  order or the network moves a pair's cosine by 1e-2 or more. The published accuracy is
  then recomputed from its stored pair scores, so it is the accuracy of today's vectors.
- the accuracy: the reduced run picks each fold's threshold on nine folds of its size,
  so its accuracy differs from the published one by sampling (three binomial standard
  errors at the reduced count, around the published accuracy) plus the cost of a
  threshold chosen on few pairs (allowed: one more error per fold, 1 / (2 * LIMIT)).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from visage.evaluation.accuracy.curves import error_curve, tar_at_far
from visage.evaluation.accuracy.run import limited_pairs
from visage.evaluation.cli import eval_group
from visage.evaluation.lfw import Pair, kfold_accuracy, read_pairs

LIMIT = 20
SCORE_TOLERANCE = 1e-4
RERUN = "rerun `visage eval lfw --model sface` and `visage eval docs`"
PUBLISHED = Path(__file__).parent.parent / "docs" / "accuracy"


def test_limited_pairs_keep_both_kinds_in_every_fold() -> None:
    pairs = [Pair(f"{f}-{i}", "x", same=i < 300) for f in range(10) for i in range(600)]
    limited = limited_pairs(pairs, 10, 3)
    assert len(limited) == 60
    for fold in range(10):
        chunk = limited[fold * 6 : (fold + 1) * 6]
        assert [p.same for p in chunk] == [True] * 3 + [False] * 3
        assert [p.left for p in chunk] == [f"{fold}-{i}" for i in (0, 1, 2, 300, 301, 302)]


def test_tar_at_far_counts_the_impostors_it_lets_through() -> None:
    impostor = np.sort(np.arange(1000, dtype=np.float64) / 1000)  # 0.000 ... 0.999
    genuine = np.sort(np.array([0.5, 0.9955, 0.9975, 0.9985, 0.9995, 1.5]))
    row = tar_at_far(genuine, impostor, 3e-3)  # at most 3 impostors: 0.997, 0.998, 0.999
    assert row["false_accepts"] == 3 and row["resolvable"]
    assert row["tar"] == pytest.approx(4 / 6)  # 0.9975, 0.9985, 0.9995, 1.5
    strict = tar_at_far(genuine, impostor, 1e-4)
    assert strict["false_accepts"] == 0 and not strict["resolvable"] and strict["tar"] == pytest.approx(2 / 6)
    curve = error_curve(genuine, impostor)
    assert (
        np.all(np.diff(curve.threshold) >= 0) and np.all(np.diff(curve.fmr) <= 0) and np.all(np.diff(curve.fnmr) >= 0)
    )


def test_reduced_run_writes_every_file_and_agrees_with_the_published_accuracy(lfw: Path, tmp_path: Path) -> None:
    published_file = PUBLISHED / "lfw-sface.json"
    assert published_file.exists(), "the published results (docs/accuracy/lfw-sface.json) are missing"
    published = json.loads(published_file.read_text())
    result = CliRunner().invoke(eval_group, ["lfw", "--model", "sface", "--out", str(tmp_path), "--limit", str(LIMIT)])
    assert result.exit_code == 0, result.output
    for name in ("lfw-sface.json", "lfw-sface-roc.png", "lfw-sface-det.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "lfw-sface-roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reduced = json.loads((tmp_path / "lfw-sface.json").read_text())
    n = 2 * LIMIT * 10
    assert reduced["pairs"] == n and reduced["limit"] == LIMIT and "all_pairs" not in reduced["tar_at_far"]
    assert "cost" not in reduced  # speed is measured by benchmarks/engine_speed.py, once
    p = published["accuracy"]["mean"]
    tolerance = 3 * math.sqrt(p * (1 - p) / n) + 1 / (2 * LIMIT)
    assert abs(reduced["accuracy"]["mean"] - p) <= tolerance, (reduced["accuracy"], p, tolerance)
    assert published["limit"] is None and published["pairs"] == 6000

    # Pair by pair against the published run, whose accuracy is that of its stored scores.
    every, folds = read_pairs(lfw / "pairs.txt")
    stored = np.array(published.get("pair_scores", []))
    assert len(stored) == len(every) == 6000, f"the published run has no pair scores: {RERUN}"
    labels = np.array([pair.same for pair in every])
    assert kfold_accuracy(stored, labels, folds).accuracy == pytest.approx(p, abs=1e-12), RERUN
    position = {pair: i for i, pair in enumerate(every)}
    chosen = limited_pairs(every, folds, LIMIT)
    expected = stored[[position[pair] for pair in chosen]]
    scores = np.array(reduced["pair_scores"])
    worst = int(np.argmax(np.abs(scores - expected)))
    assert np.abs(scores - expected).max() <= SCORE_TOLERANCE, (
        f"{chosen[worst]}: cosine {scores[worst]} now, {expected[worst]} in the published run: {RERUN}"
    )
