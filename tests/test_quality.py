"""Brightness and Sharpness follow the image, and the QualityFilter bars are ordered."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from visage.engine import Engine
from visage.engine.images import DecodedImage
from visage.engine.quality import QUALITY_BARS


def test_blur_lowers_sharpness_and_darkening_lowers_brightness(engine: Engine, portraits: Path) -> None:
    image = engine.decode((portraits / "person_b_1.jpg").read_bytes())
    (face,) = engine.detect_faces(image)
    assert face.quality.sharpness >= 80
    width = face.bounding_box.width * image.width
    blurred = DecodedImage.from_array(cv2.GaussianBlur(image.rgb, (0, 0), 0.03 * width))
    (soft,) = engine.detect_faces(blurred)
    assert soft.quality.sharpness < 40
    dark = DecodedImage.from_array((image.rgb * 0.4).astype(np.uint8))
    (dim,) = engine.detect_faces(dark)
    assert dim.quality.brightness < 0.5 * face.quality.brightness


def test_quality_bars_get_stricter() -> None:
    low, medium, high = QUALITY_BARS["LOW"], QUALITY_BARS["MEDIUM"], QUALITY_BARS["HIGH"]
    assert low.min_confidence <= medium.min_confidence <= high.min_confidence
    assert low.min_face_pixels <= medium.min_face_pixels <= high.min_face_pixels
    assert low.max_yaw >= medium.max_yaw >= high.max_yaw
    assert low.min_sharpness <= medium.min_sharpness <= high.min_sharpness
    assert QUALITY_BARS["AUTO"] == medium
