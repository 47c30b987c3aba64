"""Ways to use sface on turned faces, side by side: accuracy across pose and what each costs.

For each image, in one run: the face nearest the centre is found once (YuNet, as the
engine does, close-up pass included) and embedded several ways, each a candidate
FaceModelVersion:

- ``sface-1``: today's vector (SFace's 112 px crop on the five points, as ``alignCrop`` does);
- ``flip-averaged``: the crop and its mirror image, raw outputs added and normalised;
- ``no-nose alignment``: the crop placed on the eyes and mouth corners only; the nose tip,
  which swings far sideways in a turned face, left out of the fit;
- ``68-point alignment``: the crop placed on five points taken from dlib's 68-point
  landmarks (the engine's describe step) instead of YuNet's: eye centres, nose tip,
  mouth corners;
- ``68-point + sface-1``: that vector and today's, averaged;
- ``3 scales``: vectors of the crop and of the crop zoomed out and in by 10 %, averaged;
- ``5 shifts``: vectors of the crop and of the crop moved 3 px left, right, up and down, averaged;
- ``8 crops``: the 3 scales, the 4 shifts and the mirror image together;
- ``3 scales, mirrored``: the 3 scales, each also mirrored (6 crops): the face model
  ``sface-crops``, adopted (the same recipe: its vectors are this row's).

Each is scored on the same pairs:

- CFP folds 1-5 (``cfp_half``): frontal-frontal (FF) and frontal-profile (FP), each
  fold judged at the threshold most accurate on the other folds, and TAR at FAR 1e-3;
- LFW View 1 test (``pairsDevTest.txt``, 500 + 500 pairs, 10 interleaved folds).

An image without a face, or refused (under 80 px), scores -1 in every variant. Cost:
the embedding alone, per face, p50 over every face of the run (same process, same run).
None of these vectors is comparable with a sface-1 vector: adopting one would make a new
FaceModelVersion.

    python benchmarks/pose_variants.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import summary_ms, write_results
from visage.engine import Engine
from visage.engine.landmarks import _FROM_68, ShapePredictor, shape_points
from visage.engine.recognition import _SFACE_TEMPLATE, SFaceModel, align_sface, sface_alignment
from visage.errors import VisageError
from visage.evaluation.accuracy.cfp import cfp_dir, fold_accuracy, read_cfp_pairs
from visage.evaluation.accuracy.curves import split_scores, tar_at_far
from visage.evaluation.lfw import fold_indices, lfw_dir, read_pairs

VARIANTS = (
    "sface-1",
    "flip-averaged",
    "no-nose alignment",
    "68-point alignment",
    "68-point + sface-1",
    "3 scales",
    "5 shifts",
    "8 crops",
    "3 scales, mirrored",
)
#: The engine's landmarks that stand for YuNet's five points, in YuNet's order.
_FIVE_FROM_68 = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")
SHIFT_PX = 3.0
ZOOM = 0.1
Vectors = dict[str, np.ndarray]
Timings = dict[str, float]


def similarity_transform(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (weighted Umeyama least squares) taking ``points`` onto SFace's template."""
    w = weights / weights.sum()
    src, dst = np.asarray(points, np.float64), _SFACE_TEMPLATE
    src_mean, dst_mean = w @ src, w @ dst
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = (w[:, None] * dst_c).T @ src_c
    u, sigma, vt = np.linalg.svd(covariance)
    sign = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / (w @ (src_c**2).sum(axis=1)))
    return np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])


