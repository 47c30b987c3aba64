"""Search at scale: exact numpy, the embedded store's index, and the PostgreSQL store, per gallery size.

Vectors. Queries are real: one sface vector for each of 1,000 LFW people with at least
two images. The gallery holds every other real LFW vector (about 12,000), padded to the
wanted size with distractors from a documented generator: a multivariate normal with
the mean and covariance of the 13,233 real LFW sface vectors, normalised to unit length
(numpy seed 0, drawn in blocks of 100,000 so a block is reproducible on its own). They
look like faces to the index (same spread, same correlations between dimensions), unlike
uniform random vectors, which are far from everything and flatter an index.

A second padding, measured in the same run (``--distractors``): augmented real faces
(benchmarks/augmented_faces.py), about 90,000 sface vectors of real eval photos flipped,
cropped, blurred, darkened or brightened and JPEG-compressed, five variants a photo (the
query photos left out), placed after the real LFW vectors and before the normal ones. A
real gallery holds many photos of each person and near-copies, so a query's best match
has near-ties, which normal distractors never make; docs/scale.md says how the index did.

For each size, in one run: build time, memory, p50/p95 single-query latency (1,000
queries, one at a time) and recall@1 and @10 against exact search, for

- exact: a float32 numpy matrix and a matrix-vector product (only up to --exact-max);
- embedded: ``SQLiteStore.search`` on a real SQLite file (4-bit product-quantised scan,
  exact float32 re-scoring of the candidates), through the same code the server runs;
  above --store-max faces the index alone (``VectorIndex``) is measured, re-scoring its
  candidates from a float32 file on disk as the store does from SQLite, since writing
  20 million rows to SQLite is its own benchmark;
- postgres: ``PostgresStore.search`` on a real PostgreSQL server with pgvector, when one
  can be started (--pg-max bounds the size): the same product-quantised index, kept in
  the process and fed from the database's change log, its candidates scored exactly by
  PostgreSQL. The faces are loaded with one binary COPY in one transaction (the change
  log's triggers run once for it); "build s" is then the time a newly started store takes
  to be ready to search: opening, and building the index from the database (``warm``).
  Also recorded: the process's growth, the database's size, and the cost of adding and
  deleting 100 faces, each followed by a search in another store on the same database,
  which folds the change in. (Until commit 6b5426c this method was pgvector's HNSW
  index, m 16, ef_construction 64: results/search_scale_pgvector.* and docs/scale.md.)

Ground truth for recall is exact search over the same gallery (chunked, so it needs
no more memory than one block). Each store is searched twice: at Similarity 0 (the
10 nearest faces, whatever their score: the hardest case, since a query with no
match has a nearest face among many near-ties) and at Rekognition's default
FaceMatchThreshold of 80, where what a client sees is the best face above 80 or none.
``visage index`` throughput is ``benchmarks/bulk_index.py``.

Goals: at 1M, p50 <= 5 ms with recall@1 >= 0.99; at 20M, p50 <= 50 ms and RAM <= 8 GiB.

    python benchmarks/search_scale.py                      # 100k and 1M, both paddings
    python benchmarks/search_scale.py --sizes 10000000 20000000 --pg-max 0   # once, recorded
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import summary_ms, write_results
from visage.config import DEFAULT_THRESHOLD
from visage.engine import Engine
from visage.engine.similarity import SimilarityMap
from visage.evaluation.data import eval_data_dir
from visage.evaluation.lfw import embed_images
from visage.faces import BoundingBox
from visage.store.base import Collection, StoredFace
from visage.store.collection_indexes import RESCORED_CANDIDATES
from visage.store.sqlite import SQLiteStore
from visage.store.vector_index import (
    COARSE_CANDIDATES,
    COMPACT_AFTER,
    FACES_PER_COARSE_CANDIDATE,
    QUANTISATION_MARGIN,
    TRAINING_VECTORS,
    VectorIndex,
    cores,
)

BLOCK = 100_000
QUERIES = 1_000
METHODS = ("exact", "embedded", "postgres")
#: The searches are also run at Rekognition's default FaceMatchThreshold, 80, as a cosine.
DEFAULT_RAW = SimilarityMap.load("sface").raw_threshold(DEFAULT_THRESHOLD)


# Vectors ------------------------------------------------------------------------------


def real_vectors() -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(queries, real gallery vectors, the queries' photos) from LFW."""
    root = eval_data_dir() / "lfw" / "lfw-deepfunneled"
    paths = sorted(root.glob("*/*.jpg"))
    faces = embed_images(Engine(), paths, "sface")
    by_person: dict[str, list[tuple[Path, np.ndarray]]] = {}
    for path in paths:
        face = faces[path]
        if face is not None:
            by_person.setdefault(path.parent.name, []).append((path, face.embedded.vector))
    people = sorted(p for p, v in by_person.items() if len(v) >= 2)
    probes = set(random.Random(0).sample(people, min(QUERIES, len(people))))
    queries, gallery, photos = [], [], []
    for person, found in sorted(by_person.items()):
        start = 0
        if person in probes:
            photos.append(found[0][0])
            queries.append(found[0][1])
            start = 1
        gallery += [vector for _, vector in found[start:]]
    return np.array(queries, np.float32), np.array(gallery, np.float32), photos


