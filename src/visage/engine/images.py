"""Image bytes in, a validated RGB array out.

Owns everything Visage accepts or refuses about an input image: the byte limit,
the formats (PNG and JPEG, as Rekognition), the pixel limit checked from the
header before any pixel is decoded (decompression bombs), truncated or corrupt
files, EXIF orientation, and the minimum size. The other layers decode through
:meth:`Engine.decode <visage.engine.engine.Engine.decode>`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visage.config import Settings
from visage.errors import (
    INVALID_PARAMETERS,
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
    rekognition_message,
)

_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, ready for the engine."""

    rgb: np.ndarray = field(repr=False)  # H x W x 3, uint8, C-contiguous
    format: str  # "JPEG" or "PNG"

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @classmethod
    def from_array(cls, rgb: np.ndarray) -> DecodedImage:
        """Wrap an RGB uint8 array that did not come from bytes (tests, video frames)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InvalidParameterException("expected an H x W x 3 uint8 RGB array")
        return cls(rgb=np.ascontiguousarray(rgb), format="RAW")


def decode_image(data: bytes, settings: Settings | None = None, max_bytes: int | None = None) -> DecodedImage:
    """Decode PNG or JPEG bytes into an upright RGB image, or raise a named error.

    ``max_bytes`` overrides the settings' byte limit (images read from S3 may be larger).
    """
    settings = settings or Settings()
    max_bytes = max_bytes or settings.max_image_bytes
    if not data:
        raise InvalidImageFormatException("The image is empty (0 bytes); send PNG or JPEG bytes.")
    if len(data) > max_bytes:
        raise ImageTooLargeException(too_many_bytes(len(data), max_bytes, max_bytes < settings.max_s3_image_bytes))
    kind = _sniff(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[kind])
        except Image.DecompressionBombError as error:
            raise ImageTooLargeException(f"The image has too many pixels: {error}") from error
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise InvalidImageFormatException(f"The {kind} image could not be read: {error}") from error
        width, height = image.size
        if width * height > settings.max_image_pixels:
            raise ImageTooLargeException(
                f"The image is {width}x{height} = {width * height:,} pixels; the limit is "
                f"{settings.max_image_pixels:,}. Downscale it before sending."
            )
        try:
            image.load()
            rgb = np.asarray(_to_rgb(ImageOps.exif_transpose(image)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise InvalidImageFormatException(
                f"The {kind} image is truncated or corrupt and could not be decoded: {error}"
            ) from error
    if min(rgb.shape[:2]) < settings.min_image_side:
        raise InvalidParameterException(
            rekognition_message(
                INVALID_PARAMETERS,
                f"The image is {rgb.shape[1]}x{rgb.shape[0]} pixels; both sides must be at least "
                f"{settings.min_image_side} pixels.",
            )
        )
    return DecodedImage(rgb=np.ascontiguousarray(rgb), format=kind)


def too_many_bytes(size: int, limit: int, s3_takes_more: bool = True) -> str:
    """The refusal of an image over the byte limit, the same from the server (for ``Image.Bytes``,
    which the protocol checks first) and the command line."""
    message = f"The image is {size:,} bytes; the limit is {limit:,} bytes. Resize or recompress it"
    if s3_takes_more:
        message += ", or have the server read it as Image.S3Object, which takes larger images"
    return message + "."


def image_format(data: bytes) -> str | None:
    """ "JPEG" or "PNG" when ``data`` starts like one, else None."""
    return next((kind for signature, kind in _SIGNATURES.items() if data.startswith(signature)), None)


def _sniff(data: bytes) -> str:
    kind = image_format(data)
    if kind is not None:
        return kind
    found = _identify(data)
    if found:
        raise InvalidImageFormatException(f"The image is {found}; only PNG and JPEG are supported. Convert it first.")
    raise InvalidImageFormatException(
        f"The data is not a PNG or JPEG image (it starts with {data[:8].hex(' ')}); only PNG and JPEG are supported."
    )


def _identify(data: bytes) -> str | None:
    """Name the format of an image Visage does not take, if Pillow can tell."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data)).format
    except Exception:
        return None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as most viewers show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit samples: keep the 8 high bits.
        array = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")
