"""EyeDirection against hand labels: the rest offsets and direction thresholds fitted on one half, checked on the other.

``tests/data/eye_direction_labels.json`` holds hand labels of gaze (left, right, up, down,
centre, as the viewer sees the image) for near-frontal faces of at least 80 px, each with the
box of the labelled face. The labels are split in two by label and file name (within each
label, sorted names alternately), so the split does not depend on the code measured:

Faces the engine's gate leaves out (head pose from the 68 points beyond its limits) take no
part in either half.

- fit: the rest offsets (iris across and up, upper lid) are the medians of the fit half's
  centre faces (rounded to 3 decimals); the Yaw and Pitch thresholds (0.5-degree steps) are
  those that name the most fit faces' directions right (among equally good ones, the middle
  Yaw threshold, then the middle Pitch one): the :data:`~visage.engine.eye_direction.GAZE`
  Visage ships;
- check: the other half's directions named at the shipped map, with the exact 95 % interval,
  per label, and as a confusion table. No check label took part in the fit (but the choice to
  read the upper lid was made after looking at both halves: docs/engine.md);
- the same for a map fitted without the upper lid (the iris alone), and each label's offsets;
- blind: ``tests/data/eye_direction_blind_labels.json``, faces drawn at random and labelled
  after the shipped map was fixed, named by both maps.

:func:`gaze_report` measures; ``visage eval attributes`` writes
``docs/attributes/eye_direction.json`` and the block of docs/engine.md that quotes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from visage.engine import Engine
from visage.engine.eye_direction import GAZE, EyeOffsets, GazeMap, IrisModel, eye_corners, gaze_applies
from visage.engine.landmarks import ShapePredictor, shape_points, solve_pose
from visage.evaluation.attributes.fit import halves
from visage.evaluation.intervals import Rate
from visage.faces import BoundingBox

#: The labels, beside the tests that check the attribute (labels only: no image is copied).
LABELS = Path(__file__).resolve().parents[4] / "tests" / "data" / "eye_direction_labels.json"
#: Faces drawn at random and labelled after the shipped map was fixed: a check no choice saw.
BLIND_LABELS = LABELS.with_name("eye_direction_blind_labels.json")
DIRECTIONS = ("left", "right", "up", "down", "centre")
#: The thresholds tried, in degrees.
_STEPS = np.arange(1.0, 40.0 + 1e-9, 0.5)


def split(labels: dict[str, str]) -> tuple[list[str], list[str]]:
    """The fit half and the check half: within each label, sorted file names alternately."""
    fit: list[str] = []
    check: list[str] = []
    for direction in DIRECTIONS:
        names = sorted(n for n, label in labels.items() if label == direction)
        fit += names[0::2]
        check += names[1::2]
    return sorted(fit), sorted(check)


def measure(engine: Engine, data: Path, faces: dict[str, dict[str, Any]]) -> dict[str, EyeOffsets | None]:
    """The iris offsets of each labelled face (the detected face that overlaps its labelled box
    most), or None where the engine's gate leaves EyeDirection out (head pose from the 68 points)."""
    predictor, iris = ShapePredictor(68), IrisModel()
    out: dict[str, EyeOffsets | None] = {}
    for name, face in faces.items():
        image = engine.decode((data / name).read_bytes())
        labelled = BoundingBox(*face["box"])
        detection = max(engine.detector.detect(image), key=lambda d: labelled.overlap(BoundingBox(*d.pixel_box)))
        points = shape_points(predictor.shape(image.rgb, detection))
        pose = solve_pose(points, image.width, image.height)
        gated = gaze_applies(detection.box[2], detection.box[3], pose)
        out[name] = iris.offsets(image.rgb, [eye_corners(points)])[0] if gated else None
    return out


