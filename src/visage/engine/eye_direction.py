"""EyeDirection: where the eyes look relative to the head, from MediaPipe's iris landmark model.

Each eye is cut from the image the way MediaPipe cuts it: a square on the midpoint of the
eye's corners (dlib's 68 points), 2.3 times the corner distance on a side, turned so that the
eyes are level, resized to the model's 64 x 64 RGB input (values 0-1); the eye on the image's
right is mirrored, since the model reads eyes seen like the one on the image's left. The model
returns the eye's contour (71 points, the corners among them) and the iris (5 points, its
centre first) in crop pixels. Both eyes of every gated face run in one batch (about 2 ms an
eye on one core). YuNet's five eye points proved too rough to cut by (off by a fifth of the
distance between the eyes on small faces), so, like EyesOpen, the attribute needs the 68-point
landmarks and is left out when Visage runs on YuNet's five points.

The gaze is read inside the eye, so the head's pose does not enter it: the iris centre's offset
from the midpoint of the eye corners, over the corner distance, across (towards the image's
right) and up, averaged over the two eyes (averaging a seen and a mirrored eye cancels any
left-right bias of the model). Offsets become angles on a round-eye model: the iris turns on a
circle whose radius is :data:`IRIS_RADIUS` of the corner distance (adult eyes: corners about
28 mm apart, the iris centre about 10 mm from the eye's centre of rotation), so an offset o
reads as asin(o / radius) after the rest offsets of eyes looking at the camera (fitted on hand
labels, :data:`GAZE`) are taken off.

A downward glance is read from the upper lid as well. The lid follows the eye down and covers
the top of the iris; on hand-labelled faces the iris centre of a downward glance moved down less
and less evenly (its offsets overlap those of centre faces), while the middle of the upper lid
dropped by about a fifth of the eye's width (the medians), below every centre face's
(docs/engine.md). The upper lid's height above the corners'
midpoint, less its rest height, is read on the same round-eye model, and it only ever lowers
Pitch: Pitch = min(iris, lid + max(iris, 0)), so a level or downward iris reading gives way to
the lid's where that is lower, and an upward one is lowered by as far as the lid sits below its
rest. A lid that sits low for another reason (a squint, a drooping lid, eyes half closed) reads
as a downward glance too. No labelled angles were available, so the degrees rest on that model;
the directions they name were measured (docs/engine.md). Signs follow Visage's Pose: Yaw > 0
when the eyes look towards the image's right, Pitch > 0 when they look up.

Confidence is 100 when the two eyes agree and falls as their separate angles part:
100 * exp(-d / :data:`AGREEMENT_SCALE`), d the angle between the left and right eye's estimates.

The attribute is estimated only where it can be read: faces whose box is at least
:data:`MIN_FACE_PIXELS` on its shorter side, with head pose within :data:`MAX_HEAD_YAW` and
:data:`MAX_HEAD_PITCH`; elsewhere it is left out of the response. Rekognition returns it for
images only; video leaves it out (:func:`visage.faces.video_attributes`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from visage.engine.bundled import IRIS, verified_path
from visage.faces import EyeDirection, Pose

_INPUT = 64
_CONTOUR_POINTS = 71
_OUTER, _INNER = 0, 8  # the eye corners among the contour points
_UPPER_LID = slice(11, 14)  # the middle of the upper lid among the contour points (9-15 run along it)
#: MediaPipe's eye crop: a square 2.3 times the distance between the eye corners.
_CORNER_SPAN = 2.3
#: Radius of the circle the iris centre turns on, over the distance between the eye corners.
IRIS_RADIUS = 10.0 / 28.0
#: Disagreement between the two eyes (degrees) at which Confidence is 100/e.
AGREEMENT_SCALE = 20.0
#: The gate: the face's shorter box side in pixels, and the largest head Yaw and Pitch (degrees).
MIN_FACE_PIXELS = 80.0
MAX_HEAD_YAW = 30.0
MAX_HEAD_PITCH = 25.0


@dataclass(frozen=True)
class EyeOffsets:
    """Iris centre minus the eye corners' midpoint, over the corner distance, per eye
    (the eye on the image's left, then the one on its right): across (> 0 towards the image's
    right) and up (> 0 up); and the middle of the upper lid's height above that midpoint, over
    the same distance."""

    across: tuple[float, float]
    up: tuple[float, float]
    lid: tuple[float, float]

    @property
    def mean(self) -> tuple[float, float, float]:
        """The two eyes' (across, up, lid) averaged."""
        across, up, lid = (float(np.mean(pair)) for pair in (self.across, self.up, self.lid))
        return across, up, lid


