"""Face detection: YuNet (OpenCV's ``FaceDetectorYN``) over an image pyramid.

YuNet finds faces from about 10 px up, but only at the resolution it is run
at. One pass at ``detection_base_side`` (640 px long side) finds the faces of
ordinary photos; an image larger than that is also searched at
``min(long side, detection_max_side)`` so that faces small relative to the
image (a group photo, a crowd) are found too. Detections of all passes are
mapped back to original pixels and merged by non-maximum suppression.

A face that fills the whole frame (a close-up, often turned) is missed by YuNet,
which needs some head and background around a face. So when no pass finds a face,
the image is searched once more with a black border of 20 % of its long side on every
side, at 320 px long side. On CFP this finds 22 of the 29 faces (all real, checked
by eye) that the pyramid misses in images of at least 80 px; images with a face cost
nothing more, and an image without one about one more small pass (5-8 ms).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from visage.config import Settings
from visage.engine.bundled import YUNET, verified_path
from visage.engine.images import DecodedImage

_NMS_IOU = 0.3
_PASS_NMS_IOU = 0.3
_TOP_K = 5000
#: The close-up pass: a black border of this share of the long side, then this long side.
_CLOSE_UP_BORDER = 0.2
_CLOSE_UP_SIDE = 320


@dataclass(frozen=True)
class Detection:
    """One face box in original-image pixels, with YuNet's five points."""

    box: np.ndarray = field(repr=False)  # x, y, w, h (float32)
    #: 5 x 2, YuNet order: eye on the image's left, eye on the right, nose tip,
    #: mouth corner on the left, mouth corner on the right.
    points: np.ndarray = field(repr=False)
    score: float  # 0-1

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    @property
    def pixel_box(self) -> tuple[float, float, float, float]:
        """x, y, width, height in pixels, as Python floats."""
        x, y, w, h = (float(v) for v in self.box)
        return x, y, w, h


class FaceDetector:
    """YuNet, run once per pyramid level; safe to share between threads."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model_path = verified_path(YUNET)
        self._local = threading.local()

    def _yunet(self) -> cv2.FaceDetectorYN:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = cv2.FaceDetectorYN.create(
                self._model_path, "", (320, 320), self._settings.detection_threshold, _PASS_NMS_IOU, _TOP_K
            )
            self._local.detector = detector
        return detector

    def pyramid(self, width: int, height: int) -> list[int]:
        """Long sides at which an image of this size is searched."""
        long_side = max(width, height)
        base = self._settings.detection_base_side
        sides = [min(long_side, base)]
        fine = min(long_side, self._settings.detection_max_side)
        if fine > base * 1.25:
            sides.append(fine)
        return sides

    def detect(self, image: DecodedImage) -> list[Detection]:
        """Faces in the image, largest first, at most ``max_faces`` of them."""
        bgr = image.rgb[:, :, ::-1]
        rows = [self._detect_at(bgr, side) for side in self.pyramid(image.width, image.height)]
        found = np.concatenate(rows) if rows else np.zeros((0, 15), np.float32)
        if not len(found):
            found = self._detect_close_up(bgr)
        kept = _suppress(found, _NMS_IOU)
        detections = [
            Detection(box=r[0:4].copy(), points=r[4:14].reshape(5, 2).copy(), score=float(r[14])) for r in kept
        ]
        detections.sort(key=lambda d: d.area, reverse=True)
        return detections[: self._settings.max_faces]

    def _detect_close_up(self, bgr: np.ndarray) -> np.ndarray:
        """Faces that fill the frame: the image with a black border, at ``_CLOSE_UP_SIDE``."""
        border = round(_CLOSE_UP_BORDER * max(bgr.shape[:2]))
        framed = cv2.copyMakeBorder(np.ascontiguousarray(bgr), border, border, border, border, cv2.BORDER_CONSTANT)
        faces = self._detect_at(framed, _CLOSE_UP_SIDE, upscale=True)
        faces[:, 0:2] -= border  # x, y (not width and height)
        faces[:, 4:14] -= border  # the five points
        return faces

    def _detect_at(self, bgr: np.ndarray, side: int, upscale: bool = False) -> np.ndarray:
        height, width = bgr.shape[:2]
        scale = side / max(width, height)
        if scale < 1.0 or (upscale and scale > 1.0):
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            resized = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
        else:
            scale, resized = 1.0, np.ascontiguousarray(bgr)
        yunet = self._yunet()
        yunet.setInputSize((resized.shape[1], resized.shape[0]))
        _, faces = yunet.detect(resized)
        if faces is None:
            return np.zeros((0, 15), np.float32)
        faces = faces.astype(np.float32)
        # Back to original pixels. Scales differ slightly per axis after rounding.
        sx, sy = width / resized.shape[1], height / resized.shape[0]
        faces[:, 0:14:2] *= sx
        faces[:, 1:14:2] *= sy
        return faces


def _suppress(rows: np.ndarray, iou_threshold: float) -> list[np.ndarray]:
    """Greedy non-maximum suppression on YuNet rows, best score first."""
    order = np.argsort(-rows[:, 14])
    kept: list[np.ndarray] = []
    for i in order:
        if all(_iou(rows[i, :4], k[:4]) <= iou_threshold for k in kept):
            kept.append(rows[i])
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0
