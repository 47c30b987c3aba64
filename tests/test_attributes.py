"""EyesOpen, MouthOpen and Smile against hand labels of real faces; age and gender on UTKFace.

The landmark-ratio thresholds are fitted on one half of the hand labels and checked on the
other (:mod:`visage.evaluation.attributes.fit`); `visage eval attributes` writes the figures
that docs/engine.md quotes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from visage.engine import Engine
from visage.evaluation.attributes.fit import (
    ATTRIBUTES,
    LABELS,
    Attribute,
    attribute_markdown,
    attribute_report,
    split,
)

PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "attributes" / "attributes.json"
RERUN = "rerun `visage eval attributes`"


@pytest.fixture(scope="module")
def report(engine: Engine, eval_data: Path) -> dict[str, Any]:
    return attribute_report(engine, eval_data)


@pytest.mark.parametrize("attribute", ATTRIBUTES, ids=[a.label for a in ATTRIBUTES])
def test_each_threshold_is_the_one_fitted_on_the_fit_half(report: dict[str, Any], attribute: Attribute) -> None:
    assert attribute.rule.threshold == round(report[attribute.label]["fitted_threshold"], 2)


@pytest.mark.parametrize("attribute", ATTRIBUTES, ids=[a.label for a in ATTRIBUTES])
def test_the_check_half_agrees_with_the_threshold_about_as_well_as_the_fit_half(
    report: dict[str, Any], attribute: Attribute
) -> None:
    """The check half took no part in the fit. Its agreement must beat always answering its
    commoner label, and must not be significantly worse than the fit half's (one-sided
    Fisher exact test at 1 %: the halves hold 20 to 24 faces, so only a real loss shows)."""
    fit, check = report[attribute.label]["fit"], report[attribute.label]["check"]
    labels = json.loads(LABELS.read_text())[attribute.label]
    _, check_names = split(labels)
    commoner = max(sum(labels[n] for n in check_names), sum(not labels[n] for n in check_names))
    assert check["correct"] > commoner, (check, commoner)
    table = [[fit["correct"], fit["faces"] - fit["correct"]], [check["correct"], check["faces"] - check["correct"]]]
    assert stats.fisher_exact(table, alternative="greater").pvalue >= 0.01, table


def test_the_published_figures_are_todays(report: dict[str, Any]) -> None:
    """docs/engine.md quotes docs/attributes/attributes.json, written by `visage eval attributes`."""
    assert json.loads(PUBLISHED.read_text()) == json.loads(json.dumps(report)), RERUN
    assert attribute_markdown(report) in (PUBLISHED.parent.parent / "engine.md").read_text(), RERUN


def test_age_and_gender_on_utkface_adults(engine: Engine, eval_data: Path) -> None:
    """Adults (20-60) of the balanced UTKFace subset, 10 per gender x race cell."""
    folder = eval_data / "utkface_crop_part1"
    rows = [
        r
        for r in csv.DictReader((folder / "labels.csv").open())
        if r["balanced_random_200_group"] and r["label_parse_ok"] == "1"
    ]
    picked: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if 20 <= int(row["age"]) <= 60 and len(picked.setdefault(row["balanced_random_200_group"], [])) < 10:
            picked[row["balanced_random_200_group"]].append(row)
    gender_right, errors, covered, n = 0, [], 0, 0
    for group in picked.values():
        for row in group:
            faces = engine.detect_faces((folder / row["filename"]).read_bytes(), attributes=["AGE_RANGE", "GENDER"])
            if not faces:
                continue
            face, age = faces[0], int(row["age"])
            n += 1
            gender_right += face.gender.value == ("Male" if row["gender"] == "0" else "Female")
            errors.append(abs((face.age_range.low + face.age_range.high) / 2 - age))
            covered += face.age_range.low <= age <= face.age_range.high
    print(
        f"UTKFace adults n={n}: gender {gender_right / n:.3f}, age MAE {np.mean(errors):.1f}, range covers {covered / n:.3f}"
    )
    assert n >= 95
    assert gender_right / n >= 0.85
    assert np.mean(errors) <= 10
    assert covered / n >= 0.65
