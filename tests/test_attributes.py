"""EyesOpen, MouthOpen and Smile against hand labels of real faces; age and gender on UTKFace."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from visage.engine import Engine

LABELS = json.loads((Path(__file__).parent / "data" / "attribute_labels.json").read_text())
FIELD = {"smile": "smile", "mouth_open": "mouth_open", "eyes_open": "eyes_open"}
# Accuracy reached on each labelled set when the thresholds were chosen (docs/engine.md).
FLOOR = {"smile": 0.80, "mouth_open": 0.83, "eyes_open": 0.72}


@pytest.mark.parametrize("attribute", sorted(FIELD))
def test_geometry_attributes_agree_with_hand_labels(engine: Engine, eval_data: Path, attribute: str) -> None:
    labels = LABELS[attribute]
    correct = 0
    for name, truth in labels.items():
        faces = engine.detect_faces((eval_data / name).read_bytes(), attributes=["ALL"])
        estimate = getattr(faces[0], FIELD[attribute])
        correct += estimate.value == truth
    accuracy = correct / len(labels)
    print(f"{attribute}: {correct}/{len(labels)} = {accuracy:.3f}")
    assert accuracy >= FLOOR[attribute]


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
