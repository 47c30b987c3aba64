"""Image validation: formats, limits, bombs, EXIF orientation, minimum size."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from visage.config import Settings
from visage.engine import Engine
from visage.engine.images import decode_image
from visage.errors import ImageTooLargeException, InvalidImageFormatException, InvalidParameterException

from .conftest import encode


def test_jpeg_and_png_decode_to_the_same_rgb(astronaut_rgb: np.ndarray) -> None:
    png = decode_image(encode(astronaut_rgb, "PNG"))
    assert png.format == "PNG"
    assert np.array_equal(png.rgb, astronaut_rgb)
    jpeg = decode_image(encode(astronaut_rgb, "JPEG", quality=95))
    assert jpeg.format == "JPEG" and jpeg.rgb.shape == astronaut_rgb.shape
    assert np.abs(jpeg.rgb.astype(int) - astronaut_rgb).mean() < 3


def test_rgba_png_and_grayscale_jpeg_become_rgb(astronaut_rgb: np.ndarray) -> None:
    rgba = np.dstack([astronaut_rgb, np.full(astronaut_rgb.shape[:2], 255, np.uint8)])
    assert decode_image(encode(rgba, "PNG")).rgb.shape == astronaut_rgb.shape
    gray = astronaut_rgb.mean(axis=2).astype(np.uint8)
    assert decode_image(encode(gray, "JPEG")).rgb.shape == astronaut_rgb.shape


def test_exif_orientation_is_applied(astronaut_rgb: np.ndarray) -> None:
    # Store the pixels rotated and say so in EXIF (6 = rotate 90 degrees clockwise to view).
    stored = np.ascontiguousarray(np.rot90(astronaut_rgb, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", quality=95, exif=exif)
    upright = decode_image(buffer.getvalue()).rgb
    assert upright.shape == astronaut_rgb.shape
    assert np.abs(upright.astype(int) - astronaut_rgb).mean() < 3


def test_empty_bytes() -> None:
    with pytest.raises(InvalidImageFormatException, match="empty"):
        decode_image(b"")


def test_garbage_bytes_say_what_they_start_with() -> None:
    with pytest.raises(InvalidImageFormatException, match="not a PNG or JPEG"):
        decode_image(b"hello, this is not an image at all")


def test_gif_is_named(astronaut_rgb: np.ndarray) -> None:
    with pytest.raises(InvalidImageFormatException, match="GIF"):
        decode_image(encode(astronaut_rgb, "GIF"))


def test_truncated_jpeg(astronaut_jpeg: bytes) -> None:
    with pytest.raises(InvalidImageFormatException, match="truncated or corrupt"):
        decode_image(astronaut_jpeg[: len(astronaut_jpeg) // 2])


def test_six_megabyte_image_is_too_large() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1400, 3), dtype=np.uint8)
    data = encode(noise, "PNG")
    assert len(data) > 6_000_000
    with pytest.raises(ImageTooLargeException, match="5,242,880"):
        decode_image(data)
    # The limit is a setting.
    assert decode_image(data, Settings(max_image_bytes=10_000_000)).width == 1400


def test_the_engine_decodes_under_its_settings_or_a_given_byte_limit(astronaut_jpeg: bytes) -> None:
    engine = Engine(Settings(max_image_bytes=len(astronaut_jpeg) - 1))  # loads no model
    with pytest.raises(ImageTooLargeException, match=f"{len(astronaut_jpeg) - 1:,} bytes"):
        engine.decode(astronaut_jpeg)
    assert engine.decode(astronaut_jpeg, max_bytes=len(astronaut_jpeg)).width == 512  # as for S3 images


def _png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims width x height: a decompression bomb's header."""
    raw = encode(np.zeros((1, 1, 3), np.uint8), "PNG")
    ihdr_start = 8 + 8  # signature, then length + "IHDR"
    body = struct.pack(">II", width, height) + raw[ihdr_start + 8 : ihdr_start + 13]
    chunk = b"IHDR" + body
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return raw[:8] + struct.pack(">I", len(body)) + chunk + crc + raw[ihdr_start + 17 :]


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png_claiming(60_000, 60_000)
    assert len(bomb) < 1000
    with pytest.raises(ImageTooLargeException, match="pixels"):
        decode_image(bomb)


def test_image_below_minimum_size(astronaut_rgb: np.ndarray) -> None:
    small = np.ascontiguousarray(astronaut_rgb[:60, :60])
    with pytest.raises(InvalidParameterException, match="at least 80 pixels"):
        decode_image(encode(small, "PNG"))
