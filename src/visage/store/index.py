"""The approximate index of one big collection's vectors: a 4-bit product-quantised scan (faiss).

Used by the embedded store once a collection is too big for exact search to stay
fast. Each vector is cut into pairs of dimensions and each pair stored as one of 16
centroids (4 bits), learnt from the collection's own vectors when the index is built:
32 bytes a 128-d face, plus its 8-byte key, so 20 million faces take 0.8 GB. A search
scores every code with faiss's SIMD "fast scan" (lookup tables held in registers) and
proposes the best; the store then re-scores the candidates exactly from the float32
vectors it keeps, so quantisation never changes a returned score, only, rarely, which
faces are proposed.

The codes are split into shards, one per core, that share the codebook and are
scanned at once (``faiss.IndexShards``, which merges their answers): one core scans
about 8 GB of codes a second, so at 20 million faces a query takes half as long on
two cores as on one.

Why a scan and not a graph: on real face queries against a million face-like vectors,
an HNSW graph (usearch, connectivity 32, expansion 512) missed the true best face for
3.8 % of queries, most of them real matches, at 8.7 ms a query; this scan, with 128
candidates re-scored, misses 0.2 % in a third of the time (docs/scale.md). A
match need not be close in absolute terms (SFace's Similarity 80 is a cosine of 0.47),
which is what a graph walk needs; a scan needs only that the match scores above the
crowd.

Keys are the store's integer row keys. The index knows which change of the store's
change log it has applied (``applied``), so a process can bring a saved index up to
date instead of rebuilding it.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

#: Largest error the 4-bit codes add to a cosine of unit vectors: measured 0.17 over
#: the 512 best candidates of 1,000 real queries against a million vectors, with margin.
QUANTISATION_MARGIN = 0.25
#: The codebook is learnt from the first this many vectors of the collection.
TRAINING_VECTORS = 100_000
_SUFFIX = ".faiss"
#: A save starts with this, then the number of shards, then each shard as faiss writes it.
_MAGIC = b"visage-pq-shards\n"


@dataclass
class Candidates:
    keys: np.ndarray  # int64
    scores: np.ndarray  # approximate cosine, float32


class VectorIndex:
    """Product-quantised codes of unit vectors, scored by inner product; thread-safe.

    The codebook is learnt from the first vectors added (up to ``TRAINING_VECTORS``
    of them: the store builds an index from the collection in batches of that size).
    ``shards`` defaults to the cores this process may use.
    """

    def __init__(self, applied: int = 0, shards: int | None = None) -> None:
        self.applied = applied  # the last change-log sequence number folded in
        self._wanted = shards or cores()
        self._use([])
        self._lock = threading.RLock()

    def _use(self, shards: list[faiss.IndexIDMap]) -> None:
        self._shards = shards
        self._scan = _scan(shards)

    @property
    def dimension(self) -> int:
        return int(self._scan.d)

    @property
    def shards(self) -> int:
        return len(self._shards)

    def __len__(self) -> int:
        return int(self._scan.ntotal)

    @property
    def memory_bytes(self) -> int:
        """Codes and keys (the codebook and lookup tables are a few kilobytes)."""
        return len(self) * (self.dimension // 4 + 8)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Adds faces by key, to the smallest shard; a key must not be in the index already
        (the store's change log applies each face's insertion once)."""
        if len(keys) == 0:
            return
        with self._lock:
            if not self._shards:
                codes = _trained(vectors[:TRAINING_VECTORS])
                self._use([faiss.IndexIDMap(faiss.clone_index(codes)) for _ in range(self._wanted)])
            smallest = min(self._shards, key=lambda shard: shard.ntotal)
            smallest.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(keys, dtype=np.int64))
            self._scan.syncWithSubIndexes()

    def remove(self, keys: np.ndarray) -> None:
        """Removes these keys (those not in the index are ignored); one pass over the codes."""
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.int64)
        with self._lock:
            for shard in self._shards:
                shard.remove_ids(keys)
            self._scan.syncWithSubIndexes()

    def search(self, query: np.ndarray, count: int, min_score: float) -> Candidates:
        """Up to ``count`` best keys by approximate score, keeping only those that may reach
        ``min_score``.

        Widens the search while every candidate found is still above the bar, so a
        generous ``count`` (4,096) costs little when few faces are close.
        """
        query = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        with self._lock:
            size = len(self)
            if size == 0 or count <= 0:
                return Candidates(np.empty(0, np.int64), np.empty(0, np.float32))
            k = min(count, size, 256)
            while True:
                scores, keys = self._scan.search(query, k)
                scores, keys = scores[0], keys[0]
                if k >= min(count, size) or scores[-1] < min_score - QUANTISATION_MARGIN:
                    break
                k = min(count, size, k * 4)
        keep = (keys >= 0) & (scores >= min_score - QUANTISATION_MARGIN)
        return Candidates(keys[keep], scores[keep])  # faiss answers int64 keys, float32 scores

    def save(self, folder: Path, name: str) -> Path:
        """Write ``<folder>/<name>.<applied>.faiss`` atomically and drop older saves of ``name``.

        The applied change number is in the file name, so a file and what it has applied
        can never disagree, whenever the process stops.
        """
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not len(self):
                raise ValueError("An index with no vectors has nothing to save")
            applied = self.applied
            path = folder / f"{name}.{applied}{_SUFFIX}"
            temporary = folder / f"{name}.{applied}.{os.getpid()}.tmp"
            with open(temporary, "wb") as file:
                file.write(_MAGIC + struct.pack("<I", len(self._shards)))
                writer = faiss.PyCallbackIOWriter(file.write)
                for shard in self._shards:
                    faiss.write_index(shard, writer)
                del writer  # flushes
        os.replace(temporary, path)
        for old in _saves(folder, name):
            if old[0] < applied:
                old[1].unlink(missing_ok=True)
        for graph in folder.glob(f"{name}.*.usearch"):  # the HNSW index of earlier versions
            graph.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, folder: Path, name: str) -> VectorIndex | None:
        """The newest saved index of ``name``, or None if there is none readable (rebuild)."""
        for applied, path in sorted(_saves(folder, name), reverse=True):
            shards = _read_shards(path)
            if shards:
                index = cls(applied=applied, shards=len(shards))
                index._use(shards)
                return index
        return None

    @staticmethod
    def discard(folder: Path, name: str) -> None:
        for _, path in _saves(folder, name):
            path.unlink(missing_ok=True)


