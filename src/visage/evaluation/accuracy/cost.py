"""What a face model costs: milliseconds to embed one face, on this machine, now.

Images are decoded and their faces detected first (not timed); then the face
model's ``embed`` is timed alone, one image at a time, after one warm-up call.
Wall-clock and CPU time (all threads of this process) are both kept: on a
shared machine the wall clock also counts waiting for a core, so the load
average is recorded beside them.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visage.engine import Engine


def embedding_cost(engine: Engine, model: str, paths: Sequence[Path]) -> dict[str, Any]:
    face_model = engine.face_model(model)
    prepared = []
    for path in paths:
        image = engine.decode(path.read_bytes())
        detections = engine.detector.detect(image)
        if detections:
            prepared.append((image, detections[:1]))
    if not prepared:
        raise ValueError("no face found in the images to time")
    face_model.embed(*prepared[0])  # warm-up: lazy initialisation is not a per-face cost
    started, cpu_started = time.perf_counter(), time.process_time()
    for image, detections in prepared:
        face_model.embed(image, detections)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "embed_ms_per_face": round(1000 * elapsed / len(prepared), 1),
        "embed_cpu_ms_per_face": round(1000 * cpu / len(prepared), 1),
        "faces_timed": len(prepared),
        "what": "the face model's embed() alone (alignment + network), one face per call; "
        "detection and landmarks are shared by every model and not included",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the time",
    }
