"""Bulk indexing: every image of a folder into a collection, in parallel, resumably.

Each worker process holds its own engine and store and runs the same IndexFaces as
the server (so quality filtering, de-duplication and transactions are the server's).
An image whose bytes and ExternalImageId are already in the collection is skipped
before any model runs, so an interrupted run resumes where it stopped.

When the ExternalImageId comes from the file, the file names the person in it: by
default only the largest face of each image (the subject) is indexed, never a
smaller one in its place, so a bystander is not filed under the subject's name.
Files that are not PNG or JPEG are listed, not skipped in silence.
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
from typing import Any

from visage.config import Settings
from visage.contract import shape_max, shape_pattern
from visage.errors import InvalidParameterException, ResourceAlreadyExistsException, VisageError

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
    found: int = 0  # faces detected (indexed or not)
    kept: tuple[int, ...] = ()  # which faces were indexed: their ranks by size, 1 the largest


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
    #: Images where several faces were found: path -> (faces found, ranks of the faces kept).
    several_faces: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    #: Files under the folder that are not PNG or JPEG (GIF, WebP, HEIC...), not indexed.
    not_images: list[str] = field(default_factory=list)

    def add(self, result: ImageResult) -> None:
        self.images += 1
        self.faces += result.faces
        self.unindexed_reasons.update(result.unindexed)
        if result.found > 1:
            self.several_faces[result.path] = (result.found, result.kept)
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


@dataclass(frozen=True)
class FolderContents:
    """The files under a folder: the PNG and JPEG images by name (broken symbolic links included,
    so they are reported as errors), and the other files, which are not indexed (hidden files are
    left out of both)."""

    images: list[Path]
    not_images: list[Path]


def scan_folder(folder: Path) -> FolderContents:
    images, others = [], []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or path.is_symlink()):
            images.append(path)
        elif path.is_file():
            others.append(path)
    return FolderContents(images, others)


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


def _index_one(job: tuple[str, str | None, dict[str, Any], bool]) -> ImageResult:
    from visage.service import Caller, RekognitionService

    assert _worker is not None
    service, collection = _worker
    assert isinstance(service, RekognitionService)
    path, external, options, largest_only = job
    try:
        data = Path(path).read_bytes()
        if service.store.find_image(collection, hashlib.sha256(data).hexdigest(), external):
            return ImageResult(path, "skipped")
        request: dict[str, Any] = {"CollectionId": collection, "Image": {"Bytes": data}, **options}
        if external is not None:
            request["ExternalImageId"] = external
        response = service.index_faces(request, Caller.local("visage-index"), largest_only=largest_only)
    except (VisageError, OSError) as error:
        return ImageResult(path, "error", error=f"{type(error).__name__}: {error}")
    records, unindexed = response["FaceRecords"], response["UnindexedFaces"]
    reasons = tuple(reason for face in unindexed for reason in face["Reasons"])
    status = "indexed" if records else ("refused" if unindexed else "no_face")
    areas = sorted(
        ((_area(f["FaceDetail"]), i < len(records)) for i, f in enumerate(records + unindexed)), reverse=True
    )
    kept = tuple(rank for rank, (_, indexed) in enumerate(areas, start=1) if indexed)
    return ImageResult(path, status, faces=len(records), unindexed=reasons, found=len(areas), kept=kept)


def _area(detail: dict[str, Any]) -> float:
    box = detail["BoundingBox"]
    return float(box["Width"] * box["Height"])


def index_folder(
    folder: Path,
    collection: str,
    settings: Settings,
    workers: int = 2,
    external_id_from: str = "filename",
    progress: Callable[[ImageResult], None] | None = None,
    max_faces: int | None = None,
    quality_filter: str | None = None,
    model: str | None = None,
) -> Summary:
    """Index every PNG and JPEG under ``folder`` into ``collection`` (created if missing, with
    face model ``model``, default the settings' one; an existing collection must be of that model).

    ``max_faces`` faces are indexed per image, the largest first (default: 1 when the
    ExternalImageId comes from the file, so only the subject is named; else IndexFaces' 100);
    ``quality_filter`` is IndexFaces' QualityFilter (default AUTO).
    """
    from visage.service import Caller, open_service

    service = open_service(dataclasses.replace(settings, face_model=model or settings.face_model))
    try:
        try:
            service.create_collection({"CollectionId": collection}, Caller.local("visage-index"))
        except ResourceAlreadyExistsException:
            existing = service.store.get_collection(collection)
            if model is not None and existing.face_model != model:
                raise InvalidParameterException(
                    f"Collection {collection} holds {existing.face_model_version} vectors ({existing.face_model}), "
                    f"not {model}; index into a new collection to use {model}."
                ) from None
    finally:
        service.store.close()
    contents = scan_folder(folder)
    naming = external_id_from != "none"
    options: dict[str, Any] = {"MaxFaces": max_faces or (1 if naming else settings.max_faces)}
    if quality_filter is not None:
        options["QualityFilter"] = quality_filter
    jobs = [(str(p), external_id(p, folder, external_id_from), options, naming) for p in contents.images]
    summary = Summary(not_images=[str(p) for p in contents.not_images])
    for result in _run(jobs, settings, collection, workers):
        summary.add(result)
        if progress is not None:
            progress(result)
    return summary


def _run(
    jobs: list[tuple[str, str | None, dict[str, Any], bool]], settings: Settings, collection: str, workers: int
) -> Iterator[ImageResult]:
    with ProcessPoolExecutor(max(1, workers), initializer=_start_worker, initargs=(settings, collection)) as pool:
        yield from pool.map(_index_one, jobs, chunksize=8)
