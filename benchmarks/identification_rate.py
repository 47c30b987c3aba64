"""Rank-1 identification on LFW as tests/test_server_cli_and_data.py runs it, over many seeded draws.

The test indexes the first two images of 100 LFW people (of those with three or more),
drawn with seed 2026, and searches each with their third: the top match must be the
person for at least a floor of them. This measures the rate on other draws (seeds
0..N-1, the test's own seed left out), from the evaluation cache, with the largest face
of each image as the server takes it (MaxFaces 1, QualityFilter NONE), and writes
``benchmarks/results/identification_rate.json``; the test's floor is the lower end of
the central 99 % binomial range of 100 probes at that rate.

    python benchmarks/identification_rate.py --draws 60
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

from _results import RESULTS, command, commit, machine

TEST_SEED = 2026


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=60)
    args = parser.parse_args()

    from visage.engine import Engine
    from visage.evaluation.cache import AnalysisCache
    from visage.evaluation.data import eval_data_dir
    from visage.evaluation.intervals import binomial_range

    root = eval_data_dir() / "lfw" / "lfw-deepfunneled"
    people = sorted(p for p in root.iterdir() if len(list(p.glob("*.jpg"))) >= 3)
    cache = AnalysisCache(Engine(), "sface")

    def largest(path: Path) -> np.ndarray | None:
        faces = cache.faces(path)
        return faces[0].embedded.vector if faces else None

    correct_per_draw = []
    for seed in (s for s in range(args.draws + 1) if s != TEST_SEED):
        if len(correct_per_draw) == args.draws:
            break
        gallery, owners, probes = [], [], []
        for person in random.Random(seed).sample(people, 100):
            images = sorted(person.glob("*.jpg"))[:3]
            for image in images[:2]:
                if (vector := largest(image)) is not None:
                    gallery.append(vector)
                    owners.append(person.name)
            probes.append((person.name, largest(images[2])))
        matrix = np.array(gallery)
        correct_per_draw.append(sum(v is not None and owners[int(np.argmax(matrix @ v))] == name for name, v in probes))
    correct, probes_total = sum(correct_per_draw), 100 * len(correct_per_draw)
    rate = correct / probes_total
    floor = binomial_range(100, rate, 0.99)[0]
    results = {
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "draws": len(correct_per_draw),
        "correct": correct,
        "probes": probes_total,
        "rank1_rate": round(rate, 5),
        "lowest_draw": min(correct_per_draw),
        "correct_per_draw": correct_per_draw,
        "floor_of_100": floor,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "identification_rate.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"rank-1 {correct} of {probes_total} ({rate:.2%}); lowest draw {min(correct_per_draw)}; floor {floor} of 100")


if __name__ == "__main__":
    sys.exit(main())
