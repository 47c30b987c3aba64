"""Brightness and Sharpness follow the image, and the QualityFilter bars are ordered."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from visage.engine import Engine
from visage.engine.images import DecodedImage
from visage.engine.quality import QUALITY_BARS, face_crop, measure_quality, quality_filter_reasons
from visage.faces import BoundingBox, FaceDetail, Pose, Quality


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


# QualityFilter at each bar's edges: a face exactly at a bar passes, a hair beyond fails for that reason alone.

IMAGE = (1000, 800)  # width, height in pixels


def detail(
    confidence: float = 99.0,
    side: float = 200.0,
    yaw: float = 0.0,
    pitch: float = 0.0,
    brightness: float = 50.0,
    sharpness: float = 60.0,
    wide: bool = True,
) -> FaceDetail:
    """A face whose shorter box side is ``side`` pixels (the width when not ``wide``)."""
    width, height = (side * 1.5, side) if wide else (side, side * 1.5)
    return FaceDetail(
        bounding_box=BoundingBox(0.1, 0.1, width / IMAGE[0], height / IMAGE[1]),
        confidence=confidence,
        landmarks=(),
        pose=Pose(roll=0.0, yaw=yaw, pitch=pitch),
        quality=Quality(brightness=brightness, sharpness=sharpness),
    )


def reasons(face: FaceDetail, level: str) -> list[str]:
    return quality_filter_reasons(face, level, *IMAGE)


@pytest.mark.parametrize("level", ["LOW", "MEDIUM", "AUTO", "HIGH"])
def test_each_bar_passes_at_its_edge_and_fails_beyond_it(level: str) -> None:
    bar = QUALITY_BARS[level]
    at_edges = dict(
        confidence=bar.min_confidence,
        side=bar.min_face_pixels,
        yaw=bar.max_yaw,
        pitch=bar.max_pitch,
        sharpness=bar.min_sharpness,
    )
    for key, value in at_edges.items():
        assert reasons(detail(**{key: value}), level) == [], (level, key)
    assert reasons(detail(yaw=-bar.max_yaw, pitch=-bar.max_pitch), level) == []
    assert reasons(detail(brightness=bar.min_brightness), level) == []
    assert reasons(detail(brightness=bar.max_brightness), level) == []
    assert reasons(detail(side=bar.min_face_pixels, wide=False), level) == []
    eps = 1e-6
    beyond = {
        "SMALL_BOUNDING_BOX": [
            detail(side=bar.min_face_pixels - 0.01),
            detail(side=bar.min_face_pixels - 0.01, wide=False),
        ],
        "LOW_CONFIDENCE": [detail(confidence=bar.min_confidence - eps)],
        "EXTREME_POSE": [
            detail(yaw=bar.max_yaw + eps),
            detail(yaw=-bar.max_yaw - eps),
            detail(pitch=bar.max_pitch + eps),
            detail(pitch=-bar.max_pitch - eps),
        ],
        "LOW_BRIGHTNESS": [detail(brightness=bar.min_brightness - eps), detail(brightness=bar.max_brightness + eps)],
        "LOW_SHARPNESS": [detail(sharpness=bar.min_sharpness - eps)],
    }
    for reason, faces in beyond.items():
        for face in faces:
            assert reasons(face, level) == [reason], (level, reason, face)


def test_every_reason_at_once_in_rekognitions_order() -> None:
    worst = detail(confidence=10.0, side=5.0, yaw=89.0, brightness=1.0, sharpness=0.0)
    assert reasons(worst, "LOW") == [
        "SMALL_BOUNDING_BOX",
        "LOW_CONFIDENCE",
        "EXTREME_POSE",
        "LOW_BRIGHTNESS",
        "LOW_SHARPNESS",
    ]
    assert reasons(worst, "NONE") == []


def test_the_bars_are_the_documented_ones() -> None:
    """docs/engine.md's table; a changed bar must change the doc too."""
    table = {
        "LOW": (80, 20, 75, 60, 8, 98, 3),
        "MEDIUM": (85, 32, 60, 45, 12, 96, 8),
        "HIGH": (90, 64, 40, 30, 20, 92, 25),
    }
    for level, values in table.items():
        bar = QUALITY_BARS[level]
        assert (
            bar.min_confidence,
            bar.min_face_pixels,
            bar.max_yaw,
            bar.max_pitch,
            bar.min_brightness,
            bar.max_brightness,
            bar.min_sharpness,
        ) == values
    doc = (Path(__file__).resolve().parent.parent / "docs" / "engine.md").read_text()
    assert "| LOW | 80 | 20 | 75 | 60 | 8–98 | 3 |" in doc and "| HIGH | 90 | 64 | 40 | 30 | 20–92 | 25 |" in doc


