"""Engine speed: Visage vs a face_recognition-style dlib pipeline, same images, same run.

Images: the six portraits and skimage's astronaut, each as a one-face JPEG with a
640 px long side, plus 500 LFW images (250 x 250). For each image, timed after a
warm-up and including JPEG decoding:

- detect: DetectFaces with the default attributes (box, 30 landmarks, pose, quality)
- detect_all: DetectFaces with Attributes=ALL (plus age, gender, eyes, mouth, smile)
- detect_embed: detection, default attributes and the sface embedding (what IndexFaces needs)
- embed_per_face: the sface embedding alone, per face
- baseline: face_recognition's recipe (dlib HOG with upsample 1, 5-point alignment,
  ResNet descriptor), per image

Goal: detect_embed p50 <= 30 ms on the 640 px images, and >= 4x faster than the baseline.

    python benchmarks/engine_speed.py [--lfw 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import random
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
from visage.evaluation.data import eval_data_dir


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
    args = parser.parse_args()

    engine = Engine()
    engine.warm_up()
    baseline = Baseline()
    sets = image_sets(args.lfw)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, items in sets.items():
        repeat = args.repeat if name == "one_face_640" else 1
        per_face: list[float] = []

        def embed_only(data: bytes) -> None:
            decoded = engine.decode(data)
            detections = engine.detector.detect(decoded)
            start = time.perf_counter()
            engine.face_model("sface").embed(decoded, detections)
            if detections:
                per_face.append((time.perf_counter() - start) / len(detections))

        results[name] = {
            "detect": summary_ms(timed(lambda d: engine.detect_faces(d), items, repeat)),
            "detect_all": summary_ms(timed(lambda d: engine.detect_faces(d, attributes=["ALL"]), items, repeat)),
            "detect_embed": summary_ms(timed(lambda d: engine.embed(d), items, repeat)),
            "baseline": summary_ms(timed(baseline, items, repeat)),
        }
        for _ in range(repeat):
            for item in items:
                embed_only(item)
        results[name]["embed_per_face"] = summary_ms(per_face)
        ratio = results[name]["baseline"]["p50_ms"] / results[name]["detect_embed"]["p50_ms"]
        results[name]["speedup_vs_baseline_p50"] = {"ratio": round(ratio, 2)}

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
    ]
    markdown = "\n".join(lines)
    print(markdown)
    write_results("engine_speed", {"results": results, "peak_rss_mib": peak}, markdown)


if __name__ == "__main__":
    main()
