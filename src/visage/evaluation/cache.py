"""A disk cache of what the engine found in each evaluation image.

Evaluations run the same 13,000 LFW images (and the UTKFace and FairFace faces)
through the engine again and again; each result is kept under
``VISAGE_EVAL_CACHE`` (default ``~/.cache/visage/eval``). A cached entry is exactly
what :meth:`Engine.analyze` returned, so results do not depend on whether the cache
was warm, provided the key holds everything the results depend on. It does:

- the face model version, the attributes asked for and the settings that change results;
- :func:`code_digest`: the source of every module that analysis runs (the whole engine
  package, alignment, embedding and SFace's graph rewrite included, and the modules it
  imports from the rest of Visage: :data:`ANALYSIS_MODULES`), the SHA-256 of every model
  file (the engine checks each file against it before loading), and the versions of the
  libraries that run the models (:data:`LIBRARIES`);
- the image's path, size and modification time.

tests/test_cache.py checks that an analysis imports no Visage module outside
:data:`ANALYSIS_MODULES`. Delete the folder to start afresh.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from visage.engine import Engine
from visage.faces import Face


def cache_dir() -> Path:
    return Path(os.environ.get("VISAGE_EVAL_CACHE", "~/.cache/visage/eval")).expanduser()


#: Every Visage module an analysis runs (the engine package is taken whole).
ANALYSIS_MODULES = ("visage", "visage.config", "visage.contract", "visage.errors", "visage.faces")
#: The data files the engine reads besides the model files (the fusion model's weights).
_ENGINE_DATA = ("fusion.json",)
#: Distributions whose code runs the models: a new release may change the vectors.
LIBRARIES = ("opencv-python-headless", "onnxruntime", "onnx", "dlib-bin", "numpy", "pillow")
#: Settings that change results (not, say, the data dir or the thread count).
_RESULT_SETTINGS = (
    "max_image_pixels",
    "min_image_side",
    "detection_threshold",
    "detection_base_side",
    "detection_max_side",
    "max_faces",
    "landmarks",
)


def analysis_sources() -> list[Path]:
    """The source files of everything an analysis runs: the engine package and :data:`ANALYSIS_MODULES`."""
    import visage.engine

    engine_package = Path(visage.engine.__file__).parent
    modules = [Path(importlib.import_module(name).__file__ or "") for name in ANALYSIS_MODULES]
    return sorted(engine_package.glob("*.py")) + modules


def code_digest(sources: list[Path] | None = None) -> str:
    """SHA-256 of the analysis code (``sources``, default :func:`analysis_sources`), the
    model files and the libraries that run them."""
    from visage.engine import bundled

    digest = hashlib.sha256()
    for path in analysis_sources() if sources is None else sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    data = Path(bundled.__file__).parent.parent / "data"
    for name in _ENGINE_DATA:
        digest.update((data / name).read_bytes())
    for name, model in sorted(vars(bundled).items()):
        if isinstance(model, bundled.ModelFile):
            digest.update(f"{name}:{model.relative_path}={model.sha256}".encode())
    for library in LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)}".encode())
    return digest.hexdigest()


class AnalysisCache:
    def __init__(self, engine: Engine, model: str, attributes: tuple[str, ...] = (), root: Path | None = None) -> None:
        self.engine, self.model, self.attributes = engine, model, tuple(sorted(attributes))
        face_model = engine.face_model(model)
        settings = engine.settings
        what = (
            face_model.version,
            self.attributes,
            [getattr(settings, name) for name in _RESULT_SETTINGS],
            code_digest(),
        )
        tag = hashlib.sha1(repr(what).encode()).hexdigest()[:12]
        self.folder = (root or cache_dir()) / f"{face_model.version}-{tag}"
        self.folder.mkdir(parents=True, exist_ok=True)

    def _entry(self, path: Path) -> Path:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.pkl"

    def faces(self, path: Path) -> list[Face]:
        """The engine's faces (with embeddings) for one image file, computed once."""
        entry = self._entry(path)
        if entry.exists():
            with entry.open("rb") as handle:
                return pickle.load(handle)
        faces = self.engine.analyze(path.read_bytes(), attributes=self.attributes or None, model=self.model, embed=True)
        temporary = entry.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            pickle.dump(faces, handle)
        os.replace(temporary, entry)
        return faces

    def many(self, paths: Iterable[Path], threads: int = 2) -> dict[Path, list[Face]]:
        unique = sorted(set(paths))
        with ThreadPoolExecutor(threads) as pool:
            return dict(zip(unique, pool.map(self.faces, unique)))