def test_brightness_and_sharpness_on_known_pictures() -> None:
    flat = np.full((200, 200), 128, dtype=np.uint8)
    box = np.array([50.0, 50.0, 100.0, 100.0])
    quality = measure_quality(flat, box)
    assert quality.brightness == pytest.approx(100 * 128 / 255, abs=1e-3) and quality.sharpness == 0.0
    assert measure_quality(np.zeros((200, 200), dtype=np.uint8), box).brightness == 0.0
    checkers = ((np.indices((200, 200)).sum(axis=0) // 4) % 2 * 255).astype(np.uint8)
    sharp = measure_quality(checkers, box)
    assert sharp.sharpness > 99 and sharp.brightness == pytest.approx(50, abs=3)
    soft = measure_quality(cv2.GaussianBlur(checkers, (0, 0), 3), box)
    assert soft.sharpness < sharp.sharpness
    # Only the box is measured; a box past the edge is clipped, an empty one measures nothing.
    half = flat.copy()
    half[:, 100:] = 0
    assert measure_quality(half, np.array([0.0, 0.0, 100.0, 200.0])).brightness == pytest.approx(50.196, abs=1e-3)
    assert measure_quality(half, np.array([150.0, 0.0, 100.0, 300.0])).brightness == 0.0
    assert measure_quality(half, np.array([300.0, 300.0, 10.0, 10.0])) == Quality(0.0, 0.0)
    # The same face at twice the size scores the same sharpness (it is measured at 112 px wide).
    small = cv2.resize(checkers, (100, 100), interpolation=cv2.INTER_AREA)
    assert measure_quality(small, np.array([25.0, 25.0, 50.0, 50.0])).sharpness == pytest.approx(
        measure_quality(checkers, box).sharpness, abs=5
    )


# The documented method by hand (module docstring of visage.engine.quality), on given pixels.


def documented_quality(face: np.ndarray) -> Quality:
    """Brightness 100 * mean / 255; Sharpness 100 * (1 - exp(-V / 100)), V the Laplacian variance at 112 px wide."""
    brightness = 100.0 * float(face.mean()) / 255.0
    height = max(1, round(112 * face.shape[0] / face.shape[1]))  # the face's aspect ratio, at least one row
    resized = cv2.resize(face, (112, height), interpolation=cv2.INTER_AREA)
    variance = float(cv2.Laplacian(resized, cv2.CV_64F).var())
    sharpness = 100.0 * (1.0 - np.exp(-variance / 100.0))
    return Quality(brightness=round(brightness, 4), sharpness=round(sharpness, 4))


def test_a_detected_face_scores_the_documented_quality_of_its_box(engine: Engine, portraits: Path) -> None:
    """What a client reads in Quality is the documented method on the pixels of the face's BoundingBox."""
    image = engine.decode((portraits / "person_b_1.jpg").read_bytes())
    (face,) = engine.detect_faces(image)
    x, y, w, h = face.bounding_box.to_pixels(image.width, image.height)
    gray = cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY)
    pixels = gray[int(np.floor(y)) : int(np.ceil(y + h)), int(np.floor(x)) : int(np.ceil(x + w))]
    assert face.quality == documented_quality(pixels)
    for value in (face.quality.brightness, face.quality.sharpness):
        assert 0 < value < 100 and value == round(value, 4)


# Boxes (x, y, w, h) on a 716x900 portrait and the pixels they measure: from floor(x) to ceil(x + w),
# clipped to the image, and at least one pixel each way.
BOXES = {
    "inside, taller than wide": ((100.5, 200.25, 80.0, 150.0), slice(200, 351), slice(100, 181)),
    "cut by the left and top edges": ((-10.5, -20.0, 60.0, 90.0), slice(0, 70), slice(0, 50)),
    "starting at the corner": ((0.0, 0.0, 40.0, 60.0), slice(0, 60), slice(0, 40)),
    "past the right and bottom edges": ((650.0, 800.0, 100.0, 200.0), slice(800, 900), slice(650, 716)),
    "a few pixels": ((300.0, 400.0, 2.0, 3.0), slice(400, 403), slice(300, 302)),
    "one pixel": ((300.0, 400.0, 1.0, 1.0), slice(400, 401), slice(300, 301)),
    "zero width": ((300.0, 400.0, 0.0, 30.0), slice(400, 430), slice(300, 301)),
    "zero height": ((300.0, 400.0, 30.0, 0.0), slice(400, 401), slice(300, 330)),
    "two rows across the face": ((100.0, 300.0, 500.0, 2.0), slice(300, 302), slice(100, 600)),
}


@pytest.mark.parametrize("name", list(BOXES))
def test_quality_is_measured_on_exactly_the_boxs_pixels(name: str, portraits: Path) -> None:
    box, rows, cols = BOXES[name]
    gray = cv2.cvtColor(cv2.imread(str(portraits / "person_b_1.jpg")), cv2.COLOR_BGR2GRAY)
    assert gray.shape == (900, 716)
    crop = face_crop(gray, np.array(box))
    assert crop.shape == gray[rows, cols].shape and np.array_equal(crop, gray[rows, cols])
    assert measure_quality(gray, np.array(box)) == documented_quality(gray[rows, cols])


def test_brightness_and_sharpness_top_out_at_100() -> None:
    """Rekognition's scale is 0-100: a white face is 100 bright, a checkerboard 100 sharp, never more."""
    box = np.array([50.0, 50.0, 100.0, 100.0])
    assert measure_quality(np.full((200, 200), 255, dtype=np.uint8), box).brightness == 100.0
    checkers = ((np.indices((200, 200)).sum(axis=0) // 4) % 2 * 255).astype(np.uint8)
    assert measure_quality(checkers, box).sharpness == 100.0
