"""EyesOpen, MouthOpen, Smile and EyeDirection against hand labels of real faces; age and gender on UTKFace.

The landmark-ratio thresholds and EyeDirection's map are fitted on one half of the hand labels
and checked on the other (:mod:`visage.evaluation.attributes.fit`,
:mod:`visage.evaluation.attributes.gaze`); `visage eval attributes` writes the figures that
docs/engine.md quotes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from visage.config import Settings
from visage.engine import Engine
from visage.engine.bundled import IRIS, verified_path
from visage.engine.eye_direction import GAZE, EyeOffsets, GazeMap, gaze_applies
from visage.evaluation.attributes import gaze
from visage.evaluation.attributes.fit import (
    ATTRIBUTES,
    LABELS,
    Attribute,
    attribute_markdown,
    attribute_report,
    split,
)
from visage.faces import EyeDirection, Pose, video_attributes, wanted_attributes

PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "attributes" / "attributes.json"
PUBLISHED_GAZE = PUBLISHED.parent / "eye_direction.json"
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


# EyeDirection -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaze_report(engine: Engine, eval_data: Path) -> dict[str, Any]:
    return gaze.gaze_report(engine, eval_data)


def test_eye_direction_is_asked_for_in_images_and_never_in_video() -> None:
    assert "EYE_DIRECTION" in wanted_attributes(["ALL"]) and "EYE_DIRECTION" in wanted_attributes(["EYE_DIRECTION"])
    assert "EYE_DIRECTION" not in video_attributes(["ALL"])
    assert video_attributes(["ALL"]) == wanted_attributes(["ALL"]) - {"EYE_DIRECTION"}


def test_the_iris_model_is_the_pinned_file() -> None:
    assert verified_path(IRIS).endswith("mediapipe_iris.onnx")


def test_direction_names_follow_pose_signs() -> None:
    """Yaw > 0 towards the image's right, Pitch > 0 up, as for Pose; inside both thresholds is centre."""
    rule = GazeMap(across_rest=0.0, up_rest=0.0, lid_rest=0.0, yaw_threshold=10.0, pitch_threshold=10.0)
    name = {
        (y, p): rule.label(EyeDirection(yaw=y, pitch=p, confidence=90.0))
        for y, p in [(20, 0), (-20, 0), (0, 20), (0, -20), (5, -5)]
    }
    assert name == {(20, 0): "right", (-20, 0): "left", (0, 20): "up", (0, -20): "down", (5, -5): "centre"}


def test_a_lowered_upper_lid_reads_as_a_downward_glance_and_never_raises_pitch() -> None:
    """The upper lid only ever lowers Pitch: Pitch = min(iris, lid + max(iris, 0)) (docs/engine.md)."""
    rule = GazeMap(across_rest=0.0, up_rest=0.07, lid_rest=0.2, yaw_threshold=15.0, pitch_threshold=15.0)

    def read(up: float, lid: float) -> EyeDirection:
        return rule.direction(EyeOffsets(across=(0.0, 0.0), up=(up, up), lid=(lid, lid)))

    at_rest, lid_down, lid_up = read(0.07, 0.2), read(0.07, 0.02), read(0.07, 0.3)
    assert at_rest.pitch == pytest.approx(0.0) and rule.label(at_rest) == "centre"
    assert lid_down.pitch < -15.0 and rule.label(lid_down) == "down"
    assert lid_up.pitch == pytest.approx(0.0)  # a raised lid leaves the iris's reading
    looking_up = read(0.17, 0.2)
    assert looking_up.pitch > 15.0 and rule.label(looking_up) == "up"
    # an upward iris reading is lowered by as far as the lid reads below its rest
    assert read(0.17, 0.02).pitch == pytest.approx(looking_up.pitch + lid_down.pitch, abs=0.01)


def test_the_upper_lid_names_more_faces_than_the_iris_alone(gaze_report: dict[str, Any]) -> None:
    """The lid earns its place on both halves (each map fitted on the fit half), and costs nothing on
    the blind check (faces drawn at random and labelled after the map was fixed)."""
    iris = gaze_report["iris_only"]
    for half in ("fit", "check"):
        assert gaze_report[half]["correct"] >= iris[half]["correct"], (half, gaze_report[half], iris[half])
    blind = gaze_report["blind"]
    assert blind["shipped"]["correct"] >= blind["iris_only"]["correct"], blind
    assert blind["shipped"]["confusion"]["centre"]["centre"] >= blind["iris_only"]["confusion"]["centre"]["centre"], (
        blind
    )
    assert (
        gaze_report["fit"]["correct"] + gaze_report["check"]["correct"]
        > iris["fit"]["correct"] + iris["check"]["correct"]
    )