def query_photos() -> list[Path]:
    """The LFW photos the queries are made from (left out of the augmented distractors)."""
    return real_vectors()[2]


class Distractors:
    """Face-like unit vectors: a normal fitted to the real vectors, normalised."""

    def __init__(self, real: np.ndarray) -> None:
        self.mean = real.mean(axis=0)
        self.factor = np.linalg.cholesky(np.cov(real.T) + 1e-6 * np.eye(real.shape[1]))

    def block(self, index: int, size: int = BLOCK) -> np.ndarray:
        rng = np.random.default_rng([0, index])
        x = self.mean + rng.standard_normal((size, len(self.mean))) @ self.factor.T
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gallery_blocks(
    real: np.ndarray, distractors: Distractors, size: int, near_copies: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """The gallery of ``size`` vectors, in blocks: the real ones first, then the ``near_copies``
    (augmented real faces, benchmarks/augmented_faces.py) if given, then normal distractors."""
    yield real[:size]
    left, index = size - len(real), 0
    if near_copies is not None and left > 0:
        for start in range(0, min(left, len(near_copies)), BLOCK):
            yield near_copies[start : min(start + BLOCK, left)]
        left -= min(left, len(near_copies))
    while left > 0:
        block = distractors.block(index, min(BLOCK, left))
        yield block
        left -= len(block)
        index += 1


def exact_top(queries: np.ndarray, blocks: Iterator[np.ndarray], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and cosines of the exact top k of each query, streaming over the gallery."""
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), k), np.int64)
    offset = 0
    for block in blocks:
        scores = queries @ block.T
        if scores.shape[1] > k:  # only the block's own top k can enter the running top k
            part = np.argpartition(-scores, k, axis=1)[:, :k]
            scores, rows = np.take_along_axis(scores, part, axis=1), part + offset
        else:
            rows = np.broadcast_to(np.arange(offset, offset + len(block)), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate([best_rows, rows], axis=1)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_rows = np.take_along_axis(all_rows, order, axis=1)
        offset += len(block)
    return best_rows, best_scores


class Truth:
    """Exact search's answers: the top 10 of each query, and their cosines."""

    def __init__(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self.rows, self.scores = rows, scores

    def recall(self, found: list[list[int]]) -> dict[str, float]:
        """recall@1 and @10 of searches at Similarity 0 (every face is an answer)."""
        at1 = np.mean([bool(f) and f[0] == t[0] for f, t in zip(found, self.rows)])
        at10 = np.mean([len(set(f[:10]) & set(t[:10].tolist())) / 10 for f, t in zip(found, self.rows)])
        return {"recall_at_1": round(float(at1), 4), "recall_at_10": round(float(at10), 4)}

    def agreement(self, found: list[list[int]], raw_threshold: float) -> dict[str, float]:
        """Searches at a FaceMatchThreshold: how often the best answer is exact search's
        (a face, or none when no face reaches the threshold), overall and among the
        queries that have a match."""
        expected = [int(r[0]) if s[0] >= raw_threshold else None for r, s in zip(self.rows, self.scores)]
        got = [f[0] if f else None for f in found]
        same = np.array([e == g for e, g in zip(expected, got)])
        has = np.array([e is not None for e in expected])
        return {
            "answer_agreement": round(float(same.mean()), 4),
            "queries_with_a_match": int(has.sum()),
            "match_recall_at_1": round(float(same[has].mean()), 4) if has.any() else 1.0,
        }


def timed_queries(
    queries: np.ndarray, search: Callable[[np.ndarray], list[int]]
) -> tuple[list[list[int]], dict[str, float]]:
    """Each query once, one at a time, after one warm-up query."""
    search(queries[0])
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(search(query))
        times.append(time.perf_counter() - start)
    return found, summary_ms(times)


def both_thresholds(
    queries: np.ndarray, searcher: Callable[[float], Callable[[np.ndarray], list[int]]], truth: Truth
) -> dict[str, object]:
    """Latency and recall of searches at Similarity 0, then at the default threshold."""
    found, latency = timed_queries(queries, searcher(-1.0))
    at_default, latency_default = timed_queries(queries, searcher(DEFAULT_RAW))
    return {
        **latency,
        **truth.recall(found),
        "at_default_threshold": {**latency_default, **truth.agreement(at_default, DEFAULT_RAW)},
    }


def rss_mib() -> float:
    """The process's own resident memory (anonymous pages), after handing freed heap back
    to the system.

    File pages are left out: the float32 vectors are re-scored from a file (SQLite's, or
    the index-only run's), and the kernel maps in the cached pages around each row it
    reads, so plain RSS would grow towards the size of that file with pages it may drop
    at any time. glibc keeps freed heap mapped, and the benchmark frees a 50 MB gallery
    block hundreds of times; ``malloc_trim`` returns it first.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the figure then includes freed heap
        pass
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024
    except (OSError, StopIteration):  # not Linux
        return psutil.Process().memory_info().rss / 2**20


# Methods ------------------------------------------------------------------------------


def run_exact(queries: np.ndarray, blocks: Iterator[np.ndarray], truth: Truth) -> dict[str, object]:
    start = time.perf_counter()
    matrix = np.concatenate(list(blocks))
    build = time.perf_counter() - start

    def searcher(min_score: float) -> Callable[[np.ndarray], list[int]]:
        def search(query: np.ndarray) -> list[int]:
            scores = matrix @ query
            top = np.argpartition(-scores, 10)[:10]
            return [int(i) for i in top[np.argsort(-scores[top], kind="stable")] if scores[i] >= min_score]

        return search

    return {
        "build_s": round(build, 1),
        "memory_mib": round(matrix.nbytes / 2**20, 1),
        **both_thresholds(queries, searcher, truth),
    }


def run_store(
    store_factory: Callable[[], object],
    queries: np.ndarray,
    blocks: Iterator[np.ndarray],
    truth: Truth,
    warm: bool,
) -> dict[str, object]:
    """Fill a real store through add_faces, then search it with store.search, at
    Similarity 0 and at the default FaceMatchThreshold."""
    store = store_factory()
    store.create_collection(Collection("scale", "arn", "sface", "sface-1", datetime.now(UTC)))
    box = BoundingBox(0.25, 0.25, 0.5, 0.5)
    ids: list[str] = []
    before = rss_mib()
    start = time.perf_counter()
    for block in blocks:
        for chunk in range(0, len(block), 5_000):
            faces = [StoredFace(str(uuid.uuid4()), "image", box, 99.0, v) for v in block[chunk : chunk + 5_000]]
            ids += [f.face_id for f in faces]
            store.add_faces("scale", faces)
    load = time.perf_counter() - start
    start = time.perf_counter()
    if warm:
        store.warm()
    build = time.perf_counter() - start
    row_of = {face_id: row for row, face_id in enumerate(ids)}

    def searcher(min_score: float) -> Callable[[np.ndarray], list[int]]:
        return lambda query: [row_of[s.face.face_id] for s in store.search("scale", query, 10, min_score)]

    measured = both_thresholds(queries, searcher, truth)
    result = {
        "insert_s": round(load, 1),
        "build_s": round(build, 1),
        "rss_growth_mib": round(rss_mib() - before, 1),
        **measured,
    }
    store.close()
    return result


def rechunk(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The same rows in arrays of ``size`` rows (the last one shorter), as the store reads them."""
    pending: list[np.ndarray] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += len(block)
        while held >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, held = [joined[size:]], held - size
    if held:
        yield np.concatenate(pending)


def run_index_only(queries: np.ndarray, blocks: Iterator[np.ndarray], truth: Truth) -> dict[str, object]:
    """The embedded index alone (above --store-max): build, memory, search; candidates are
    re-scored from a float32 file on disk, as the store re-scores them from SQLite."""
    folder = Path(tempfile.mkdtemp(prefix="visage-scale-"))
    try:
        before = rss_mib()
        index = VectorIndex()
        offset, build = 0, 0.0
        with open(folder / "vectors.f32", "wb") as file:
            for block in rechunk(blocks, TRAINING_VECTORS):
                file.write(block.tobytes())
                start = time.perf_counter()
                index.add(np.arange(offset, offset + len(block), dtype=np.int64), block)
                build += time.perf_counter() - start
                offset += len(block)
        vectors = np.memmap(folder / "vectors.f32", dtype=np.float32, mode="r", shape=(offset, queries.shape[1]))
        worst = [0.0]  # the largest amount by which the index under-scored a candidate

        def searcher(min_score: float) -> Callable[[np.ndarray], list[int]]:
            def search(query: np.ndarray) -> list[int]:
                candidates = index.search(query, RESCORED_CANDIDATES, min_score)
                order = np.argsort(candidates.keys)
                keys = candidates.keys[order]
                scores = vectors[keys] @ query
                worst[0] = max(worst[0], float(np.max(scores - candidates.scores[order], initial=0.0)))
                best = np.argsort(-scores, kind="stable")[:10]
                return [int(keys[i]) for i in best if scores[i] >= min_score]

            return search

        measured = both_thresholds(queries, searcher, truth)
        rss = rss_mib() - before
        # What DeleteFaces and IndexFaces cost the index: 100 faces deleted from across the
        # collection (tombstones), then enough more to rewrite the codes, then 100 added.
        spread = np.random.default_rng(1).permutation(offset)[:COMPACT_AFTER].astype(np.int64)
        start = time.perf_counter()
        index.remove(spread[:100])
        removed = time.perf_counter() - start
        start = time.perf_counter()
        index.remove(spread[100:])
        compacted = time.perf_counter() - start
        start = time.perf_counter()
        index.add(np.arange(offset, offset + 100, dtype=np.int64), np.asarray(vectors[:100]))
        added = time.perf_counter() - start
        return {
            "build_s": round(build, 1),
            "index_memory_mib": round(index.memory_bytes / 2**20, 1),
            "rss_growth_mib": round(rss, 1),
            **measured,
            "largest_score_error": round(worst[0], 3),
            "remove_100_ms": round(removed * 1000, 1),
            f"remove_{COMPACT_AFTER - 100}_and_compact_ms": round(compacted * 1000, 1),
            "add_100_ms": round(added * 1000, 1),
        }
    finally:
        shutil.rmtree(folder)


def measure_size(
    size: int,
    blocks: Callable[[], Iterator[np.ndarray]],
    queries: np.ndarray,
    args: argparse.Namespace,
    postgres: object | None,
) -> dict[str, object]:
    """Every method of ``args.methods`` on the gallery of ``size`` faces ``blocks`` makes."""
    truth = Truth(*exact_top(queries, blocks()))
    row: dict[str, object] = {}
    if "exact" in args.methods and size <= args.exact_max:
        row["exact"] = run_exact(queries, blocks(), truth)
        print("exact", row["exact"])
    gc.collect()
    if "embedded" in args.methods and size <= args.store_max:
        folder = Path(tempfile.mkdtemp(prefix="visage-scale-"))
        row["embedded"] = run_store(lambda: SQLiteStore(folder / "visage.db"), queries, blocks(), truth, warm=True)
        shutil.rmtree(folder)
        print("embedded", row["embedded"])
    elif "embedded" in args.methods:
        row["embedded_index_only"] = run_index_only(queries, blocks(), truth)
        print("embedded, index only", row["embedded_index_only"])
    gc.collect()
    if postgres is not None and size <= args.pg_max:
        row["postgres"] = run_postgres(postgres, queries, blocks(), truth)
        print("postgres", row["postgres"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--exact-max", type=int, default=2_000_000, help="largest size for the exact numpy method")
    parser.add_argument("--store-max", type=int, default=2_000_000, help="above this, measure the index alone")
    parser.add_argument("--pg-max", type=int, default=1_000_000, help="largest size for PostgreSQL (0: skip)")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        help="measure only these; a run of some methods is recorded apart (search_scale_<methods>)",
    )
    parser.add_argument(
        "--distractors",
        nargs="+",
        choices=("normal", "augmented"),
        default=["normal", "augmented"],
        help="the gallery's padding: drawn from a normal fitted to LFW, or augmented real faces first "
        "(benchmarks/augmented_faces.py), each measured in turn",
    )
    args = parser.parse_args()

    queries, real, photos = real_vectors()
    distractors = Distractors(real)
    results: dict[str, object] = {
        "command": " ".join(["python benchmarks/search_scale.py", *sys.argv[1:]]),
        "queries": len(queries),
        "real_gallery_vectors": len(real),
        "index": {
            "codes": "16-byte 4-bit product-quantised codes scanned (faiss IndexPQFastScan), the best "
            f"(one per {FACES_PER_COARSE_CANDIDATE} faces, {COARSE_CANDIDATES[0]:,} to {COARSE_CANDIDATES[1]:,}) "
            "re-scored with 32-byte 8-bit codes (IndexRefine)",
            "rescored_candidates": RESCORED_CANDIDATES,
            "quantisation_margin": QUANTISATION_MARGIN,
            "training_vectors": TRAINING_VECTORS,
            "shards": cores(),
        },
    }
    postgres = postgres_databases() if args.pg_max and "postgres" in args.methods else None
    near_copies = None
    if "augmented" in args.distractors:
        from augmented_faces import augmented_vectors, source_photos

        sources = source_photos(photos)
        near_copies = augmented_vectors(sources)
        results["augmented_vectors"] = len(near_copies)
        results["augmented_source_photos"] = len(sources)
    for distractor_set in args.distractors:
        copies = near_copies if distractor_set == "augmented" else None
        key = "sizes" if distractor_set == "normal" else "sizes_augmented"
        results[key] = {}
        for size in args.sizes:
            print(f"== {size:,} faces, {distractor_set} distractors")

            def blocks(size: int = size, copies: np.ndarray | None = copies) -> Iterator[np.ndarray]:
                return gallery_blocks(real, distractors, size, copies)

            results[key][str(size)] = measure_size(size, blocks, queries, args, postgres)

    name = "search_scale" if max(args.sizes) <= 2_000_000 else "search_scale_large"
    if set(args.methods) != set(METHODS):
        name += "_" + "_".join(m for m in METHODS if m in args.methods)
    markdown = _table(results)
    print(markdown)
    write_results(name, results, markdown)


def postgres_databases() -> object | None:
    """A private pgserver (the tests' server: PostgreSQL 18 with pgvector 0.8, fsync off)
    that makes fresh databases, or None, printed, if PostgreSQL cannot start."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from tests.conftest import TestPostgres, _start_pgserver

        server = _start_pgserver(Path(tempfile.mkdtemp(prefix="visage-pg-")))
        return TestPostgres(str(server.get_uri()))
    except Exception as error:
        print(f"postgres skipped: {type(error).__name__}: {error}")
        return None


def run_postgres(
    databases: object, queries: np.ndarray, blocks: Iterator[np.ndarray], truth: Truth
) -> dict[str, object]:
    """The PostgreSQL store: loaded by COPY, then a new store started on it, searched, written to."""
    import psycopg
    from pgvector.psycopg import register_vector

    from visage.store.postgres import PostgresStore

    dsn = databases.create_database()  # type: ignore[attr-defined]
    with PostgresStore(dsn) as store:
        store.create_collection(Collection("scale", "arn", "sface", "sface-1", datetime.now(UTC)))
    columns = "collection_pk, face_id, image_id, bbox_left, bbox_top, bbox_width, bbox_height, confidence, embedding"
    rows = 0
    start = time.perf_counter()
    with psycopg.connect(dsn) as con:  # one transaction
        register_vector(con)
        con.execute("UPDATE collections SET dim = 128")  # as the store pins it with its first faces
        with con.cursor().copy(f"COPY faces ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "text", "float8", "float8", "float8", "float8", "float8", "vector"])
            for block in blocks:
                for vector in block:
                    copy.write_row((1, _face_id(rows), "image", 0.25, 0.25, 0.5, 0.5, 99.0, vector))
                    rows += 1
    load = time.perf_counter() - start
    size_mib = _database_mib(dsn)

    before = rss_mib()
    start = time.perf_counter()
    store = PostgresStore(dsn, exact_search_limit=EXACT_LIMIT)
    store.warm()  # what visage serve does at start
    ready = time.perf_counter() - start
    (index,) = [ann.index for ann in store.indexes._ann.values()]
    grown = rss_mib() - before

    def searcher(min_score: float) -> Callable[[np.ndarray], list[int]]:
        return lambda query: [_row(s.face.face_id) for s in store.search("scale", query, 10, min_score)]

    measured = both_thresholds(queries, searcher, truth)
    # Writes, each seen by another store (another server) at its next search.
    other = PostgresStore(dsn, exact_search_limit=EXACT_LIMIT)
    other.search("scale", queries[0], 1, -1.0)  # builds its index
    box = BoundingBox(0.25, 0.25, 0.5, 0.5)
    new = [StoredFace(_face_id(rows + i), "image", box, 99.0, v) for i, v in enumerate(queries[:100])]
    costs: dict[str, float] = {}
    for name, write in (
        ("add_100", lambda: store.add_faces("scale", new)),
        ("delete_100", lambda: store.delete_faces("scale", [f.face_id for f in new])),
    ):
        started = time.perf_counter()
        write()
        costs[f"{name}_ms"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        found = other.search("scale", queries[0], 1, -1.0)[0].face.face_id
        costs[f"{name}_then_search_elsewhere_ms"] = round((time.perf_counter() - started) * 1000, 1)
        assert (found == new[0].face_id) == (name == "add_100"), (name, found)
    started = time.perf_counter()
    other.search("scale", queries[1], 1, -1.0)
    costs["search_with_nothing_to_fold_in_ms"] = round((time.perf_counter() - started) * 1000, 1)
    other.close()
    store.close()
    return {
        "insert_s": round(load, 1),
        "build_s": round(ready, 1),
        "index_memory_mib": round(index.memory_bytes / 2**20, 1),
        "rss_growth_mib": round(grown, 1),
        "database_mib": size_mib,
        **measured,
        **costs,
    }


EXACT_LIMIT = 50_000  # the store's default


def _face_id(row: int) -> str:
    return str(uuid.UUID(int=row))


def _row(face_id: str) -> int:
    return uuid.UUID(face_id).int


def _database_mib(dsn: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("VACUUM ANALYZE faces")
        row = con.execute(
            "SELECT pg_database_size(current_database()), pg_total_relation_size('faces'),"
            " pg_total_relation_size('face_changes')"
        ).fetchone()
    assert row is not None
    return {name: round(value / 2**20, 1) for name, value in zip(("database", "faces", "face_changes"), row)}


def _table(results: dict[str, object]) -> str:
    lines = [
        f"Queries: {results['queries']} real LFW faces; gallery: {results['real_gallery_vectors']:,} real LFW vectors "
        "padded with distractors (see the script's docstring). Run: `" + results.get("command", "?") + "` "
        "(postgres only up to --pg-max faces; its build s: a new store ready to search). "
        "Index (embedded and postgres): " + results["index"]["codes"] + ", "
        f"in {results['index'].get('shards', 1)} shards scanned at once (one per core), "
        f"{results['index']['rescored_candidates']} candidates re-scored exactly.",
        "",
        "Columns at Similarity 0 ask for the 10 nearest faces whatever their score; columns at 80 (Rekognition's "
        "default FaceMatchThreshold) count a query right when its best answer is exact search's: the same face, "
        'or none when no face reaches 80 ("match recall@1": among the queries that have a match).',
        "",
        "| faces | distractors | method | build s | memory MiB | p50 ms | p95 ms | recall@1 | recall@10 | "
        "p50 ms at 80 | answers = exact at 80 | match recall@1 at 80 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if "augmented_vectors" in results:
        lines[1:1] = [
            "",
            f"Augmented real faces: {results['augmented_vectors']:,} vectors of {results['augmented_source_photos']:,} "
            "real eval photos (LFW without the query photos, CFP, UTKFace, FairFace), each flipped, cropped, blurred, "
            "made darker or brighter or JPEG-compressed in five ways (benchmarks/augmented_faces.py); they fill the "
            "gallery after the real LFW vectors, and normal distractors pad it beyond them.",
        ]
    for key, padding in (("sizes", "normal"), ("sizes_augmented", "augmented real faces")):
        for size, methods in results.get(key, {}).items():
            for method, r in methods.items():
                memory = r.get("memory_mib", r.get("index_memory_mib", r.get("rss_growth_mib", "")))
                build = r.get("build_s", "")
                if "insert_s" in r:
                    build = f"{r['build_s']} (+{r['insert_s']} insert)"
                d = r["at_default_threshold"]
                lines.append(
                    f"| {int(size):,} | {padding} | {method} | {build} | {memory} | {r['p50_ms']} | {r['p95_ms']} | "
                    f"{r['recall_at_1']} | {r['recall_at_10']} | {d['p50_ms']} | {d['answer_agreement']} | "
                    f"{d['match_recall_at_1']} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
