"""Facial landmarks and head pose.

Landmarks come from dlib's 68-point shape predictor run on the detected box,
mapped onto Rekognition's 30 landmark types (table in docs/engine.md), or, with
``landmarks="yunet5"``, from YuNet's own five points (eyes, nose, mouth
corners). The 68-point model ships as CC0, but it was trained on iBUG 300-W,
whose terms exclude commercial use: commercial deployments should set
``VISAGE_LANDMARKS=yunet5``.

Pose (Roll, Yaw, Pitch) is solved from the landmarks with a generic 3-D face
model and ``cv2.solvePnP``.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import dlib
import numpy as np

from visage.engine.bundled import DLIB_SHAPE_5, DLIB_SHAPE_68, verified_path
from visage.engine.detection import Detection
from visage.faces import Landmark, Pose

# Rekognition's "left" and "right" are the image's: eyeLeft has the smaller X.
# dlib's 68 points: jaw 0-16, brows 17-21 / 22-26, nose 27-35, eyes 36-41 / 42-47, mouth 48-67.
_FROM_68: dict[str, tuple[int, ...]] = {
    "eyeLeft": (36, 37, 38, 39, 40, 41),
    "eyeRight": (42, 43, 44, 45, 46, 47),
    "nose": (30,),
    "mouthLeft": (48,),
    "mouthRight": (54,),
    "leftEyeBrowLeft": (17,),
    "leftEyeBrowRight": (21,),
    "leftEyeBrowUp": (19,),
    "rightEyeBrowLeft": (22,),
    "rightEyeBrowRight": (26,),
    "rightEyeBrowUp": (24,),
    "leftEyeLeft": (36,),
    "leftEyeRight": (39,),
    "leftEyeUp": (37, 38),
    "leftEyeDown": (40, 41),
    "rightEyeLeft": (42,),
    "rightEyeRight": (45,),
    "rightEyeUp": (43, 44),
    "rightEyeDown": (46, 47),
    "noseLeft": (31,),
    "noseRight": (35,),
    "mouthUp": (51,),
    "mouthDown": (57,),
    "upperJawlineLeft": (1,),
    "midJawlineLeft": (4,),
    "chinBottom": (8,),
    "midJawlineRight": (12,),
    "upperJawlineRight": (15,),
}
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_FROM_YUNET = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")

# A generic head in camera-like axes (x to the image's right, y down, z away from the
# camera), arbitrary units; the nose tip is the origin.
_MODEL_68 = {
    30: (0.0, 0.0, 0.0),  # nose tip
    8: (0.0, 330.0, 65.0),  # chin
    36: (-225.0, -170.0, 135.0),  # outer corner of the eye on the image's left
    45: (225.0, -170.0, 135.0),
    48: (-150.0, 150.0, 125.0),  # mouth corners
    54: (150.0, 150.0, 125.0),
}
_MODEL_5 = np.array(
    [(-150.0, -170.0, 135.0), (150.0, -170.0, 135.0), (0.0, 0.0, 0.0), (-150.0, 150.0, 125.0), (150.0, 150.0, 125.0)]
)


class ShapePredictor:
    """One of dlib's shape predictors (68 or 5 points), fed YuNet boxes reshaped to the
    boxes it was trained on."""

    def __init__(self, points: int) -> None:
        self._predictor = dlib.shape_predictor(verified_path(DLIB_SHAPE_68 if points == 68 else DLIB_SHAPE_5))
        self._lock = threading.Lock()

    def shape(self, rgb: np.ndarray, detection: Detection) -> dlib.full_object_detection:
        with self._lock:
            return self._predictor(rgb, dlib_rectangle(detection))


def shape_points(shape: dlib.full_object_detection) -> np.ndarray:
    """A dlib shape as an N x 2 float32 array of pixel coordinates."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def dlib_rectangle(detection: Detection) -> dlib.rectangle:
    """The box dlib's HOG detector would draw around this face.

    dlib's predictors were trained on HOG boxes: square, about 1.14 times the YuNet
    width, centred 3.5 % of the YuNet height lower (median over 294 LFW faces).
    """
    x, y, w, h = (float(v) for v in detection.box)
    side = 1.14 * w
    cx, cy = x + w / 2, y + h / 2 + 0.035 * h
    return dlib.rectangle(round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))


