"""An approximate nearest-neighbour index over one collection's vectors (HNSW, usearch).

Used by the embedded store once a collection is too big for exact search to stay
fast. Vectors are held as int8 (each unit-vector component times 127): 128 bytes
per 128-d face, plus the graph (connectivity 32: 64 links of 4 bytes on the base
layer), so 20 million faces are at best at the edge of 8 GiB (docs/scale.md). The index
only proposes candidates; the store re-scores them exactly from the float32 vectors
it keeps, so quantisation never changes a returned score, only, rarely, which faces
are proposed.

The settings are chosen by ``benchmarks/hnsw_settings.py`` on real face vectors
(docs/scale.md): the graph's connectivity decides recall, the storage barely does.

Keys are the store's integer row keys. The index knows which change of the
store's change log it has applied (``applied``), so a process can bring a saved
index up to date instead of rebuilding it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

CONNECTIVITY = 32  # HNSW "M"
EXPANSION_ADD = 128  # HNSW "efConstruction"
MIN_EXPANSION_SEARCH = 512  # HNSW "ef": at least this, and at least twice the results asked for
#: Largest error int8 storage adds to a cosine of unit vectors (measured bound, with margin).
QUANTISATION_MARGIN = 0.03


@dataclass
class Candidates:
    keys: np.ndarray  # int64
    scores: np.ndarray  # approximate cosine, float32


class VectorIndex:
    """HNSW over unit vectors with cosine similarity; thread-safe."""

    def __init__(self, dimension: int, applied: int = 0, index: Index | None = None) -> None:
        self.dimension = dimension
        self.applied = applied  # the last change-log sequence number folded in
        self._index = index or Index(
            ndim=dimension, metric="cos", dtype="i8", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD
        )
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._index)

    @property
    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys) == 0:
            return
        with self._lock:
            present = np.array([k in self._index for k in keys.tolist()], dtype=bool) if len(self._index) else None
            if present is not None and present.any():
                self._index.remove(keys[present])
            # One thread: usearch 2.26's parallel insertion leaves some nodes unreachable
            # (measured: the exact nearest neighbour missing from the top 64 for up to 1 % of
            # queries on 1,200 clustered vectors, never with one thread; upstream issue
            # unum-cloud/USearch#735, fix proposed in #772).
            self._index.add(keys, np.ascontiguousarray(vectors, dtype=np.float32), threads=1)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys) == 0:
            return
        with self._lock:
            present = [k for k in keys.tolist() if k in self._index]
            if present:
                self._index.remove(np.array(present, dtype=np.int64))

    def search(self, query: np.ndarray, count: int, min_score: float) -> Candidates:
        """Up to ``count`` nearest keys, keeping only those that may reach ``min_score``.

        Widens the search while every candidate found is still above the bar, so a
        generous ``count`` (4,096) costs little when few faces are close.
        """
        with self._lock:
            size = len(self._index)
            if size == 0 or count <= 0:
                return Candidates(np.empty(0, np.int64), np.empty(0, np.float32))
            k = min(count, size, 256)
            while True:
                self._index.expansion_search = max(MIN_EXPANSION_SEARCH, 2 * k)
                found = self._index.search(np.asarray(query, dtype=np.float32), k)
                keys = np.asarray(found.keys, dtype=np.int64)
                scores = 1.0 - np.asarray(found.distances, dtype=np.float32)
                if k >= min(count, size) or scores[-1] < min_score - QUANTISATION_MARGIN:
                    break
                k = min(count, size, k * 4)
        keep = scores >= min_score - QUANTISATION_MARGIN
        return Candidates(keys[keep], scores[keep])

    def save(self, folder: Path, name: str) -> Path:
        """Write ``<folder>/<name>.<applied>.usearch`` atomically and drop older saves of ``name``.

        The applied change number is in the file name, so a file and what it has applied
        can never disagree, whenever the process stops.
        """
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            applied = self.applied
            path = folder / f"{name}.{applied}.usearch"
            temporary = folder / f"{name}.{applied}.{os.getpid()}.tmp"
            self._index.save(str(temporary))
        os.replace(temporary, path)
        for old in _saves(folder, name):
            if old[0] < applied:
                old[1].unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, folder: Path, name: str) -> VectorIndex | None:
        """The newest saved index of ``name``, or None if there is none readable (rebuild)."""
        for applied, path in sorted(_saves(folder, name), reverse=True):
            try:
                index = Index.restore(str(path))
            except (OSError, ValueError, RuntimeError):
                index = None
            if index is not None:
                return cls(index.ndim, applied=applied, index=index)
        return None

    @staticmethod
    def discard(folder: Path, name: str) -> None:
        for _, path in _saves(folder, name):
            path.unlink(missing_ok=True)


def _saves(folder: Path, name: str) -> list[tuple[int, Path]]:
    out = []
    for path in folder.glob(f"{name}.*.usearch"):
        middle = path.name[len(name) + 1 : -len(".usearch")]
        if middle.isdigit():
            out.append((int(middle), path))
    return out