def test_eye_direction_is_read_only_on_large_near_frontal_faces() -> None:
    level = Pose(roll=0.0, yaw=0.0, pitch=0.0)
    assert gaze_applies(80, 120, level) and not gaze_applies(79, 120, level) and not gaze_applies(120, 79, level)
    assert gaze_applies(100, 100, Pose(roll=40.0, yaw=-30.0, pitch=25.0))
    assert not gaze_applies(100, 100, Pose(roll=0.0, yaw=31.0, pitch=0.0))
    assert not gaze_applies(100, 100, Pose(roll=0.0, yaw=0.0, pitch=-26.0))


def test_eye_direction_on_a_portrait_and_its_mirror_image(engine: Engine, portraits: Path) -> None:
    """Present for a large frontal face when asked for, absent otherwise; mirroring the image mirrors the gaze."""
    from PIL import Image

    from .conftest import encode

    rgb = np.asarray(Image.open(portraits / "person_b_1.jpg").convert("RGB"))
    face = engine.detect_faces(encode(rgb, "PNG"), attributes=["EYE_DIRECTION"])[0]
    assert face.eye_direction is not None and set(face.to_rekognition()["EyeDirection"]) == {
        "Yaw",
        "Pitch",
        "Confidence",
    }
    assert 0 <= face.eye_direction.confidence <= 100
    mirrored = engine.detect_faces(encode(np.ascontiguousarray(rgb[:, ::-1]), "PNG"), attributes=["ALL"])[0]
    assert mirrored.eye_direction is not None
    # Mirroring negates the iris offset, not the rest offset taken off it: Yaw(mirror) + Yaw = 2 * Yaw(no offset).
    no_offset_yaw = GAZE.angles(0.0, GAZE.up_rest, GAZE.lid_rest)[0]
    assert mirrored.eye_direction.yaw + face.eye_direction.yaw == pytest.approx(2 * no_offset_yaw, abs=3)
    assert mirrored.eye_direction.pitch == pytest.approx(face.eye_direction.pitch, abs=3)
    assert engine.detect_faces(encode(rgb, "PNG"), attributes=["SMILE"])[0].eye_direction is None
    five_points = Engine(Settings(landmarks="yunet5"))
    assert five_points.detect_faces(encode(rgb, "PNG"), attributes=["ALL"])[0].eye_direction is None


def test_the_shipped_eye_direction_map_is_the_one_fitted_on_the_fit_half(gaze_report: dict[str, Any]) -> None:
    shipped = {
        "across_rest": GAZE.across_rest,
        "up_rest": GAZE.up_rest,
        "lid_rest": GAZE.lid_rest,
        "yaw_threshold": GAZE.yaw_threshold,
        "pitch_threshold": GAZE.pitch_threshold,
    }
    assert gaze_report["fitted"] == shipped == gaze_report["shipped"]


def test_the_check_half_names_directions_better_than_always_centre(gaze_report: dict[str, Any]) -> None:
    """The check half took no part in the fit: it must beat answering "centre" for every face, must not
    be significantly worse than the fit half (one-sided Fisher exact test at 1 %), and must tell left
    from right (docs/engine.md: "Left and right are read well"): at least two in three of its
    left and right faces named so."""
    fit, check = gaze_report["fit"], gaze_report["check"]
    confusion = check["confusion"]
    assert check["correct"] > sum(confusion["centre"].values()), check
    table = [[fit["correct"], fit["faces"] - fit["correct"]], [check["correct"], check["faces"] - check["correct"]]]
    assert stats.fisher_exact(table, alternative="greater").pvalue >= 0.01, table
    sideways = sum(sum(confusion[d].values()) for d in ("left", "right"))
    assert 3 * (confusion["left"]["left"] + confusion["right"]["right"]) >= 2 * sideways, confusion


def test_the_published_eye_direction_figures_are_todays(gaze_report: dict[str, Any]) -> None:
    """docs/engine.md quotes docs/attributes/eye_direction.json, written by `visage eval attributes`."""
    assert json.loads(PUBLISHED_GAZE.read_text()) == json.loads(json.dumps(gaze_report)), RERUN
    assert gaze.gaze_markdown(gaze_report) in (PUBLISHED.parent.parent / "engine.md").read_text(), RERUN
