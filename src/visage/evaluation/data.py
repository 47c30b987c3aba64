"""Where the labelled evaluation data lives (``VISAGE_EVAL_DATA``, default ``../shared/eval``)."""

from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "VISAGE_EVAL_DATA"
DEFAULT = "../shared/eval"


class EvaluationDataMissing(FileNotFoundError):
    """A folder of evaluation data is not where ``VISAGE_EVAL_DATA`` says; the message is one line."""


def eval_data_dir() -> Path:
    return Path(os.environ.get(VARIABLE, DEFAULT)).expanduser()


def require_eval_data(*folders: str, root: Path | None = None) -> Path:
    """The evaluation data folder (``root``, else ``VISAGE_EVAL_DATA``), checked to hold ``folders``;
    :class:`EvaluationDataMissing` names the variable and the folder it looked in."""
    base = root or eval_data_dir()
    missing = [name for name in folders if not (base / name).is_dir()]
    if missing or not base.is_dir():
        where = (
            "given with --data"
            if root is not None
            else (f"{VARIABLE}={os.environ[VARIABLE]}" if VARIABLE in os.environ else f"{VARIABLE} unset, so {DEFAULT}")
        )
        found = "does not exist" if not base.is_dir() else f"has no {', '.join(f'{m}/' for m in missing)}"
        raise EvaluationDataMissing(
            f"no evaluation data: {base.resolve()} ({where}) {found}; set {VARIABLE} to the folder that holds "
            f"{', '.join(f'{f}/' for f in folders)}"
        )
    return base
