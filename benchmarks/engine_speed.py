"""Engine speed: Visage vs a face_recognition-style dlib pipeline, same images, same run.

Images: the six portraits and skimage's astronaut, each as a one-face JPEG with a
640 px long side, plus 500 LFW images (250 x 250). For each image, timed after a
warm-up and including JPEG decoding:

- detect: DetectFaces with the default attributes (box, 30 landmarks, pose, quality)
- detect_all: DetectFaces with Attributes=ALL (plus age, gender, eyes, mouth, smile and
  EyeDirection)
- detect_embed: detection, default attributes and the sface embedding (what IndexFaces needs)
- embed_per_face: the sface embedding alone, per face
- baseline: face_recognition's recipe (dlib HOG with upsample 1, 5-point alignment,
  ResNet descriptor), per image
- eye_direction_per_face: EyeDirection alone (both eye crops, the iris model, the angles),
  per face it is estimated for (near-frontal, at least 80 px: on the 640 px images the
  astronaut's head pitch puts her outside the gate), on the 68 points found beforehand.
  A choice adding more than 10 ms per face at p50 would have to be a face model a
  collection chooses rather than a default; EyeDirection is only ever computed when
  asked for (Attributes ALL or EYE_DIRECTION).

And each face model (sface, dlib, sface-crops, fusion) on the 640 px images: its embedding alone,
per face (for sface, the same measurement as embed_per_face), and its memory: the
resident memory (RSS) a fresh process gains by loading it and embedding one face,
after the detector has run. The README's model table, docs/accuracy.md and
docs/engine.md take their embedding times and memory from these results only.

Goal: detect_embed p50 <= 30 ms on the 640 px images, and >= 4x faster than the baseline.

    python benchmarks/engine_speed.py [--lfw 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import peak_rss_mib, summary_ms, write_results
from visage.engine import Engine
from visage.engine.bundled import DLIB_RESNET, DLIB_SHAPE_5, verified_path
from visage.engine.eye_direction import GAZE, IrisModel, eye_corners, gaze_applies
from visage.engine.landmarks import ShapePredictor, shape_points, solve_pose
from visage.engine.registry import MODEL_NAMES
from visage.evaluation.data import eval_data_dir

#: What a choice may add per face at p50 and stay a default (more makes it a face model to choose).
EXTRA_PER_FACE_MS = 10.0


def jpeg_640(image: Image.Image) -> bytes:
    image = image.convert("RGB")
    scale = 640 / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def image_sets(lfw_count: int) -> dict[str, list[bytes]]:
    from skimage import data

    data_dir = eval_data_dir()
    portraits = sorted((data_dir / "portraits").glob("person_*.jpg")) + sorted(
        (data_dir / "portraits").glob("impostor_*.jpg")
    )
    one_face = [jpeg_640(Image.open(p)) for p in portraits] + [jpeg_640(Image.fromarray(data.astronaut()))]
    lfw = sorted((data_dir / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    chosen = random.Random(0).sample(lfw, min(lfw_count, len(lfw)))
    return {"one_face_640": one_face, "lfw_250": [p.read_bytes() for p in chosen]}


class Baseline:
    """face_recognition's face_encodings(): HOG (upsample 1), sp5, ResNet descriptor."""

    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(verified_path(DLIB_SHAPE_5))
        self.net = dlib.face_recognition_model_v1(verified_path(DLIB_RESNET))

    def __call__(self, data: bytes) -> int:
        rgb = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
        boxes = self.detector(rgb, 1)
        for box in boxes:
            self.net.compute_face_descriptor(rgb, self.shape(rgb, box))
        return len(boxes)


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def model_memory(model: str) -> None:
    """Run in a fresh process: print the RSS it gains by loading ``model`` and embedding a face."""
    from visage.evaluation.data import eval_data_dir

    engine = Engine()
    image = engine.decode((eval_data_dir() / "portraits" / "person_a_1.jpg").read_bytes())
    detections = engine.detector.detect(image)
    before = rss_mib()
    engine.face_model(model).embed(image, detections)
    print(json.dumps({"model_mib": round(rss_mib() - before, 1), "process_rss_mib": round(rss_mib(), 1)}))


