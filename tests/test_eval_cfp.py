"""``visage eval cfp``: the CFP protocol (thresholds chosen on the other folds), and a reduced run.

The reduced run takes the first ``LIMIT`` same and different pairs of each fold of each
protocol, so it checks that every image is scored (a refused or faceless one as a miss)
and that the output holds what docs/accuracy.md reads; the accuracy of a handful of
pairs says little, so only the easy frontal-frontal pairs are held to a bar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from visage.evaluation.accuracy.cfp import CfpPair, fold_accuracy, limited, read_cfp_pairs
from visage.evaluation.cli import eval_group

from .conftest import _require

LIMIT = 6


@pytest.fixture(scope="module")
def cfp(eval_data: Path) -> Path:
    return _require(eval_data / "cfp_half", "CFP folder")


def test_each_fold_is_judged_at_a_threshold_from_the_other_folds() -> None:
    # folds 2 and 3 put the threshold at 0.55, where fold 1's two pairs are both wrong
    scores = np.array([0.5, 0.6, 0.9, 0.2, 0.9, 0.2])
    labels = np.array([True, False, True, False, True, False])
    folds = np.array([1, 1, 2, 2, 3, 3])
    result = fold_accuracy(scores, labels, folds)
    assert result["folds"] == [1, 2, 3]
    assert result["fold_accuracies"] == [0.0, 1.0, 1.0]
    assert result["thresholds"][0] == pytest.approx(0.55)
    assert result["mean"] == pytest.approx(2 / 3)


def test_the_official_pairs_are_read_whole(cfp: Path) -> None:
    for protocol in ("FF", "FP"):
        pairs = read_cfp_pairs(cfp, protocol)
        assert len(pairs) == 3500 and {p.fold for p in pairs} == {1, 2, 3, 4, 5}
        assert sum(p.same for p in pairs) == 1750
        for pair in pairs[:50]:
            assert (cfp / pair.left).exists() and (cfp / pair.right).exists()
        assert all("/frontal/" in p.left for p in pairs)
        assert all(("/profile/" in p.right) == (protocol == "FP") for p in pairs)
    few = limited([CfpPair(f, "a", "b", s) for f in (1, 2) for s in (True, False) for _ in range(5)], 2)
    assert [(p.fold, p.same) for p in few] == [(1, True)] * 2 + [(1, False)] * 2 + [(2, True)] * 2 + [(2, False)] * 2


def test_reduced_run_writes_what_the_docs_read(cfp: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(eval_group, ["cfp", "--model", "sface", "--out", str(tmp_path), "--limit", str(LIMIT)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = json.loads((tmp_path / "cfp-sface.json").read_text())
    assert run["limit"] == LIMIT and run["face_model_version"] == "sface-1"
    for protocol in ("FF", "FP"):
        r = run["protocols"][protocol]
        assert r["pairs"] == 5 * 2 * LIMIT and r["same_pairs"] == r["different_pairs"] == 5 * LIMIT
        assert r["accuracy"]["folds"] == [1, 2, 3, 4, 5] and len(r["accuracy"]["fold_accuracies"]) == 5
        assert 0 <= r["accuracy"]["mean"] <= 1 and 0 <= r["tar_at_far"]["tar"] <= 1
        assert f"CFP {protocol}:" in result.output
    assert run["protocols"]["FF"]["accuracy"]["mean"] >= 0.8
