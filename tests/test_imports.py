"""Importing any part of visage, in any order, must not crash the interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "statement",
    [
        "import visage.store.vector_index; import onnxruntime",
        "from visage.store.sqlite import SQLiteStore; from visage import Engine",
        "import visage.cli",
    ],
)
def test_import_order_is_safe(statement: str) -> None:
    result = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{statement!r} exited with {result.returncode}: {result.stderr[-2000:]}"
