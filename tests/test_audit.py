"""``visage audit``: a reduced run writes every output with sane numbers and agrees with the published full run.

The reduced run takes at most ``LIMIT`` faces per cell, a seeded subset of the
faces the full run used, so its figures must agree with the published
``docs/bias-audit/audit.json`` up to subsampling:

- a rate over faces (detection, gender error, age outside the group), per cell and
  over all cells of a set: the reduced value may differ from the full one by at most 4
  standard deviations of a sample of n drawn without replacement from the full run's N,
  sqrt(p (1 - p) / n x (N - n) / (N - 1)), plus 1/n for rounding. With about 80 such
  figures, a correct run exceeds that by chance with probability well under 1 %; the run
  is seeded, so it never flickers. At 50 of a UTKFace cell's 200 faces that allows
  +/- 0.27 on a cell's rate of 0.5 and +/- 0.08 on the set's 500 of 2,000; FairFace cells
  hold 30, so there the reduced run is the full one and must agree to within one face;
- a mean (age errors, FNMR averaged over people): the same 4 standard errors, from the
  full run's standard deviation, plus 0.05;
- a rate over pairs (FMR, FNMR): the reduced pairs are a subset of the full run's, so
  its false matches (and non-matches) can be no more than the full run's. From below,
  a bound against the full run would not help: a pair rate over 50 faces varies so much
  (one look-alike face makes many false pairs) that zero lies inside any honest range.
  So the reduced run's pair counts are checked exactly instead, both ways:
  ``test_pair_counts_are_those_of_the_faces_vectors`` recounts them here, pair by pair,
  from the vectors of the same faces.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from visage.engine import Engine
from visage.engine.similarity import SimilarityMap
from visage.evaluation.audit.command import audit_command
from visage.evaluation.audit.run import distance_outside
from visage.evaluation.cache import AnalysisCache
from visage.evaluation.intervals import Rate, bootstrap_mean, clopper_pearson, poisson_range
from visage.evaluation.labelled import LabelledFace, by_cell, fairface, lfw_by_gender, limit_per_cell, utkface
from visage.evaluation.lfw import central_face
from visage.evaluation.prediction import predicted_fmr

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "bias-audit" / "audit.json"
LIMIT = 50
PLOTS = (
    "utkface_attributes",
    "utkface_matching",
    "utkface_scores",
    "fairface_attributes",
    "lfw_attributes",
    "lfw_matching",
    "lfw_scores",
)
PAIR_COUNTS = ("fmr@", "fnmr@", "adult_fmr@")  # rates over pairs: the reduced run's pairs are a subset
RERUN = "rerun `visage audit --out docs/bias-audit --markdown docs/bias-audit.md`"


@pytest.fixture(scope="module")
def reduced(eval_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("audit")
    result = CliRunner().invoke(
        audit_command,
        ["--data", str(eval_data), "--out", str(out), "--limit", str(LIMIT), "--markdown", str(out / "bias-audit.md")],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, json.loads((out / "audit.json").read_text())


def test_every_output_is_written(reduced: tuple[Path, dict[str, Any]]) -> None:
    out, _ = reduced
    report = (out / "report.html").read_text()
    markdown = (out / "bias-audit.md").read_text()
    for name in PLOTS:
        plot = out / "plots" / f"{name}.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
        assert f"plots/{name}.png" in report and f"plots/{name}.png" in markdown
    for text in (report, markdown):
        assert "Summary in plain language" in text and "Caveats" in text and "reduced run" in text


def test_every_cell_is_present_with_sane_numbers(reduced: tuple[Path, dict[str, Any]], eval_data: Path) -> None:
    _, audit = reduced
    expected = {
        "utkface": {f.cell for f in utkface(eval_data)},
        "fairface": {f.cell for f in fairface(eval_data)},
        "lfw": {"Female", "Male"},
    }
    assert len(expected["utkface"]) == 10 and len(expected["fairface"]) == 18
    for key, cells in expected.items():
        dataset = audit["datasets"][key]
        assert set(dataset["cells"]) == cells
        for name, cell in dataset["cells"].items():
            assert 0 < cell["size"] <= LIMIT
            assert set(cell["measures"]) == set(dataset["measures"]), name
            for measure, value in cell["measures"].items():
                low, high = value["ci95"]
                if "events" in value:
                    assert 0 <= value["events"] <= value["total"], (name, measure)
                    assert value["total"] == 0 or 0 <= low <= value["value"] <= high <= 1, (name, measure)
                else:
                    assert 0 <= low <= value["value"] <= high, (name, measure)
        assert {e["measure"] for e in dataset["extremes"]} == set(dataset["measures"])
    for cell in audit["datasets"]["utkface"]["cells"].values():
        assert cell["size"] == LIMIT
        assert (
            cell["measures"]["fmr@80"]["total"]
            == cell["measures"]["detection_rate"]["events"] * (cell["measures"]["detection_rate"]["events"] - 1) // 2
        )
        assert cell["measures"]["fmr@80"]["events"] >= cell["measures"]["fmr@99"]["events"]


def test_worst_is_no_better_than_best(reduced: tuple[Path, dict[str, Any]]) -> None:
    _, audit = reduced
    for dataset in audit["datasets"].values():
        for e in dataset["extremes"]:
            worst, best = e["worst_value"]["value"], e["best_value"]["value"]
            if e["measure"] == "detection_rate":
                assert worst <= best
            else:
                assert worst >= best
            if e["ratio"] is not None:
                assert e["ratio"] >= 1


def test_reduced_run_agrees_with_the_published_full_run(reduced: tuple[Path, dict[str, Any]]) -> None:
    _, audit = reduced
    if not PUBLISHED.exists():
        pytest.fail(f"{PUBLISHED} is missing: {RERUN}")
    full = json.loads(PUBLISHED.read_text())
    assert full["limit_per_cell"] is None, f"the published audit is a reduced run: {RERUN}"
    assert full["model_version"] == audit["model_version"], f"the published audit is of another model: {RERUN}"
    # the audit reads the map only at its thresholds: the same cosine and promise there, the same audit
    assert full["thresholds"].keys() == audit["thresholds"].keys(), f"the published audit has other thresholds: {RERUN}"
    for threshold, published in full["thresholds"].items():
        reduced = audit["thresholds"][threshold]
        assert reduced["raw_cosine"] == pytest.approx(published["raw_cosine"], abs=1e-6) and reduced[
            "predicted_fmr"
        ] == pytest.approx(published["predicted_fmr"]), f"the published audit used another map at {threshold}: {RERUN}"
    compared = 0
    for key, dataset in audit["datasets"].items():
        pooled: dict[str, list[int]] = {}
        for name, cell in dataset["cells"].items():
            for measure, small in cell["measures"].items():
                large = full["datasets"][key]["cells"][name]["measures"][measure]
                where = f"{key} {name} {measure}: reduced {small} vs full {large}"
                if measure.startswith(PAIR_COUNTS):
                    assert small["events"] <= large["events"] and small["total"] <= large["total"], where
                elif "events" in small:
                    assert_rates_agree(small["events"], small["total"], large["events"], large["total"], where)
                    sums = pooled.setdefault(measure, [0, 0, 0, 0])
                    for i, v in enumerate((small["events"], small["total"], large["events"], large["total"])):
                        sums[i] += v
                else:
                    n, size = small["n"], large["n"]
                    spread = large["sd"] / math.sqrt(n) * math.sqrt((size - n) / max(size - 1, 1))
                    assert abs(small["value"] - large["value"]) <= 4 * spread + 0.05, where
                compared += 1
        for measure, (k, n, big_k, big_n) in pooled.items():
            assert_rates_agree(k, n, big_k, big_n, f"{key} all cells {measure}: {k}/{n} vs {big_k}/{big_n}")
    assert compared > 150


def test_pair_counts_are_those_of_the_faces_vectors(
    reduced: tuple[Path, dict[str, Any]], eval_data: Path, engine: Engine
) -> None:
    """UTKFace's FMR (all faces, and adults) and LFW's FNMR and FMR, recounted from the vectors
    of the faces the reduced run took: equal, both ways."""
    _, audit = reduced
    mapping = engine.similarity_map(audit["model"])
    checked = 0
    for key, faces, attributes in (
        ("utkface", utkface(eval_data), ("ALL",)),
        ("lfw", lfw_by_gender(eval_data), ()),
    ):
        chosen = limit_per_cell(faces, LIMIT, audit["seed"])
        found = AnalysisCache(engine, audit["model"], attributes).many([f.path for f in chosen])
        for cell, members in by_cell(chosen).items():
            measures = audit["datasets"][key]["cells"][cell]["measures"]
            counted = recount(members, [central_face(found[f.path]) for f in members], mapping.raw_threshold)
            for measure, (events, total) in counted.items():
                if measure in measures:
                    got = (measures[measure]["events"], measures[measure]["total"])
                    assert got == (events, total), f"{key} {cell} {measure}: audit {got}, recounted {(events, total)}"
                    checked += 1
    assert checked == 10 * 6 + 2 * 6
    totals = {
        m: sum(c["measures"][m]["events"] for c in audit["datasets"]["utkface"]["cells"].values())
        for m in ("fmr@80", "fmr@99")
    }
    assert totals["fmr@80"] > 100 and totals["fmr@99"] > 10  # counts that a broken count cannot pass as zero


def recount(members: list[LabelledFace], found: list[Any], raw_threshold: Any) -> dict[str, tuple[int, int]]:
    """Pair counts of one cell: false matches over different-person pairs (all faces, and both
    adults) and false non-matches over same-person pairs (a pair with an undetected face is one)."""
    counts: dict[str, tuple[int, int]] = {}
    for prefix, keep in (("fmr@", lambda f: True), ("adult_fmr@", lambda f: (f.age or 0) >= 18)):
        kept = [(f, x) for f, x in zip(members, found) if x is not None and keep(f)]
        if not kept:
            continue
        people = np.array([f.identity or f.path.name for f, _ in kept])
        vectors = np.array([x.embedding.vector for _, x in kept], dtype=np.float64)
        rows, columns = np.triu_indices(len(kept), k=1)
        scores = np.einsum("ij,ij->i", vectors[rows], vectors[columns])
        same = people[rows] == people[columns]
        for t in (80, 90, 99):
            raw = raw_threshold(float(t))
            counts[f"{prefix}{t}"] = (int(np.sum(scores[~same] >= raw)), int(np.sum(~same)))
            if prefix == "fmr@":
                identities = [f.identity or f.path.name for f in members]
                missing = sum(
                    n * (n - 1) // 2 - d * (d - 1) // 2
                    for person in set(identities)
                    for n, d in [
                        (identities.count(person), sum(1 for f, _ in kept if (f.identity or f.path.name) == person))
                    ]
                )
                counts[f"fnmr@{t}"] = (int(np.sum(scores[same] < raw)) + missing, int(np.sum(same)) + missing)
    return counts


def assert_rates_agree(events: int, total: int, full_events: int, full_total: int, where: str) -> None:
    """A rate over n of the full run's N faces is within 4 standard deviations (+ 1/n) of the full rate."""
    if total == 0:
        return
    p = full_events / full_total
    spread = math.sqrt(p * (1 - p) / total * (full_total - total) / max(full_total - 1, 1))
    assert abs(events / total - p) <= 4 * spread + 1 / total, where