def fit_map(offsets: list[EyeOffsets], labels: list[str]) -> GazeMap:
    """Rest offsets from the centre faces, then the thresholds that name the most directions right."""
    centre = np.array([o.mean for o, label in zip(offsets, labels) if label == "centre"])
    across_rest, up_rest, lid_rest = (round(float(v), 3) for v in np.median(centre, axis=0))
    directions = [GazeMap(across_rest, up_rest, lid_rest, 1.0, 1.0).direction(o) for o in offsets]
    scores: dict[tuple[float, float], int] = {}
    for yaw in _STEPS:
        for pitch in _STEPS:
            candidate = GazeMap(across_rest, up_rest, lid_rest, float(yaw), float(pitch))
            scores[float(yaw), float(pitch)] = sum(candidate.label(d) == label for d, label in zip(directions, labels))
    best = max(scores.values())
    tied = sorted(k for k, v in scores.items() if v == best)
    yaw = sorted({k[0] for k in tied})[len({k[0] for k in tied}) // 2]
    pitches = sorted(k[1] for k in tied if k[0] == yaw)
    return GazeMap(across_rest, up_rest, lid_rest, yaw, pitches[len(pitches) // 2])


def _named(gaze: GazeMap, offsets: list[EyeOffsets]) -> list[str]:
    return [gaze.label(gaze.direction(o)) for o in offsets]


def _iris_only(offsets: EyeOffsets) -> EyeOffsets:
    """The offsets with the upper lid taken out of Pitch (its reading becomes +90 degrees, never the lower)."""
    return replace(offsets, lid=(math.inf, math.inf))


def _halves(
    gaze: GazeMap, offsets: dict[str, EyeOffsets], truth: dict[str, str], fit: list[str], check: list[str]
) -> dict[str, Any]:
    """How ``gaze`` names each half's directions, with the check half's confusion table."""
    named = dict(zip(fit + check, _named(gaze, [offsets[n] for n in fit + check])))
    report = halves(*(Rate(sum(named[n] == truth[n] for n in half), len(half)) for half in (fit, check)))
    report["check"]["confusion"] = {
        d: {e: sum(truth[n] == d and named[n] == e for n in check) for e in DIRECTIONS} for d in DIRECTIONS
    }
    return report


def _by_label(offsets: dict[str, EyeOffsets], truth: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per label, over both halves: how many gated faces, and the median, lowest and highest of each mean offset."""
    out: dict[str, dict[str, Any]] = {}
    for direction in DIRECTIONS:
        values = np.array([offsets[n].mean for n in offsets if truth[n] == direction]).reshape(-1, 3)
        out[direction] = {"faces": len(values)} | {
            name: [round(float(f(values[:, k])), 3) for f in (np.median, np.min, np.max)] if len(values) else []
            for k, name in enumerate(("across", "up", "lid"))
        }
    return out


def gaze_report(engine: Engine, data: Path, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """The map fitted on the fit half, how the shipped map names each half's directions, the same
    for a map fitted without the upper lid, the offsets by label, and the blind check."""
    labels = labels or json.loads(LABELS.read_text())
    blind_labels = json.loads(BLIND_LABELS.read_text())
    faces: dict[str, dict[str, Any]] = labels["faces"]
    truth = {name: face["gaze"] for name, face in faces.items()}
    measured_all = measure(engine, data, {**faces, **blind_labels["faces"]})  # the models load once
    measured = {n: measured_all[n] for n in faces}
    offsets = {n: o for n, o in measured.items() if o is not None}
    fit, check = ([n for n in half if n in offsets] for half in split(truth))
    fitted = fit_map([offsets[n] for n in fit], [truth[n] for n in fit])
    iris_offsets = {n: _iris_only(o) for n, o in offsets.items()}
    iris_fitted = fit_map([iris_offsets[n] for n in fit], [truth[n] for n in fit])
    blind = _blind_check(blind_labels, {n: measured_all[n] for n in blind_labels["faces"]}, iris_fitted)
    return {
        "labels": LABELS.name,
        "split": "within each label, sorted file names alternately: fit, check",
        "faces": {d: sum(v == d for v in truth.values()) for d in DIRECTIONS},
        "gated_out": sorted(n for n, o in measured.items() if o is None),
        "fitted": _map_fields(fitted),
        "shipped": _map_fields(GAZE),
        **_halves(GAZE, offsets, truth, fit, check),
        "iris_only": {"fitted": _map_fields(iris_fitted), **_halves(iris_fitted, iris_offsets, truth, fit, check)},
        "offsets_by_label": _by_label(offsets, truth),
        "blind": blind,
    }


def _blind_check(
    labels: dict[str, Any], measured: dict[str, EyeOffsets | None], iris_fitted: GazeMap
) -> dict[str, Any]:
    """How the shipped map, and the map fitted without the lid, name the blind labels' directions
    (``measured``: their offsets, by :func:`measure`)."""
    truth = {name: face["gaze"] for name, face in labels["faces"].items()}
    offsets = {n: o for n, o in measured.items() if o is not None}
    names = sorted(offsets)
    return {
        "labels": BLIND_LABELS.name,
        "faces": {d: sum(truth[n] == d for n in names) for d in DIRECTIONS},
        "left_out_when_labelling": len(labels["left_out"]),
        "gated_out": sorted(n for n, o in measured.items() if o is None),
        "shipped": _halves(GAZE, offsets, truth, [], names)["check"],
        "iris_only": _halves(iris_fitted, {n: _iris_only(o) for n, o in offsets.items()}, truth, [], names)["check"],
    }


def _map_fields(gaze: GazeMap) -> dict[str, float]:
    return {
        "across_rest": gaze.across_rest,
        "up_rest": gaze.up_rest,
        "lid_rest": gaze.lid_rest,
        "yaw_threshold": gaze.yaw_threshold,
        "pitch_threshold": gaze.pitch_threshold,
    }


def gaze_markdown(report: dict[str, Any]) -> str:
    """The tables docs/engine.md quotes: the map and the check half's confusion."""
    shipped, check = report["shipped"], report["check"]
    low, high = check["ci95"]
    labelled = sum(report["faces"].values())
    lines = [
        "| labelled faces (outside the gate) | rest offset across / up / lid | Yaw / Pitch thresholds | fit half | check half (95 % CI) |",
        "|---|---|---|---|---|",
        f"| {labelled} ({len(report['gated_out'])}) | {shipped['across_rest']:g} / {shipped['up_rest']:g} / {shipped['lid_rest']:g} | {shipped['yaw_threshold']:g}° / "
        f"{shipped['pitch_threshold']:g}° | {report['fit']['correct']}/{report['fit']['faces']} | "
        f"{check['correct']}/{check['faces']} ({100 * low:.0f}–{100 * high:.0f} %) |",
        "",
        "| check half: labelled ↓, named → | " + " | ".join(DIRECTIONS) + " |",
        "|---|" + "---|" * len(DIRECTIONS),
    ]
    for direction in DIRECTIONS:
        row = check["confusion"][direction]
        lines.append(f"| {direction} | " + " | ".join(str(row[e]) for e in DIRECTIONS) + " |")
    iris = report["iris_only"]
    lines += [
        "",
        f"Without the upper lid (the iris alone, its map fitted the same way: Pitch threshold "
        f"{iris['fitted']['pitch_threshold']:g}°): fit half {iris['fit']['correct']}/{iris['fit']['faces']}, "
        f"check half {iris['check']['correct']}/{iris['check']['faces']}, its down faces named down "
        f"{iris['check']['confusion']['down']['down']} of {sum(iris['check']['confusion']['down'].values())}.",
        "",
        "| gated faces by label (both halves) | iris across | iris up | upper lid |",
        "|---|---|---|---|",
    ]
    for direction, row in report["offsets_by_label"].items():
        cells = [_spread(row[key]) for key in ("across", "up", "lid")]
        lines.append(f"| {direction} ({row['faces']}) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Offsets are over the eye-corner distance, medians (lowest to highest), the two eyes averaged.")
    blind = report["blind"]
    shipped, alone = blind["shipped"], blind["iris_only"]
    low, high = shipped["ci95"]
    counts = ", ".join(f"{n} {d}" for d, n in blind["faces"].items() if n)
    lines += [
        "",
        f"Blind check ({blind['labels']}: faces drawn at random, labelled after this map was fixed; "
        f"{shipped['faces']} labelled: {counts}; {blind['left_out_when_labelling']} more left out when labelling): "
        f"{shipped['correct']}/{shipped['faces']} ({100 * low:.0f}–{100 * high:.0f} %), against "
        f"{alone['correct']}/{alone['faces']} for the iris alone; centre faces named centre "
        f"{shipped['confusion']['centre']['centre']} of {blind['faces']['centre']} (iris alone "
        f"{alone['confusion']['centre']['centre']}), down faces named down {shipped['confusion']['down']['down']} "
        f"of {blind['faces']['down']} (iris alone {alone['confusion']['down']['down']}).",
    ]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    """ "median (lowest to highest)", or nothing for a label without gated faces."""
    if not values:
        return ""
    median, lowest, highest = values
    return f"{median:+.3f} ({lowest:+.2f} to {highest:+.2f})"
