"""The HNSW graph the embedded store used before its product-quantised scan: recall and
latency per setting (usearch, a dev dependency, is needed only here).

Builds a usearch index (cosine metric, insertion on one thread, as the store did)
with each connectivity and storage below over the gallery of
``benchmarks/search_scale.py`` (the same real LFW queries and face-like distractors),
then searches it at several expansions the way the store does: 128 candidates, each
re-scored exactly. Recall@1 is how often the exact nearest face is the best re-scored
candidate. It also counts the misses that matter most: queries whose exact nearest
face is a match at Similarity 80 or more (the default threshold) and was not found.

    python benchmarks/hnsw_settings.py              # 200,000 faces
    python benchmarks/hnsw_settings.py --size 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from usearch.index import Index

from _results import write_results
from search_scale import Distractors, gallery_blocks, real_vectors
from visage.engine.similarity import SimilarityMap
from visage.store.sqlite_search import RESCORED_CANDIDATES

EXPANSION_ADD = 128  # HNSW "efConstruction", as the store had it

SETTINGS = [(16, "i8"), (16, "f32"), (32, "i8")]  # (connectivity, storage)
EXPANSIONS = [256, 512, 1024]


def measure(
    gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray, matches: np.ndarray, connectivity: int, dtype: str
) -> dict[str, object]:
    index = Index(
        ndim=gallery.shape[1], metric="cos", dtype=dtype, connectivity=connectivity, expansion_add=EXPANSION_ADD
    )
    start = time.perf_counter()
    index.add(np.arange(len(gallery), dtype=np.int64), gallery, threads=1)
    row: dict[str, object] = {
        "connectivity": connectivity,
        "storage": dtype,
        "build_s": round(time.perf_counter() - start, 1),
    }
    for expansion in EXPANSIONS:
        index.expansion_search = expansion
        missed, times = np.zeros(len(queries), bool), []
        for i, query in enumerate(queries):
            start = time.perf_counter()
            keys = np.asarray(index.search(query, RESCORED_CANDIDATES).keys, dtype=np.int64)
            best = keys[np.argmax(gallery[keys] @ query)]
            times.append(time.perf_counter() - start)
            missed[i] = best != truth[i]
        row[str(expansion)] = {
            "recall_at_1": round(1 - float(missed.mean()), 3),
            "p50_ms": round(float(np.median(times)) * 1000, 2),
            "missed_matches_at_80": int((missed & matches).sum()),
        }
        print(connectivity, dtype, expansion, row[str(expansion)])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=200_000)
    args = parser.parse_args()
    queries, real, _ = real_vectors()
    gallery = np.concatenate(list(gallery_blocks(real, Distractors(real), args.size)))
    scores = queries @ gallery.T
    truth = scores.argmax(axis=1)
    matches = scores.max(axis=1) >= SimilarityMap.load("sface").raw_threshold(80)
    rows = [measure(gallery, queries, truth, matches, c, d) for c, d in SETTINGS]
    results = {
        "faces": args.size,
        "queries": len(queries),
        "queries_with_a_match_at_80": int(matches.sum()),
        "rescored_candidates": RESCORED_CANDIDATES,
        "settings": rows,
    }
    lines = [
        f"{args.size:,} faces, {len(queries)} real LFW queries ({int(matches.sum())} with a match at Similarity 80 "
        f"or more); {RESCORED_CANDIDATES} candidates re-scored exactly. Each cell: recall@1, p50 ms, "
        "matches at 80+ missed.",
        "",
        "| connectivity | storage | build s | " + " | ".join(f"expansion {e}" for e in EXPANSIONS) + " |",
        "|---|---|---|" + "---|" * len(EXPANSIONS),
    ]
    for r in rows:
        cells = [
            f"{r[str(e)]['recall_at_1']}, {r[str(e)]['p50_ms']} ms, {r[str(e)]['missed_matches_at_80']}"
            for e in EXPANSIONS
        ]
        lines.append(f"| {r['connectivity']} | {r['storage']} | {r['build_s']} | " + " | ".join(cells) + " |")
    markdown = "\n".join(lines)
    print(markdown)
    write_results("hnsw_settings", results, markdown)


if __name__ == "__main__":
    main()
