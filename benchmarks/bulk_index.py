"""``visage index`` throughput: images per second through the real command on LFW images.

Symlinks a random sample of LFW images (seed 1) into a temporary folder, runs
``visage index DIR --collection lfw --workers <cores>`` on a fresh data dir, and
checks from its summary that every image was seen. The time includes starting the
worker processes and loading their models. Goal: at least 40 images/s on 2 cores.

    python benchmarks/bulk_index.py                 # 2,000 images
    python benchmarks/bulk_index.py --images 500
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results
from visage.evaluation.data import eval_data_dir


def index_throughput(count: int, workers: int) -> dict[str, object]:
    paths = sorted((eval_data_dir() / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    chosen = random.Random(1).sample(paths, count)
    root = Path(tempfile.mkdtemp(prefix="visage-index-"))
    try:
        (root / "images").mkdir()
        for path in chosen:
            (root / "images" / f"{path.parent.name}-{path.name}").symlink_to(path.resolve())
        command = [
            str(Path(sys.executable).with_name("visage")),
            "index",
            str(root / "images"),
            "--collection",
            "lfw",
            "--data-dir",
            str(root / "data"),
            "--workers",
            str(workers),
        ]
        start = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(root)
    summary = re.search(r"(\d+) images: (\d+) indexed \((\d+) faces\)", run.stdout)
    if run.returncode != 0 or summary is None or int(summary[1]) != count:
        raise RuntimeError(f"visage index failed (exit {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return {
        "images": count,
        "workers": workers,
        "images_indexed": int(summary[2]),
        "faces": int(summary[3]),
        "seconds": round(elapsed, 1),
        "images_per_s": round(count / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    r = index_throughput(args.images, args.workers)
    markdown = (
        f"`visage index` on {r['images']:,} LFW images with {r['workers']} workers: {r['images_indexed']:,} "
        f"indexed ({r['faces']:,} faces) in {r['seconds']} s including start-up: **{r['images_per_s']} images/s** "
        "(goal >= 40)."
    )
    print(markdown)
    write_results("bulk_index", r, markdown)


if __name__ == "__main__":
    main()