def embedder(engine: Engine) -> Callable[[Path], tuple[Vectors, Timings] | None]:
    model = engine.face_model("sface")
    assert isinstance(model, SFaceModel)
    predictor = ShapePredictor(68)

    def run(crop: np.ndarray) -> np.ndarray:
        vector = model.raw_vector(crop)
        return vector / np.linalg.norm(vector)

    def mean(vectors: list[np.ndarray]) -> np.ndarray:
        total = np.sum(vectors, axis=0)
        return total / np.linalg.norm(total)

    def embed(path: Path) -> tuple[Vectors, Timings] | None:
        try:
            image = engine.decode(path.read_bytes())
        except VisageError:
            return None
        detections = engine.detector.detect(image)
        if not detections:
            return None
        centre = np.array([image.width / 2, image.height / 2])
        face = min(detections, key=lambda d: float(np.sum((d.box[:2] + d.box[2:] / 2 - centre) ** 2)))
        rgb = image.rgb
        five = sface_alignment(face.points)

        def warp(matrix: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR)

        def timed(make: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
            started = time.perf_counter()
            return make(), time.perf_counter() - started

        plain, t_plain = timed(lambda: run(align_sface(rgb, face.points)))
        mirror, t_mirror = timed(lambda: run(align_sface(rgb, face.points)[:, ::-1]))
        no_nose, t_no_nose = timed(lambda: run(warp(similarity_transform(face.points, np.array([1, 1, 0, 1, 1.0])))))
        landmarks, t_landmarks = timed(lambda: shape_points(predictor.shape(rgb, face)))
        from_68 = np.array([landmarks[list(_FROM_68[point])].mean(axis=0) for point in _FIVE_FROM_68])
        aligned_68, t_68 = timed(lambda: run(warp(sface_alignment(from_68))))
        scaled = [timed(lambda f=f: run(align_sface(rgb, face.points, f))) for f in (1.0 - ZOOM, 1.0 + ZOOM)]
        shifts = []
        for dx, dy in ((SHIFT_PX, 0), (-SHIFT_PX, 0), (0, SHIFT_PX), (0, -SHIFT_PX)):
            moved = five.copy()
            moved[:, 2] += (dx, dy)
            shifts.append(timed(lambda m=moved: run(warp(m))))
        mirrored_scaled = [
            timed(lambda f=f: run(align_sface(rgb, face.points, f)[:, ::-1])) for f in (1.0 - ZOOM, 1.0 + ZOOM)
        ]
        scale_vectors = [plain] + [v for v, _ in scaled]
        shift_vectors = [plain] + [v for v, _ in shifts]
        vectors = {
            "sface-1": plain,
            "flip-averaged": mean([plain, mirror]),
            "no-nose alignment": no_nose,
            "68-point alignment": aligned_68,
            "68-point + sface-1": mean([aligned_68, plain]),
            "3 scales": mean(scale_vectors),
            "5 shifts": mean(shift_vectors),
            "8 crops": mean(scale_vectors + shift_vectors[1:] + [mirror]),
            "3 scales, mirrored": mean(scale_vectors + [mirror] + [v for v, _ in mirrored_scaled]),
        }
        extra_scales = sum(t for _, t in scaled)
        extra_shifts = sum(t for _, t in shifts)
        timings = {
            "sface-1": t_plain,
            "flip-averaged": t_plain + t_mirror,
            "no-nose alignment": t_no_nose,
            "68-point alignment": t_landmarks + t_68,
            "68-point + sface-1": t_plain + t_landmarks + t_68,
            "3 scales": t_plain + extra_scales,
            "5 shifts": t_plain + extra_shifts,
            "8 crops": t_plain + extra_scales + extra_shifts + t_mirror,
            "3 scales, mirrored": t_plain + extra_scales + t_mirror + sum(t for _, t in mirrored_scaled),
        }
        return vectors, timings

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
    results["cost"] = {variant: summary_ms([v[1][variant] for v in faces]) for variant in VARIANTS}
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
        "### Ways to use sface on turned faces\n\n"
        f"{len(paths):,} images ({results['without_face']} without a face or refused), one detection each, "
        "embedded every way in the same run (`benchmarks/pose_variants.py`, whose docstring says what each "
        "variant is).\n\n" + "\n".join(lines)
    )
    print(markdown)
    write_results("pose_variants", results, markdown)


if __name__ == "__main__":
    main()