# The pieces, without data ------------------------------------------------------------------


def test_exact_binomial_interval() -> None:
    assert clopper_pearson(0, 200) == pytest.approx((0.0, 1 - 0.025 ** (1 / 200)))
    low, high = clopper_pearson(10, 200)
    assert low < 0.05 < high and low == pytest.approx(0.0243, abs=1e-3) and high == pytest.approx(0.0900, abs=1e-3)
    assert Rate(0, 200).describe() == "0 of 200 (95 % upper bound 1.8 %)"


def test_bootstrap_interval_holds_the_mean() -> None:
    values = np.random.default_rng(1).exponential(5.0, 400)
    mean = bootstrap_mean(values)
    assert mean.low < values.mean() < mean.high
    assert mean.high - mean.low == pytest.approx(2 * 1.96 * values.std() / 20, rel=0.2)


def test_poisson_range() -> None:
    assert poisson_range(0.0) == (0, 0)
    low, high = poisson_range(20.0)
    assert low == 12 and high == 29


def test_age_error_against_a_group() -> None:
    assert distance_outside(25.0, "20-29") == 0
    assert distance_outside(29.5, "20-29") == 0  # the group holds ages up to (not including) 30
    assert distance_outside(32.0, "20-29") == 2
    assert distance_outside(14.0, "20-29") == 6
    assert distance_outside(95.0, "70+") == 0


