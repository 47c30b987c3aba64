"""A second set of gallery distractors, made from real faces: sface vectors of real eval photos
changed as photos of one person in a real gallery differ (flipped, cropped, blurred, darker or
brighter, JPEG-compressed), for ``benchmarks/search_scale.py``.

The normal distractors (search_scale.Distractors) are drawn from a normal fitted to LFW's
vectors: they have faces' spread, but no person has two of them, and none is a near-copy of
another. A real gallery holds many photos of each person and near-duplicates, so a query has
many near-ties around its best match, which is where an approximate index errs. These
vectors are such near-copies: each source photo gives ``VARIANTS`` of them.

Sources: LFW's photos (``exclude``: the search's query photos are left out, so no query has a
copy of itself in the gallery), CFP's frontal and profile photos, the UTKFace subset and the
FairFace sample of the eval data. A variant's face is found again (the crop and flip move
it) and its largest face is embedded; a variant without a face gives no vector.

The vectors are kept in the evaluation cache (``~/.cache/visage/eval/distractors``), keyed by
the face model's version, this recipe and the analysis code, in parts of 1,000 photos, since
they take about twenty minutes to make on 2 cores. A variant the engine refuses (a photo
under 80 px on a side) gives no vector.

    python benchmarks/augmented_faces.py      # make (or report) the set
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from visage.engine import Engine
from visage.errors import VisageError
from visage.evaluation.cache import cache_dir, code_digest
from visage.evaluation.data import eval_data_dir

#: Variants made of each source photo.
VARIANTS = 5
#: Photos per saved part of the set.
PART = 1000
#: Bumped whenever :func:`variant` changes, so cached vectors of another recipe are not used.
RECIPE = "augmented-faces-1"


def source_photos(exclude: Iterable[Path] = ()) -> list[Path]:
    """The real photos the variants are made from, in a fixed order (without ``exclude``)."""
    data = eval_data_dir()
    left_out = {p.resolve() for p in exclude}
    photos = [
        *sorted((data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg")),
        *sorted((data / "cfp_half" / "Data").rglob("*.jpg")),
        *sorted((data / "utkface_crop_part1").rglob("*.jpg")),
        *sorted((data / "fairface_age_gender_540").rglob("*.jpg")),
    ]
    return [p for p in photos if p.resolve() not in left_out]


def variant(photo: Image.Image, rng: np.random.Generator, number: int) -> bytes:
    """Variant ``number`` (0 to VARIANTS - 1) of a photo, as JPEG bytes: each changes the photo in
    two or three of the ways photos of one person differ, by amounts drawn from ``rng``."""
    image = photo.convert("RGB")
    width, height = image.size
    if number in (0, 3):
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if number in (1, 3, 4):  # a tighter or shifted framing, back to the photo's size
        left, top = rng.uniform(0, 0.12, 2) * (width, height)
        right, bottom = (1 - rng.uniform(0, 0.12, 2)) * (width, height)
        image = image.crop((round(left), round(top), round(right), round(bottom))).resize((width, height))
    if number in (2, 3):
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 2.2))))
    if number in (0, 2, 4):
        image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.6, 1.4)))
    quality = int(rng.integers(15, 45)) if number in (1, 4) else 90
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _vectors_of(engine: Engine, index: int, path: Path) -> list[np.ndarray]:
    rng = np.random.default_rng([1, index])
    with Image.open(path) as photo:
        photo.load()
        made = []
        for number in range(VARIANTS):
            try:
                image = engine.decode(variant(photo, rng, number))
            except VisageError:  # refused as the service refuses it: smaller than 80 px on a side, say
                continue
            detections = engine.detector.detect(image)
            if detections:
                (embedding,) = engine.face_model("sface").embed(image, detections[:1])
                made.append(embedding.vector)
    return made


def augmented_vectors(sources: list[Path], threads: int = 2) -> np.ndarray:
    """The sface vectors of the variants of ``sources`` (:func:`source_photos`; float32, unit length, one
    row each), made once and then read from the cache."""
    engine = Engine()
    key = hashlib.sha1(
        repr((RECIPE, VARIANTS, engine.face_model("sface").version, code_digest(), [str(p) for p in sources])).encode()
    ).hexdigest()[:12]
    folder = cache_dir() / "distractors" / f"{RECIPE}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    parts = []
    # In parts of PART photos, each saved when done: a run stopped midway goes on where it stopped.
    for first in range(0, len(sources), PART):
        path = folder / f"{first:06d}.npy"
        if not path.exists():
            items = list(zip(range(first, first + PART), sources[first : first + PART]))
            with ThreadPoolExecutor(threads) as pool:
                made = [v for vectors in pool.map(lambda item: _vectors_of(engine, *item), items) for v in vectors]
            temporary = path.with_suffix(".tmp.npy")
            np.save(temporary, np.array(made, np.float32).reshape(-1, engine.face_model("sface").dimension))
            temporary.replace(path)
            done = min(first + PART, len(sources))
            print(f"augmented faces: {done:,}/{len(sources):,} photos, {time.monotonic() - started:.0f} s", flush=True)
        parts.append(np.load(path))
    return np.concatenate(parts)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from search_scale import query_photos

    sources = source_photos(query_photos())
    made = augmented_vectors(sources)
    print(f"{len(made):,} vectors from {len(sources):,} photos")
