"""Search in the embedded store right after a write: the cached vectors caught up, against read whole.

A small collection (up to ``exact_search_limit``, 50,000 faces) is searched exactly from
its vectors cached in memory (visage/store/sqlite_search.py). A write to it (IndexFaces,
DeleteFaces) used to make the next search read the whole collection again from SQLite;
the cache now folds in the collection's change log instead, reading only the faces
added. This measures what a search costs in three cases, on one SQLiteStore (a real
SQLite file in a temporary folder) holding ``--faces`` random unit vectors of 128 floats
(a search's cost does not depend on their values):

- *nothing written*: the cache is current (the floor);
- *after a write, caught up*: one face added and one deleted (the collection keeps its
  size) before each search, as the store does now;
- *after a write, read whole*: the same writes, with the cache dropped before each search,
  so that it reads the collection whole: what every search after a write cost before.

The last two alternate round by round, so a busy machine slows both alike; the ratio of
their medians is the figure. Only the search is timed, one thread, in process.

    python benchmarks/search_after_writes.py                  # 2,000, 20,000 and 50,000 faces
    python benchmarks/search_after_writes.py --faces 5000 --rounds 50

Results: ``search_after_writes``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import summary_ms, write_results
from visage.faces import BoundingBox
from visage.store.base import Collection, StoredFace
from visage.store.sqlite import SQLiteStore

DIM = 128
BOX = BoundingBox(left=0.1, top=0.1, width=0.2, height=0.2)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def faces(rng: np.random.Generator, n: int) -> list[StoredFace]:
    return [StoredFace(str(uuid.uuid4()), str(uuid.uuid4()), BOX, 99.0, v) for v in unit_vectors(rng, n)]


def timed_search(store: SQLiteStore, query: np.ndarray) -> float:
    start = time.perf_counter()
    store.search("c", query, 10, 0.3)
    return time.perf_counter() - start


def measure(size: int, rounds: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "visage.db")
        store.create_collection(Collection("c", "arn:visage:c", "sface", "sface-1", datetime.now(UTC)))
        held = faces(rng, size)
        for start in range(0, size, 5_000):
            store.add_faces("c", held[start : start + 5_000])
        held_ids = [face.face_id for face in held]
        queries = unit_vectors(rng, rounds)
        timed_search(store, queries[0])  # the first whole read, not timed
        current = [timed_search(store, q) for q in queries]
        caught_up: list[float] = []
        read_whole: list[float] = []
        for i, query in enumerate(queries):
            for times in (caught_up, read_whole) if i % 2 == 0 else (read_whole, caught_up):
                new = faces(rng, 1)
                store.add_faces("c", new)
                store.delete_faces("c", [held_ids.pop(int(rng.integers(len(held_ids))))])
                held_ids.append(new[0].face_id)
                if times is read_whole:
                    # Private on purpose: the behaviour before this change, each search after a write reading it all.
                    store.searcher._exact.clear()
                    store.searcher._older.clear()
                times.append(timed_search(store, query))
        assert store.count("c")[0] == size
        store.close()
    caught, whole = summary_ms(caught_up), summary_ms(read_whole)
    return {
        "faces": size,
        "rounds": rounds,
        "nothing_written": summary_ms(current),
        "after_write_caught_up": caught,
        "after_write_read_whole": whole,
        "read_whole_over_caught_up_p50": round(whole["p50_ms"] / caught["p50_ms"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[2_000, 20_000, 50_000])
    parser.add_argument("--rounds", type=int, default=200, help="searches timed per case and size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for size in args.faces:
        row = measure(size, args.rounds, args.seed)
        print(row, flush=True)
        rows.append(row)
    lines = [
        "Search of a small collection (exact, from vectors cached in memory) in the embedded store, in"
        f" process, one thread; {args.rounds} searches per case and size (10 best, min score 0.3), random"
        " 128-float unit vectors. After a write: one face added and one deleted before each search.",
        "",
        "| faces | nothing written p50 ms | after a write, caught up: p50 ms | p95 ms"
        " | after a write, read whole (before): p50 ms | p95 ms | read whole / caught up, p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        now, caught, whole = r["nothing_written"], r["after_write_caught_up"], r["after_write_read_whole"]
        lines.append(
            f"| {r['faces']:,} | {now['p50_ms']} | {caught['p50_ms']} | {caught['p95_ms']}"  # type: ignore[index]
            f" | {whole['p50_ms']} | {whole['p95_ms']} | {r['read_whole_over_caught_up_p50']}x |"  # type: ignore[index]
        )
    write_results("search_after_writes", {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