def cores() -> int:
    """The cores this process may run on: the default number of shards."""
    return len(os.sched_getaffinity(0))


def _scan(shards: list[faiss.IndexIDMap]) -> faiss.IndexShards:
    """One search over all shards, each scanned by its own thread, answers merged."""
    scan = faiss.IndexShards(shards[0].d if shards else 0, True, False)  # threaded; keys are the shards' own
    for shard in shards:
        scan.add_shard(shard)
    return scan


def _read_shards(path: Path) -> list[faiss.IndexIDMap] | None:
    """The shards saved in ``path``, or None if it is not a whole save of this version."""
    try:
        with open(path, "rb") as file:
            if file.read(len(_MAGIC)) != _MAGIC:
                return None
            (count,) = struct.unpack("<I", file.read(4))
            reader = faiss.PyCallbackIOReader(file.read)
            shards = [faiss.read_index(reader) for _ in range(count)]
            if file.read(1) or not shards or not all(isinstance(s, faiss.IndexIDMap) for s in shards):
                return None
    except (OSError, ValueError, RuntimeError, struct.error):
        return None
    return shards


def _trained(sample: np.ndarray) -> faiss.IndexPQFastScan:
    """Empty codes whose codebook (16 centroids per pair of dimensions) is learnt from
    ``sample``, unit vectors one per row."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dimension = sample.shape[1]
    if dimension % 2:
        raise ValueError(f"Vectors of {dimension} dimensions: the index codes pairs of dimensions")
    codes = faiss.IndexPQFastScan(dimension, dimension // 2, 4, faiss.METRIC_INNER_PRODUCT)
    codes.train(_at_least(sample, 16))
    return codes


def _at_least(sample: np.ndarray, rows: int) -> np.ndarray:
    """The sample repeated up to ``rows`` rows: k-means needs as many points as centroids
    (only a collection made exact-search-sized by configuration is ever this small)."""
    return sample if len(sample) >= rows else np.resize(sample, (rows, sample.shape[1]))


def _saves(folder: Path, name: str) -> list[tuple[int, Path]]:
    out = []
    for path in folder.glob(f"{name}.*{_SUFFIX}"):
        middle = path.name[len(name) + 1 : -len(_SUFFIX)]
        if middle.isdigit():
            out.append((int(middle), path))
    return out
