"""The approximate index of one big collection's vectors: product-quantised scans (faiss).

Used by the embedded store once a collection is too big for exact search to stay
fast. Each face is held twice, compressed, with codebooks learnt from the
collection's own vectors when the index is built:

- a coarse code of 16 bytes (each group of 4 dimensions as one of 16 centroids,
  4 bits), which faiss scores with its SIMD "fast scan" (lookup tables held in
  registers); every search reads every coarse code;
- a fine code of 32 bytes (each group of 4 dimensions as one of 256 centroids),
  which re-scores the best coarse candidates, one per 600 faces between 2,048 and
  16,384 (``faiss.IndexRefine``).

With its 8-byte key that is 56 bytes a 128-d face: 20 million faces take 1.1 GB.
The store then re-scores the candidates exactly from the float32 vectors it keeps, so
quantisation never changes a returned score, only, rarely, which faces are proposed.

The codes are split into shards, one per core, that share the codebooks and are
scanned at once (``faiss.IndexShards``, which merges their answers). A search is bound
mostly by the bytes it reads: at 20 million faces the 16-byte codes on two cores, with
their re-scoring, take 31 ms, where the 32-byte codes of an earlier version took 81 ms
on one core (docs/scale.md).

Deletes leave a tombstone: the face is dropped from answers at once, and the codes are
rewritten (one ordered pass over each shard) when ``COMPACT_AFTER`` faces are dead, or
at a save, so only one delete in a thousand or so pays for a pass over the codes.

Why a scan and not a graph: on real face queries against a million face-like vectors,
an HNSW graph (usearch, connectivity 32, expansion 512) missed the true best face for
3.8 % of queries, most of them real matches, at 8.7 ms a query; a scan misses 0.2 % in
a third of the time (docs/scale.md). A match need not be close in absolute terms
(SFace's Similarity 80 is a cosine of 0.47), which is what a graph walk needs; a scan
needs only that the match scores above the crowd.

Keys are the store's integer row keys. The index knows which change of the store's
change log it has applied (``applied``), so a process can bring a saved index up to
date instead of rebuilding it.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

#: Largest error the codes add to a cosine of unit vectors, with margin (see
#: benchmarks/search_scale.py, which measures it: "largest score error").
QUANTISATION_MARGIN = 0.25
#: The codebooks are learnt from the first this many vectors of the collection.
TRAINING_VECTORS = 100_000
#: Coarse candidates re-scored with the fine codes: one per this many faces, within
#: the bounds below, and at least 4 per face asked for. The true best face ranks lower
#: among the coarse scores the more faces there are. Measured by search_scale.py: 2,048
#: candidates gave recall@1 0.997 at 1 million faces (ae0064e) but 0.990 at 10 million
#: (27c6da9), where 16,384 gave 0.998 (fbf5dc0).
FACES_PER_COARSE_CANDIDATE = 600
COARSE_CANDIDATES = (2_048, 16_384)
#: Dead faces kept as tombstones before their codes are rewritten.
COMPACT_AFTER = 1024
_SUFFIX = ".faiss"
#: A save: this, the number of shards, then per shard its faiss index and its keys,
#: each as a little-endian 8-byte length and the bytes.
_MAGIC = b"visage-pq-refine-shards\n"


@dataclass
class Candidates:
    keys: np.ndarray  # int64
    scores: np.ndarray  # approximate cosine, float32


@dataclass
class _Shard:
    """One shard: coarse and fine codes in the same order, and the key at each position."""

    index: faiss.IndexRefine
    coarse: faiss.IndexPQFastScan
    fine: faiss.IndexPQ
    _keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    size: int = 0

    @property
    def keys(self) -> np.ndarray:
        return self._keys[: self.size]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        end = self.size + len(keys)
        if end > len(self._keys):  # grow by half, so adding one face does not copy them all
            grown = np.empty(max(end, len(self._keys) * 3 // 2), np.int64)
            grown[: self.size] = self.keys
            self._keys = grown
        self.index.add(vectors)
        self._keys[self.size : end] = keys
        self.size = end

    def compact(self, dead: np.ndarray) -> None:
        """Drops the codes of these keys (one ordered pass over the codes)."""
        gone = np.isin(self.keys, dead, kind="table" if np.ptp(dead) < 1 << 26 else None)
        if not gone.any():
            return
        bitmap = np.packbits(gone, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        self.coarse.remove_ids(selector)
        self.fine.remove_ids(selector)
        self.index.ntotal = self.coarse.ntotal
        self._keys = self.keys[~gone].copy()
        self.size = len(self._keys)


class VectorIndex:
    """Product-quantised codes of unit vectors, scored by inner product; thread-safe.

    The codebooks are learnt from the first vectors added (up to ``TRAINING_VECTORS``
    of them: the store builds an index from the collection in batches of that size).
    ``shards`` defaults to the cores this process may use.
    """

    def __init__(self, applied: int = 0, shards: int | None = None) -> None:
        self.applied = applied  # the last change-log sequence number folded in
        self._wanted = shards or cores()
        self._use([])
        self._dead: set[int] = set()
        self._lock = threading.RLock()

    def _use(self, shards: list[_Shard]) -> None:
        self._shards = shards
        self._scan = faiss.IndexShards(shards[0].index.d if shards else 0, True, True)  # threaded, positions in order
        for shard in shards:
            self._scan.add_shard(shard.index)

    @property
    def dimension(self) -> int:
        return int(self._scan.d)

    @property
    def shards(self) -> int:
        return len(self._shards)

    def __len__(self) -> int:
        return int(self._scan.ntotal) - len(self._dead)

    @property
    def memory_bytes(self) -> int:
        """Codes and keys (the codebooks and lookup tables are a few hundred kilobytes)."""
        return int(self._scan.ntotal) * (self.dimension // 8 + self.dimension // 4 + 8)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Adds faces by key, to the smallest shard; a key must not be in the index already
        (the store's change log applies each face's insertion once)."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(keys) == 0:
            return
        with self._lock:
            if self._dead and not self._dead.isdisjoint(keys.tolist()):  # a key removed and given again
                self._compact()
            if not self._shards:
                self._use(_trained(vectors[:TRAINING_VECTORS], self._wanted))
            smallest = min(self._shards, key=lambda shard: shard.size)
            smallest.add(keys, np.ascontiguousarray(vectors, dtype=np.float32))
            self._scan.syncWithSubIndexes()

    def remove(self, keys: np.ndarray) -> None:
        """Removes these keys, which must be in the index (the store's change log removes
        each face once, and only a face it added)."""
        if len(keys) == 0:
            return
        with self._lock:
            self._dead.update(int(key) for key in keys)
            if len(self._dead) >= COMPACT_AFTER:
                self._compact()

    def _compact(self) -> None:
        dead = np.fromiter(self._dead, np.int64, len(self._dead))
        for shard in self._shards:
            shard.compact(dead)
        self._scan.syncWithSubIndexes()
        self._dead.clear()

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
                keys, scores = self._search(query, k)
                if k >= min(count, size) or scores[-1] < min_score - QUANTISATION_MARGIN:
                    break
                k = min(count, size, k * 4)
        keep = scores >= min_score - QUANTISATION_MARGIN
        return Candidates(keys[keep], scores[keep])

    def _search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best live keys and their scores (asks for as many more as are dead)."""
        wanted = k + len(self._dead)
        low, high = COARSE_CANDIDATES
        coarse = min(max(int(self._scan.ntotal) // FACES_PER_COARSE_CANDIDATE, low), high)
        for shard in self._shards:
            shard.index.k_factor = max(4, -(-coarse // wanted))
        scores, positions = self._scan.search(query, wanted)
        scores, positions = scores[0], positions[0]
        found = positions >= 0
        scores, positions = scores[found], positions[found]
        starts = np.cumsum([0] + [shard.size for shard in self._shards])
        owner = np.searchsorted(starts, positions, side="right") - 1
        keys = np.empty(len(positions), np.int64)
        for number, shard in enumerate(self._shards):
            mine = owner == number
            keys[mine] = shard.keys[positions[mine] - starts[number]]
        if self._dead:
            live = np.array([key not in self._dead for key in keys.tolist()], dtype=bool)
            keys, scores = keys[live], scores[live]
        return keys[:k], scores[:k]

    def save(self, folder: Path, name: str) -> Path:
        """Write ``<folder>/<name>.<applied>.faiss`` atomically and drop older saves of ``name``.

        The applied change number is in the file name, so a file and what it has applied
        can never disagree, whenever the process stops. Tombstones are compacted first.
        """
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not len(self):
                raise ValueError("An index with no vectors has nothing to save")
            if self._dead:
                self._compact()
            applied = self.applied
            path = folder / f"{name}.{applied}{_SUFFIX}"
            temporary = folder / f"{name}.{applied}.{os.getpid()}.tmp"
            try:
                with open(temporary, "wb") as file:
                    file.write(_MAGIC + struct.pack("<I", len(self._shards)))
                    for shard in self._shards:
                        for part in (faiss.serialize_index(shard.index), shard.keys):
                            file.write(struct.pack("<Q", part.nbytes))
                            file.write(part.tobytes())
            except BaseException:  # a full disk: no half-written file is left behind, older saves stay
                temporary.unlink(missing_ok=True)
                raise
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


def _trained(sample: np.ndarray, shards: int) -> list[_Shard]:
    """Empty shards sharing codebooks learnt from ``sample``, unit vectors one per row."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dimension = sample.shape[1]
    if dimension % 4:
        raise ValueError(f"Vectors of {dimension} dimensions: the index codes groups of 4 dimensions")
    coarse = faiss.IndexPQFastScan(dimension, dimension // 4, 4, faiss.METRIC_INNER_PRODUCT)
    coarse.train(_at_least(sample, 16))
    fine = faiss.IndexPQ(dimension, dimension // 4, 8, faiss.METRIC_INNER_PRODUCT)
    fine.train(_at_least(sample, 256))
    return [_shard(faiss.IndexRefine(faiss.clone_index(coarse), faiss.clone_index(fine))) for _ in range(shards)]


def _shard(index: faiss.IndexRefine, keys: np.ndarray | None = None) -> _Shard:
    shard = _Shard(index, faiss.downcast_index(index.base_index), faiss.downcast_index(index.refine_index))
    if keys is not None:
        shard._keys, shard.size = keys, len(keys)
    return shard


def _read_shards(path: Path) -> list[_Shard] | None:
    """The shards saved in ``path``, or None if it is not a whole save of this version."""

    def part(file: BinaryIO) -> bytes:
        (length,) = struct.unpack("<Q", file.read(8))
        data = file.read(length)
        if len(data) != length:
            raise ValueError("cut short")
        return data

    try:
        with open(path, "rb") as file:
            if file.read(len(_MAGIC)) != _MAGIC:
                return None
            (count,) = struct.unpack("<I", file.read(4))
            shards = []
            for _ in range(count):
                index = faiss.deserialize_index(np.frombuffer(part(file), np.uint8))
                keys = np.frombuffer(part(file), np.int64).copy()
                if not isinstance(index, faiss.IndexRefine) or index.ntotal != len(keys):
                    return None
                shards.append(_shard(index, keys))
            if file.read(1) or not shards:
                return None
    except (OSError, ValueError, RuntimeError, struct.error):
        return None
    return shards


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