def test_promise_is_read_from_the_map() -> None:
    table = [{"similarity": s, "predicted_fmr": (100 - s) * 3e-6} for s in (50.0, 80.0, 99.0)]
    mapping = SimilarityMap("m", np.array([-1.0, 1.0]), np.array([0.0, 100.0]), metadata={"table": table})
    assert predicted_fmr(mapping, 80.0) == pytest.approx(6e-5)
    assert predicted_fmr(mapping, 90.0) == pytest.approx(3e-5)  # linear between rows
    assert predicted_fmr(mapping, 99.9) is None  # beyond the table: no promise
    assert predicted_fmr(SimilarityMap("m", np.array([-1.0, 1.0]), np.array([0.0, 100.0])), 80.0) is None


def test_limit_keeps_whole_people(eval_data: Path) -> None:
    faces = lfw_by_gender(eval_data)
    kept = limit_per_cell(faces, 50, seed=3)
    for gender in ("Female", "Male"):
        chosen = [f for f in kept if f.cell == gender]
        assert 0 < len(chosen) <= 50
        people = {f.identity for f in chosen}
        assert all(
            sum(g.identity == p for g in chosen) == sum(g.identity == p and g.cell == gender for g in faces)
            for p in people
        )
    assert limit_per_cell(faces, 50, seed=3) == kept
