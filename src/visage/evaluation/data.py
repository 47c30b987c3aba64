"""Where the labelled evaluation data lives (``VISAGE_EVAL_DATA``, default ``../shared/eval``)."""

from __future__ import annotations

import os
from pathlib import Path


def eval_data_dir() -> Path:
    return Path(os.environ.get("VISAGE_EVAL_DATA", "../shared/eval")).expanduser()
