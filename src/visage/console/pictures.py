"""What the console shows of an uploaded image: a downscaled copy, inline, with marks over it.

The console keeps no upload: a page that shows an image embeds a JPEG copy of it
(at most :data:`PREVIEW_SIDE` pixels on its long side) as a ``data:`` URI, and draws
boxes and landmarks over it in SVG, in that copy's pixels.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

from PIL import Image

from visage.engine import DecodedImage
from visage.faces import BoundingBox

#: Long side of the copy of an uploaded image that a page embeds, in pixels.
PREVIEW_SIDE = 1024
#: Side of the square crop that shows a probe face.
FACE_CROP_SIDE = 160


@dataclass(frozen=True)
class Mark:
    """A box to draw, in the picture's pixels, with its label, its kind (a CSS class) and points."""

    x: float
    y: float
    width: float
    height: float
    label: str
    kind: str
    points: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Picture:
    uri: str  # data:image/jpeg;base64,...
    width: int
    height: int
    marks: list[Mark] = field(default_factory=list)

    def mark(self, box: BoundingBox, label: str, kind: str, points: tuple[tuple[float, float], ...] = ()) -> Picture:
        """Adds a box (and landmarks) given in ratios of the image size, as Rekognition gives them."""
        w, h = self.width, self.height
        self.marks.append(
            Mark(
                box.left * w,
                box.top * h,
                box.width * w,
                box.height * h,
                label,
                kind,
                tuple((x * w, y * h) for x, y in points),
            )
        )
        return self

    def dot(self, mark: Mark) -> float:
        """Radius of a landmark's dot: small enough for 30 of them on a small face."""
        return max(0.8, min(self.font_size / 8, mark.width / 40))

    @property
    def font_size(self) -> float:
        """Label size in the picture's pixels, so that labels read the same at any size."""
        return max(14.0, max(self.width, self.height) / 40)


def preview(image: DecodedImage) -> Picture:
    """A copy of ``image`` at most :data:`PREVIEW_SIDE` pixels on its long side, to embed."""
    picture = Image.fromarray(image.rgb)
    picture.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR)
    return Picture(_jpeg_uri(picture, 85), picture.width, picture.height)


def face_crop(image: DecodedImage, box: BoundingBox) -> str:
    """A square crop around a face (its box and a margin), :data:`FACE_CROP_SIDE` pixels, as a data URI."""
    x, y, w, h = box.to_pixels(image.width, image.height)
    side = max(w, h) * 1.1  # about the framing of a kept thumbnail
    cx, cy = x + w / 2, y + h / 2
    left, top = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    right, bottom = min(image.width, int(cx + side / 2)), min(image.height, int(cy + side / 2))
    crop = Image.fromarray(image.rgb[top:bottom, left:right])
    crop.thumbnail((FACE_CROP_SIDE, FACE_CROP_SIDE), Image.Resampling.BILINEAR)
    return _jpeg_uri(crop, 90)


def jpeg_uri(data: bytes) -> str:
    """A data URI for JPEG bytes (a kept thumbnail)."""
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _jpeg_uri(picture: Image.Image, quality: int) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return jpeg_uri(buffer.getvalue())