@dataclass(frozen=True)
class GazeMap:
    """Offsets to Yaw and Pitch, and the angles past which a gaze counts as averted.

    ``across_rest``, ``up_rest`` and ``lid_rest`` are the offsets of eyes looking at the camera;
    the thresholds name a direction (left, right, up, down or centre) for measuring against labels.
    """

    across_rest: float
    up_rest: float
    lid_rest: float
    yaw_threshold: float  # degrees
    pitch_threshold: float  # degrees

    def angles(self, across: float, up: float, lid: float) -> tuple[float, float]:
        """(Yaw, Pitch) in degrees for one eye's offsets (or their mean). The upper lid only lowers
        Pitch: to the lid's reading where that is lower than a level or downward iris reading, and
        an upward iris reading by as far as the lid reads below its rest."""
        iris, lid_reading = _angle(up - self.up_rest), _angle(lid - self.lid_rest)
        return _angle(across - self.across_rest), min(iris, lid_reading + max(iris, 0.0))

    def direction(self, offsets: EyeOffsets) -> EyeDirection:
        yaw, pitch = self.angles(*offsets.mean)
        each = [self.angles(*eye) for eye in zip(offsets.across, offsets.up, offsets.lid)]
        disagreement = float(np.hypot(each[0][0] - each[1][0], each[0][1] - each[1][1]))
        confidence = 100.0 * float(np.exp(-disagreement / AGREEMENT_SCALE))
        return EyeDirection(yaw=round(yaw, 3), pitch=round(pitch, 3), confidence=round(confidence, 3))

    def label(self, direction: EyeDirection) -> str:
        """ "centre" inside both thresholds; else the side of the axis that is further past its threshold."""
        across, up = direction.yaw / self.yaw_threshold, direction.pitch / self.pitch_threshold
        if max(abs(across), abs(up)) <= 1.0:
            return "centre"
        if abs(across) >= abs(up):
            return "right" if across > 0 else "left"
        return "up" if up > 0 else "down"


def _angle(offset: float) -> float:
    return float(np.degrees(np.arcsin(np.clip(offset / IRIS_RADIUS, -1.0, 1.0))))


# Fitted on the fit half of tests/data/eye_direction_labels.json and checked on the other half:
# `visage eval attributes` (visage.evaluation.attributes.gaze) writes the figures docs/engine.md
# quotes; tests/test_attributes.py checks them.
GAZE = GazeMap(across_rest=0.013, up_rest=0.072, lid_rest=0.215, yaw_threshold=15.5, pitch_threshold=16.5)


def gaze_applies(box_width: float, box_height: float, pose: Pose) -> bool:
    """Whether EyeDirection is estimated for a face: large enough and near-frontal."""
    return (
        min(box_width, box_height) >= MIN_FACE_PIXELS
        and abs(pose.yaw) <= MAX_HEAD_YAW
        and abs(pose.pitch) <= MAX_HEAD_PITCH
    )


class IrisModel:
    """MediaPipe Iris under onnxruntime; safe to share between threads."""

    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(verified_path(IRIS), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def offsets(self, rgb: np.ndarray, corners: list[np.ndarray]) -> list[EyeOffsets]:
        """The iris offsets of each face, given its four eye corners (:func:`eye_corners`)."""
        if not corners:
            return []
        boxes = [EyeBoxes.around_corners(c) for c in corners]
        crops = np.stack([crop for face in boxes for crop in face.crops(rgb)])
        with self._lock:
            out = self._session.run(None, {self._input: crops})[0]
        points = np.asarray(out, dtype=np.float64).reshape(len(crops), -1, 3)
        return [
            EyeOffsets(*zip(*(_offset(points[2 * i + side], mirrored=side == 1) for side in (0, 1))))
            for i in range(len(boxes))
        ]


def eye_corners(points68: np.ndarray) -> np.ndarray:
    """The four eye corners of dlib's 68 points: the image's left eye (outer, inner), then the right eye's."""
    return np.asarray(points68, dtype=np.float64)[[36, 39, 42, 45]]


@dataclass(frozen=True)
class EyeBoxes:
    """Where the two eye crops of a face are cut: centres (image pixels), the turn that levels
    the eyes, and the crop side in pixels."""

    centres: tuple[np.ndarray, np.ndarray]
    angle: float  # radians
    side: float

    @classmethod
    def around_corners(cls, corners: np.ndarray) -> EyeBoxes:
        """MediaPipe's own crops: squares on each eye's corner midpoint, 2.3 times the corner distance."""
        left, right = corners[:2].mean(axis=0), corners[2:].mean(axis=0)
        delta = right - left
        width = (np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[3] - corners[2])) / 2.0
        return cls((left, right), float(np.arctan2(delta[1], delta[0])), _CORNER_SPAN * float(width))

    def matrix(self, side: int) -> np.ndarray:
        """The 2 x 3 map from image pixels to crop pixels of eye ``side`` (0 left, 1 right: mirrored)."""
        scale = _INPUT / max(self.side, 1e-6)
        cos, sin = np.cos(self.angle) * scale, np.sin(self.angle) * scale
        matrix = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
        matrix[:, 2] = _INPUT / 2.0 - matrix[:, :2] @ self.centres[side]
        if side == 1:
            matrix[0] = -matrix[0]
            matrix[0, 2] += _INPUT
        return matrix

    def crops(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The model's two inputs: float32 64 x 64 x 3 crops in 0-1, the right eye mirrored."""
        return [
            cv2.warpAffine(
                rgb, self.matrix(side), (_INPUT, _INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            ).astype(np.float32)
            / 255.0
            for side in (0, 1)
        ]


def _offset(points: np.ndarray, mirrored: bool) -> tuple[float, float, float]:
    """(across, up, lid) of one eye from the model's points in crop pixels (y down)."""
    outer, inner = points[_OUTER, :2], points[_INNER, :2]
    middle = (outer + inner) / 2.0
    width = max(float(np.linalg.norm(inner - outer)), 1e-6)
    across, down = (points[_CONTOUR_POINTS, :2] - middle) / width
    lid = (middle[1] - float(points[_UPPER_LID, 1].mean())) / width
    return (-float(across) if mirrored else float(across)), -float(down), float(lid)
