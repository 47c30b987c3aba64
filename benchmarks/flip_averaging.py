"""Flip averaging for sface: does averaging a face's vector with its mirror image's help, and at what cost?

For each image, in one run: the face nearest the centre is found once (YuNet, as the
engine does), aligned once (SFace's 112 px crop), and embedded twice: the crop as it is
(today's sface-1 vector) and, for the flip-averaged vector, the crop and its mirror
image, their raw outputs added and normalised. Both are scored on the same pairs:

- CFP folds 1-5 (``cfp_half``): frontal-frontal (FF) and frontal-profile (FP), each
  fold judged at the threshold most accurate on the other folds, and TAR at FAR 1e-3;
- LFW View 1 test (``pairsDevTest.txt``, 500 + 500 pairs, 10 interleaved folds).

An image without a face, or refused (under 80 px), scores -1 in both variants. Cost:
the embedding alone, per face, p50 over every face of the run, with and without the
mirror image (same process, same run). A flip-averaged vector is not comparable with
a sface-1 vector: adopting it would make a new FaceModelVersion.

    python benchmarks/flip_averaging.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import summary_ms, write_results
from visage.engine import Engine
from visage.engine.recognition import SFaceModel, align_sface
from visage.errors import VisageError
from visage.evaluation.accuracy.cfp import cfp_dir, fold_accuracy, read_cfp_pairs
from visage.evaluation.accuracy.curves import split_scores, tar_at_far
from visage.evaluation.lfw import fold_indices, lfw_dir, read_pairs

VARIANTS = ("sface-1", "flip-averaged")


def embedder(engine: Engine) -> Callable[[Path], tuple[dict[str, np.ndarray], list[float], list[float]] | None]:
    model = engine.face_model("sface")
    assert isinstance(model, SFaceModel)
    session, name = model._session, model._input

    def run(crop: np.ndarray) -> np.ndarray:
        return session.run(None, {name: crop.transpose(2, 0, 1)[None].astype(np.float32)})[0].reshape(-1)

    def embed(path: Path) -> tuple[dict[str, np.ndarray], list[float], list[float]] | None:
        try:
            image = engine.decode(path.read_bytes())
        except VisageError:
            return None
        detections = engine.detector.detect(image)
        if not detections:
            return None
        centre = np.array([image.width / 2, image.height / 2])
        face = min(detections, key=lambda d: float(np.sum((d.box[:2] + d.box[2:] / 2 - centre) ** 2)))
        crop = align_sface(image.rgb, face.points)
        started = time.perf_counter()
        plain = run(crop)
        single = time.perf_counter() - started
        mirrored = run(np.ascontiguousarray(crop[:, ::-1]))
        both = time.perf_counter() - started
        vectors = {"sface-1": plain, "flip-averaged": plain + mirrored}
        return {k: v / np.linalg.norm(v) for k, v in vectors.items()}, [single], [both]

    return embed


def main() -> None:
    engine = Engine()
    cfp = cfp_dir()
    cfp_pairs = {p: read_cfp_pairs(cfp, p) for p in ("FF", "FP")}
    lfw_images = lfw_dir() / "lfw-deepfunneled"
    lfw_pairs, _ = read_pairs(lfw_dir() / "pairsDevTest.txt")
    paths = sorted(
        {cfp / p for pairs in cfp_pairs.values() for pair in pairs for p in (pair.left, pair.right)}
        | {lfw_images / p for pair in lfw_pairs for p in (pair.left, pair.right)}
    )
    embed = embedder(engine)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        found = dict(zip(paths, pool.map(embed, paths)))
    print(f"{len(paths)} images in {time.perf_counter() - started:.0f} s")

    def score(variant: str, left: Path, right: Path) -> float:
        a, b = found[left], found[right]
        return -1.0 if a is None or b is None else float(a[0][variant] @ b[0][variant])

    results: dict[str, Any] = {"images": len(paths), "without_face": sum(v is None for v in found.values())}
    for variant in VARIANTS:
        row: dict[str, Any] = {}
        for protocol, pairs in cfp_pairs.items():
            scores = np.array([score(variant, cfp / p.left, cfp / p.right) for p in pairs])
            labels = np.array([p.same for p in pairs])
            accuracy = fold_accuracy(scores, labels, np.array([p.fold for p in pairs]))
            tar = tar_at_far(*split_scores(scores, labels), 1e-3)
            row[f"cfp_{protocol}"] = {
                "accuracy": accuracy["mean"],
                "std": accuracy["std"],
                "tar_at_far_1e-3": tar["tar"],
            }
        scores = np.array([score(variant, lfw_images / p.left, lfw_images / p.right) for p in lfw_pairs])
        labels = np.array([p.same for p in lfw_pairs])
        folds = np.zeros(len(labels), dtype=np.int64)
        for i, members in enumerate(fold_indices(labels, 1)):
            folds[members] = i
        row["lfw_view1_test"] = {"accuracy": fold_accuracy(scores, labels, folds)["mean"]}
        results[variant] = row
    faces = [v for v in found.values() if v is not None]
    results["cost"] = {
        "sface-1": summary_ms([s for v in faces for s in v[1]]),
        "flip-averaged": summary_ms([s for v in faces for s in v[2]]),
    }
    lines = [
        "| variant | CFP FF accuracy | CFP FP accuracy | CFP FP TAR at FAR 1e-3 | LFW View 1 test | embed ms per face (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        r = results[variant]
        lines.append(
            f"| {variant} | {100 * r['cfp_FF']['accuracy']:.2f} % | {100 * r['cfp_FP']['accuracy']:.2f} % | "
            f"{100 * r['cfp_FP']['tar_at_far_1e-3']:.2f} % | {100 * r['lfw_view1_test']['accuracy']:.2f} % | "
            f"{results['cost'][variant]['p50_ms']} |"
        )
    markdown = (
        "### Flip averaging (sface)\n\n"
        f"{len(paths):,} images ({results['without_face']} without a face or refused), one detection and "
        "alignment each, embedded as is and flip-averaged in the same run (`benchmarks/flip_averaging.py`).\n\n"
        + "\n".join(lines)
    )
    print(markdown)
    write_results("flip_averaging", results, markdown)


if __name__ == "__main__":
    main()
