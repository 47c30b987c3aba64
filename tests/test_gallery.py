"""``visage eval gallery``, reduced: LFW people searched through a real server against a gallery without them.

With 100 probes and 1,000 gallery images there are about 100,000 comparisons, so
the calibration expects about 20 false matches at Similarity 80, 5 at 95 and 1 at
99. The test asks the observed counts to lie in the central 99.9 % range of the
Poisson (false matches) and binomial (probes with a false match) laws the
calibration predicts: wider than the 95 % the report uses, because false matches
cluster (one look-alike probe adds several) and because a seeded run that fails
should mean the calibration is wrong, not that the dice were unlucky.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from visage.evaluation.gallery.command import gallery_command
from visage.evaluation.gallery.search import THRESHOLDS, external_id, plan_gallery
from visage.evaluation.intervals import binomial_range, poisson_range

PROBES = 100
GALLERY = 1000
LEVEL = 0.999


def test_plan_keeps_probe_people_out_of_the_gallery(eval_data: Path) -> None:
    plan = plan_gallery(eval_data, 500, seed=0)
    people = {person for person, _ in plan.probes}
    assert len(people) == 500
    lfw = eval_data / "lfw" / "lfw-deepfunneled"
    in_gallery = {p.parent.name for p in plan.gallery if p.is_relative_to(lfw)}
    assert not people & in_gallery
    probe_images = sum(len(list((lfw / person).glob("*.jpg"))) for person in people)
    others = len([p for p in plan.gallery if not p.is_relative_to(lfw)])
    assert others == 2000 + 540  # the UTKFace balanced crops and the FairFace sample
    assert len(plan.gallery) - others == 13233 - probe_images
    assert plan_gallery(eval_data, 500, seed=0) == plan  # seeded
    for path in plan.gallery[:50] + [p for _, p in plan.probes[:50]]:
        assert re.fullmatch(r"[a-zA-Z0-9_.\-:]{1,255}", external_id(path, eval_data))


def test_reduced_gallery_through_the_server(eval_data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        gallery_command,
        [
            "--data",
            str(eval_data),
            "--out",
            str(tmp_path),
            "--probes",
            str(PROBES),
            "--limit",
            str(GALLERY),
            "--markdown",
            str(tmp_path / "gallery.md"),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = json.loads((tmp_path / "gallery.json").read_text())
    assert "Observed against the calibration" in (tmp_path / "gallery.md").read_text()

    assert run["gallery_images"] == GALLERY and not run["index_errors"]
    assert run["gallery_faces"] >= 0.95 * GALLERY  # crops of one face each: nearly all are indexed
    assert run["probes_searched"] >= 0.95 * PROBES and not run["truncated_searches"]
    probe_people = {m["probe"].split(":")[2] for m in run["false_matches"]}
    assert not any(
        m["gallery"].split(":")[2] in probe_people for m in run["false_matches"] if m["gallery"].startswith("lfw:")
    )

    rows = {row["threshold"]: row for row in run["thresholds"]}
    assert set(rows) == set(THRESHOLDS)
    counts = [rows[t]["false_matches"] for t in sorted(rows)]
    assert counts == sorted(counts, reverse=True)  # a higher threshold never finds more
    for t, row in rows.items():
        assert row["predicted_fmr"] is not None, "the similarity map makes no false-match promise to test"
        assert row["comparisons"] == run["probes_searched"] * run["gallery_faces"]
        assert row["expected_false_matches"] == pytest.approx(row["predicted_fmr"] * row["comparisons"])
        low, high = poisson_range(row["expected_false_matches"], LEVEL)
        assert low <= row["false_matches"] <= high, f"Similarity {t:g}: {row}"
        per_probe = 1 - (1 - row["predicted_fmr"]) ** run["gallery_faces"]
        low, high = binomial_range(run["probes_searched"], per_probe, LEVEL)
        assert low <= row["probes_with_false_match"] <= high, f"Similarity {t:g}: {row}"
