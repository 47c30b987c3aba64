"""Face image quality: Brightness and Sharpness on Rekognition's 0-100 scale.

Both are measured on the face box (clipped to the image), in grayscale:

- Brightness = 100 * mean(Y) / 255, with Y the Rec. 601 luma.
- Sharpness = 100 * (1 - exp(-V / 100)), with V the variance of the Laplacian of the
  face resized to 112 px wide, so the figure does not depend on the face's size.
  The scale 100 puts the in-focus portraits of the eval data at 80-100, the soft
  250 px LFW crops at a median of 47 (5th percentile 24), and a face blurred by a
  Gaussian of 3 % of its width below 40 (tests/test_quality.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from visage.faces import FaceDetail, Quality

_SHARPNESS_SCALE = 100.0
_SHARPNESS_WIDTH = 112


def face_crop(gray: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The part of the image inside the box (x, y, w, h), clipped to the image."""
    x, y, w, h = box
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w)), gray.shape[1]), min(int(np.ceil(y + h)), gray.shape[0])
    return gray[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]


def measure_quality(gray: np.ndarray, box: np.ndarray) -> Quality:
    crop = face_crop(gray, box)
    if crop.size == 0:
        return Quality(brightness=0.0, sharpness=0.0)
    brightness = 100.0 * float(crop.mean()) / 255.0
    height = max(1, round(crop.shape[0] * _SHARPNESS_WIDTH / max(crop.shape[1], 1)))
    resized = cv2.resize(crop, (_SHARPNESS_WIDTH, height), interpolation=cv2.INTER_AREA)
    variance = float(cv2.Laplacian(resized, cv2.CV_64F).var())
    sharpness = 100.0 * (1.0 - np.exp(-variance / _SHARPNESS_SCALE))
    return Quality(brightness=round(brightness, 4), sharpness=round(sharpness, 4))


@dataclass(frozen=True)
class QualityBar:
    """The least a face must reach to pass one QualityFilter level."""

    min_confidence: float  # detector Confidence, 0-100
    min_face_pixels: float  # shorter side of the face box, in image pixels
    max_yaw: float  # degrees
    max_pitch: float
    min_brightness: float  # 0-100
    max_brightness: float
    min_sharpness: float  # 0-100


# Chosen on 600 random LFW faces (docs/engine.md): LOW, MEDIUM and AUTO keep all of
# them; HIGH keeps 89 % (it drops the softest, the most turned and the least certain).
QUALITY_BARS: dict[str, QualityBar] = {
    "LOW": QualityBar(80.0, 20.0, 75.0, 60.0, 8.0, 98.0, 3.0),
    "MEDIUM": QualityBar(85.0, 32.0, 60.0, 45.0, 12.0, 96.0, 8.0),
    "HIGH": QualityBar(90.0, 64.0, 40.0, 30.0, 20.0, 92.0, 25.0),
}
QUALITY_BARS["AUTO"] = QUALITY_BARS["MEDIUM"]


def quality_filter_reasons(detail: FaceDetail, level: str, image_width: int, image_height: int) -> list[str]:
    """Rekognition's reasons why a face fails QualityFilter ``level`` (empty when it passes)."""
    bar = QUALITY_BARS.get(level)
    if bar is None:  # NONE
        return []
    reasons = []
    box = detail.bounding_box
    if min(box.width * image_width, box.height * image_height) < bar.min_face_pixels:
        reasons.append("SMALL_BOUNDING_BOX")
    if detail.confidence < bar.min_confidence:
        reasons.append("LOW_CONFIDENCE")
    if abs(detail.pose.yaw) > bar.max_yaw or abs(detail.pose.pitch) > bar.max_pitch:
        reasons.append("EXTREME_POSE")
    if not bar.min_brightness <= detail.quality.brightness <= bar.max_brightness:
        reasons.append("LOW_BRIGHTNESS")
    if detail.quality.sharpness < bar.min_sharpness:
        reasons.append("LOW_SHARPNESS")
    return reasons
