"""Bulk indexing: every image of a folder into a collection, in parallel, resumably.

Each worker process holds its own engine and store and runs the same IndexFaces as
the server (so quality filtering, de-duplication and transactions are the server's).
An image whose bytes and ExternalImageId are already in the collection is skipped
before any model runs, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from visage.config import Settings
from visage.contract import shape_max, shape_pattern
from visage.errors import ResourceAlreadyExistsException, VisageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class ImageResult:
    path: str
    status: (
        str  # "indexed", "skipped" (already there), "refused" (every face failed the quality bar), "no_face", "error"
    )
    faces: int = 0
    unindexed: tuple[str, ...] = ()  # reasons of faces not indexed
    error: str = ""


@dataclass
class Summary:
    images: int = 0
    indexed: int = 0
    skipped: int = 0
    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    refused: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    unindexed_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, result: ImageResult) -> None:
        self.images += 1
        self.faces += result.faces
        self.unindexed_reasons.update(result.unindexed)
        if result.status == "indexed":
            self.indexed += 1
        elif result.status == "skipped":
            self.skipped += 1
        elif result.status == "no_face":
            self.no_face.append(result.path)
        elif result.status == "refused":
            self.refused[result.path] = result.unindexed
        else:
            self.errors[result.path] = result.error


def find_images(folder: Path) -> list[Path]:
    """Every JPEG and PNG under ``folder`` by name, broken symbolic links included (they
    are reported as errors, not silently left out)."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink())
    )


def external_id(path: Path, folder: Path, source: str) -> str | None:
    """ExternalImageId for an image: its file name stem, its relative path, or none."""
    if source == "none":
        return None
    text = path.stem if source == "filename" else str(path.relative_to(folder).with_suffix("")).replace(os.sep, ":")
    return as_external_image_id(text) or None


def as_external_image_id(text: str, keep_end: bool = False) -> str:
    """``text`` made a valid ExternalImageId: each character the service model's pattern
    does not allow becomes ``_``, and it is cut to the model's maximum length, keeping its
    start (or its end)."""
    allowed, longest = shape_pattern("ExternalImageId"), shape_max("ExternalImageId")
    cleaned = "".join(c if allowed.fullmatch(c) else "_" for c in text)
    return cleaned[-longest:] if keep_end else cleaned[:longest]


# The service of this worker process (each process of the pool has its own), set once by
# the pool's initializer: the models and the store connection it holds are loaded once.
_worker: tuple[object, str] | None = None


def _start_worker(settings: Settings, collection: str) -> None:
    global _worker
    import cv2

    from visage.service import open_service

    cv2.setNumThreads(1)  # one process per core does the parallelism
    _worker = (open_service(dataclasses.replace(settings, model_threads=1)), collection)


def _index_one(job: tuple[str, str | None]) -> ImageResult:
    from visage.service import Caller, RekognitionService

    assert _worker is not None
    service, collection = _worker
    assert isinstance(service, RekognitionService)
    path, external = job
    try:
        data = Path(path).read_bytes()
        if service.store.find_image(collection, hashlib.sha256(data).hexdigest(), external):
            return ImageResult(path, "skipped")
        request = {"CollectionId": collection, "Image": {"Bytes": data}}
        if external is not None:
            request["ExternalImageId"] = external
        response = service.index_faces(request, Caller.local("visage-index"))
    except (VisageError, OSError) as error:
        return ImageResult(path, "error", error=f"{type(error).__name__}: {error}")
    records, unindexed = response["FaceRecords"], response["UnindexedFaces"]
    reasons = tuple(reason for face in unindexed for reason in face["Reasons"])
    status = "indexed" if records else ("refused" if unindexed else "no_face")
    return ImageResult(path, status, faces=len(records), unindexed=reasons)


def index_folder(
    folder: Path,
    collection: str,
    settings: Settings,
    workers: int = 2,
    external_id_from: str = "filename",
    progress: Callable[[ImageResult], None] | None = None,
) -> Summary:
    """Index every PNG and JPEG under ``folder`` into ``collection`` (created if missing)."""
    from visage.service import Caller, open_service

    service = open_service(settings)
    try:
        service.create_collection({"CollectionId": collection}, Caller.local("visage-index"))
    except ResourceAlreadyExistsException:
        pass
    finally:
        service.store.close()
    jobs = [(str(p), external_id(p, folder, external_id_from)) for p in find_images(folder)]
    summary = Summary()
    for result in _run(jobs, settings, collection, workers):
        summary.add(result)
        if progress is not None:
            progress(result)
    return summary


def _run(
    jobs: list[tuple[str, str | None]], settings: Settings, collection: str, workers: int
) -> Iterator[ImageResult]:
    with ProcessPoolExecutor(max(1, workers), initializer=_start_worker, initargs=(settings, collection)) as pool:
        yield from pool.map(_index_one, jobs, chunksize=8)