def landmarks_from_68(points: np.ndarray, gray: np.ndarray, width: int, height: int) -> tuple[Landmark, ...]:
    """Rekognition's 30 landmarks from dlib's 68 points (pupils estimated from the eye contour)."""
    out = [_landmark(name, points[list(idx)].mean(axis=0), width, height) for name, idx in _FROM_68.items()]
    out.append(_landmark("leftPupil", estimate_pupil(gray, points[_LEFT_EYE]), width, height))
    out.append(_landmark("rightPupil", estimate_pupil(gray, points[_RIGHT_EYE]), width, height))
    return tuple(out)


def landmarks_from_yunet(detection: Detection, width: int, height: int) -> tuple[Landmark, ...]:
    """The five landmarks YuNet gives directly."""
    return tuple(_landmark(name, point, width, height) for name, point in zip(_FROM_YUNET, detection.points))


def estimate_pupil(gray: np.ndarray, contour: np.ndarray) -> np.ndarray:
    """The pupil: centroid of the darkest fifth of the pixels inside the eye contour.

    Falls back to the contour's centre when the eye is too small to look inside.
    """
    centre = contour.mean(axis=0)
    x0, y0 = np.floor(contour.min(axis=0)).astype(int)
    x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, gray.shape[1]), min(y1, gray.shape[0])
    if x1 - x0 < 4 or y1 - y0 < 3:
        return centre
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, np.round(contour - (x0, y0)).astype(np.int32), 1)
    values = gray[y0:y1, x0:x1][mask.astype(bool)]
    if values.size < 6:
        return centre
    cut = np.percentile(values, 20)
    ys, xs = np.nonzero(mask.astype(bool) & (gray[y0:y1, x0:x1] <= cut))
    if xs.size == 0:
        return centre
    return np.array([xs.mean() + x0, ys.mean() + y0], dtype=np.float32)


def solve_pose(image_points: np.ndarray, width: int, height: int) -> Pose:
    """Head pose from landmarks: 68 points, or YuNet's 5.

    Signs: Roll > 0 when the head tilts clockwise in the image; Yaw > 0 when the face
    turns towards the image's right; Pitch > 0 when the face tilts up.
    """
    if len(image_points) == 68:
        model = np.array(list(_MODEL_68.values()))
        observed = image_points[list(_MODEL_68)]
    else:
        model, observed = _MODEL_5, image_points
    focal = float(max(width, height))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    # Start from a frontal head in front of the camera; the iterative solver refines it.
    rvec: Any = np.zeros((3, 1))
    span = np.ptp(observed[:, 0]) or 1.0
    distance = focal * np.ptp(model[:, 0]) / span
    tvec = np.array([[0.0], [0.0], [distance]])
    ok, rvec, tvec = cv2.solvePnP(
        model, observed.astype(np.float64), camera, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return Pose(roll=0.0, yaw=0.0, pitch=0.0)
    rotation, _ = cv2.Rodrigues(rvec)
    pitch, yaw, roll = _euler(rotation)
    return Pose(roll=_clamp(roll), yaw=_clamp(yaw), pitch=_clamp(pitch))


def _euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees for R = Rz(roll) @ Ry(yaw) @ Rx(pitch), in our signs."""
    yaw = np.degrees(np.arcsin(-np.clip(rotation[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    # Camera axes have y down: turning the face up is a negative rotation about x.
    return -float(pitch), -float(yaw), float(roll)


def _clamp(angle: float) -> float:
    return float(max(-180.0, min(180.0, angle)))


def _landmark(name: str, point: np.ndarray, width: int, height: int) -> Landmark:
    return Landmark(type=name, x=float(point[0]) / width, y=float(point[1]) / height)
