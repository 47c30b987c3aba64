"""Shared fixtures: the engine (loaded once), real images, and the evaluation data folder.

Tests that need ``VISAGE_EVAL_DATA`` (default ``../shared/eval``) skip with the
reason when it is absent, except under ``CI=true``, where its absence fails them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from visage.engine import Engine
from visage.evaluation.data import eval_data_dir


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set VISAGE_EVAL_DATA to the shared eval folder)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"under CI the evaluation data must be present: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def eval_data() -> Path:
    return _require(eval_data_dir(), "evaluation data folder")


@pytest.fixture(scope="session")
def portraits(eval_data: Path) -> Path:
    return _require(eval_data / "portraits", "portraits folder")


@pytest.fixture(scope="session")
def lfw(eval_data: Path) -> Path:
    return _require(eval_data / "lfw", "LFW folder")


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


def encode(rgb: np.ndarray, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_rgb: np.ndarray) -> bytes:
    return encode(astronaut_rgb, "JPEG", quality=95)
