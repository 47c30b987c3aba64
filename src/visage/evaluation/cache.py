"""A disk cache of what the engine found in each evaluation image, per face model version.

Evaluations run the same 13,000 LFW images (and the UTKFace and FairFace faces)
through the engine again and again; each result is kept under
``VISAGE_EVAL_CACHE`` (default ``~/.cache/visage/eval``), keyed by the face model
version, the attributes asked for, the source of the engine's modules (so a code
change starts a fresh cache), and the image's path, size and modification time.
A cached entry is exactly what :meth:`Engine.analyze` returned, so results do not
depend on whether the cache was warm. Delete the folder to start afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from visage.engine import Engine
from visage.faces import Face


def cache_dir() -> Path:
    return Path(os.environ.get("VISAGE_EVAL_CACHE", "~/.cache/visage/eval")).expanduser()


#: Modules whose code decides what the engine finds; with the face model's class and the
#: engine's analysis methods, their source is part of the cache key.
_ENGINE_MODULES = ("images", "detection", "landmarks", "quality", "attributes", "bundled")
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


def _source_digest(model_class: type) -> str:
    import visage.engine as engine_module

    digest = hashlib.sha1()
    for name in _ENGINE_MODULES:
        digest.update((Path(engine_module.__file__).parent / f"{name}.py").read_bytes())
    for piece in (model_class, engine_module.Engine.analyze, engine_module.Engine._describe):
        digest.update(inspect.getsource(piece).encode())
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
            _source_digest(type(face_model)),
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