def memory_of(model: str) -> dict[str, float]:
    run = subprocess.run([sys.executable, __file__, "--memory-of", model], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def embed_times(engine: Engine, model: str, items: list[bytes], repeat: int) -> list[float]:
    """Seconds per face of ``model``'s embedding alone, one image at a time, after a warm-up."""
    prepared = []
    for item in items:
        decoded = engine.decode(item)
        detections = engine.detector.detect(decoded)
        if detections:
            prepared.append((decoded, detections))
    face_model = engine.face_model(model)
    face_model.embed(*prepared[0])  # warm-up: lazy initialisation is not a per-face cost
    per_face = []
    for _ in range(repeat):
        for decoded, detections in prepared:
            start = time.perf_counter()
            face_model.embed(decoded, detections)
            per_face.append((time.perf_counter() - start) / len(detections))
    return per_face


def eye_direction_times(engine: Engine, items: list[bytes], repeat: int) -> list[float]:
    """Seconds per gated face of EyeDirection alone, one image at a time, after a warm-up."""
    predictor, iris = ShapePredictor(68), IrisModel()
    prepared = []
    for item in items:
        decoded = engine.decode(item)
        corners = []
        for detection in engine.detector.detect(decoded):
            points = shape_points(predictor.shape(decoded.rgb, detection))
            pose = solve_pose(points, decoded.width, decoded.height)
            if gaze_applies(detection.box[2], detection.box[3], pose):
                corners.append(eye_corners(points))
        if corners:
            prepared.append((decoded.rgb, corners))
    iris.offsets(*prepared[0])  # warm-up
    per_face = []
    for _ in range(repeat):
        for rgb, corners in prepared:
            start = time.perf_counter()
            [GAZE.direction(offsets) for offsets in iris.offsets(rgb, corners)]
            per_face.append((time.perf_counter() - start) / len(corners))
    return per_face


def timed(function, items: list[bytes], repeat: int) -> list[float]:
    function(items[0])  # warm-up
    out = []
    for _ in range(repeat):
        for item in items:
            start = time.perf_counter()
            function(item)
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lfw", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the 640 px set")
    parser.add_argument("--memory-of", choices=MODEL_NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        model_memory(args.memory_of)
        return

    engine = Engine()
    engine.warm_up()
    baseline = Baseline()
    sets = image_sets(args.lfw)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, items in sets.items():
        repeat = args.repeat if name == "one_face_640" else 1
        results[name] = {
            "detect": summary_ms(timed(lambda d: engine.detect_faces(d), items, repeat)),
            "detect_all": summary_ms(timed(lambda d: engine.detect_faces(d, attributes=["ALL"]), items, repeat)),
            "detect_embed": summary_ms(timed(lambda d: engine.embed(d), items, repeat)),
            "baseline": summary_ms(timed(baseline, items, repeat)),
        }
        results[name]["embed_per_face"] = summary_ms(embed_times(engine, "sface", items, repeat))
        results[name]["eye_direction_per_face"] = summary_ms(eye_direction_times(engine, items, repeat))
        ratio = results[name]["baseline"]["p50_ms"] / results[name]["detect_embed"]["p50_ms"]
        results[name]["speedup_vs_baseline_p50"] = {"ratio": round(ratio, 2)}

    face_models = {}
    for model in MODEL_NAMES:
        per_face = (  # sface's is embed_per_face above: one measurement, reported in both places
            results["one_face_640"]["embed_per_face"]
            if model == "sface"
            else summary_ms(embed_times(engine, model, sets["one_face_640"], args.repeat))
        )
        face_models[model] = {"embed_per_face": per_face, **memory_of(model)}

    peak = peak_rss_mib()
    lines = [
        "| images | step | n | p50 ms | p95 ms |",
        "|---|---|---|---|---|",
    ]
    for name, steps in results.items():
        for step, s in steps.items():
            if "p50_ms" in s:
                lines.append(f"| {name} | {step} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} |")
    one = results["one_face_640"]
    lines += [
        "",
        f"detect + embed of a one-face 640 px image: p50 {one['detect_embed']['p50_ms']} ms "
        f"(goal <= 30 ms); {one['speedup_vs_baseline_p50']['ratio']}x faster than the face_recognition-style "
        f"baseline at p50 (goal >= 4x). LFW 250 px: {results['lfw_250']['speedup_vs_baseline_p50']['ratio']}x. "
        f"Peak RSS of the whole run (both pipelines loaded): {peak} MiB.",
        "",
        f"EyeDirection, only when asked for, adds {one['eye_direction_per_face']['p50_ms']} ms per face at p50 "
        f"on the 640 px images ({results['lfw_250']['eye_direction_per_face']['p50_ms']} ms on LFW 250 px), "
        f"{'within' if one['eye_direction_per_face']['p50_ms'] <= EXTRA_PER_FACE_MS else 'over'} the "
        f"{EXTRA_PER_FACE_MS:g} ms a default may add per face.",
    ]
    lines += [
        "",
        "Each face model on the one-face 640 px images (its embedding alone, per face; memory: what a fresh "
        "process gains by loading it and embedding a face):",
        "",
        "| face model | n | embed p50 ms | embed p95 ms | memory MiB |",
        "|---|---|---|---|---|",
    ]
    for model, m in face_models.items():
        e = m["embed_per_face"]
        lines.append(f"| {model} | {e['n']} | {e['p50_ms']} | {e['p95_ms']} | {m['model_mib']} |")
    extra = face_models["sface-crops"]["embed_per_face"]["p50_ms"] - face_models["sface"]["embed_per_face"]["p50_ms"]
    verdict = (
        ("within", "it could be the default")
        if extra <= EXTRA_PER_FACE_MS
        else ("over", "a face model a collection chooses, not the default")
    )
    lines += [
        "",
        f"sface-crops (six crops of each face for sface's one) adds {extra:.1f} ms per face at p50, "
        f"{verdict[0]} the {EXTRA_PER_FACE_MS:g} ms a default may add: {verdict[1]}.",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    write_results(
        "engine_speed",
        {"results": results, "face_models": face_models, "face_model_images": "one_face_640", "peak_rss_mib": peak},
        markdown,
    )


if __name__ == "__main__":
    main()
