"""What a video job finds, frame by frame: the faces (StartFaceDetection), or the people,
with their Index and their matches in a collection (StartFaceSearch).

Both walk the video's sampled frames (:meth:`visage.jobs.video.Video.frames`) and yield,
for each, its timestamp and its results in Rekognition's shapes (``FaceDetection``,
``PersonMatch``) as :class:`~visage.store.base.JobResult`, so that a worker saves them as
it goes and the command line prints them. Nothing is kept from one frame to the next but
the tracker's people.

The faces of a few frames are found at once, on ``threads`` threads, while the next frames
are decoded (:func:`in_order`); the results come out in time order all the same, and the
tracker and the searches run on them one frame after the other.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from visage.engine import Engine
from visage.faces import BoundingBox, Face, FaceDetail, video_attributes
from visage.jobs.still_faces import MadeVector, StillFaces, look
from visage.jobs.tracker import FaceTracker
from visage.jobs.video import SampledFrame, Video
from visage.store.base import AuditRecord, Collection, JobResult

if TYPE_CHECKING:
    from visage.service import RekognitionService

#: At most this many FaceMatches per person and frame, the most similar first.
MAX_FACE_MATCHES = 10

#: A sampled frame's timestamp (ms) and its results.
FrameResults = tuple[int, list[JobResult]]
T = TypeVar("T")


def in_order(
    frames: Iterable[SampledFrame], work: Callable[[SampledFrame], T], pool: ThreadPoolExecutor, threads: int
) -> Iterator[tuple[SampledFrame, T]]:
    """``work`` done on each frame by ``pool``'s ``threads`` threads, yielded in frame order; at
    most two frames per thread are decoded ahead, so memory does not grow with the video."""
    pending: deque[tuple[SampledFrame, Future[T]]] = deque()
    for frame in frames:
        pending.append((frame, pool.submit(work, frame)))
        if len(pending) >= 2 * threads:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


def _frame_threads(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="visage-frames")


def detect_faces(
    video: Video, engine: Engine, attributes: list[str], rate: float, threads: int = 1
) -> Iterator[FrameResults]:
    """The faces of each sampled frame, largest first, with ``attributes`` (DEFAULT or ALL; as
    in Rekognition, ALL leaves out the image-only EyeDirection)."""
    wanted = sorted(video_attributes(attributes))

    def faces_of(frame: SampledFrame) -> list[FaceDetail]:
        return engine.detect_faces(frame.image, wanted)

    with _frame_threads(threads) as pool:
        for frame, faces in in_order(video.frames(rate), faces_of, pool, threads):
            t = frame.timestamp_ms
            yield t, [JobResult(t, {"Timestamp": t, "Face": face.to_rekognition()}) for face in faces]


def search_faces(
    video: Video,
    service: RekognitionService,
    collection: Collection,
    threshold: float,
    tracker: FaceTracker,
) -> Iterator[FrameResults]:
    """The people of each frame sampled at the service's ``video_sample_rate``, by Index (from
    ``tracker``, whose merges the caller applies at the end), each with the faces of
    ``collection`` whose Similarity to their face reaches ``threshold`` (none: an empty
    FaceMatches). A face that has not moved or changed keeps the vector its person was given
    at most ``video_vector_reuse_ms`` before (:mod:`visage.jobs.still_faces`)."""
    settings = service.settings
    still = StillFaces(settings.video_vector_reuse_ms)

    def faces_of(frame: SampledFrame) -> tuple[list[Face], list[np.ndarray]]:
        faces = service.analyze(collection, frame.image, "NONE", None, embed=False)
        return faces, [look(frame.image.rgb, face.detail.bounding_box) for face in faces]

    def finish(
        t: int, faces: list[Face], boxes: list[BoundingBox], made: list[MadeVector], embedding: Future[list[Face]]
    ) -> FrameResults:
        for vector, face in zip([m for m in made if m.made_ms == t], embedding.result()):
            vector.vector = face.embedded.vector
            matches = service.search_collection(collection, vector.vector, MAX_FACE_MATCHES, threshold)
            vector.matches = [service.face_match(collection, m) for m in matches]
        indexes = tracker.assign(t, boxes, [m.made for m in made])
        results = []
        for index, face, vector in sorted(zip(indexes, faces, made), key=lambda triple: triple[0]):
            person = {"BoundingBox": face.detail.bounding_box.to_rekognition(), "Face": face.detail.to_rekognition()}
            body = {"Timestamp": t, "Person": person, "FaceMatches": vector.matches}
            results.append(JobResult(t, body, person_index=index))
        return t, results

    # A frame's new vectors are made on the threads while the next frames' faces are found; its
    # results are finished in time order, each frame after the vectors it keeps were made.
    with _frame_threads(settings.threads) as pool:
        embedding: deque[tuple[int, list[Face], list[BoundingBox], list[MadeVector], Future[list[Face]]]] = deque()
        for frame, (faces, looks) in in_order(
            video.frames(settings.video_sample_rate), faces_of, pool, settings.threads
        ):
            t = frame.timestamp_ms
            boxes = [face.detail.bounding_box for face in faces]
            made = still.vectors(t, boxes, looks)
            new = [face for face, m in zip(faces, made) if m.made_ms == t]
            embedding.append(
                (
                    t,
                    faces,
                    boxes,
                    made,
                    pool.submit(service.engine.embed_faces, frame.image, new, collection.face_model),
                )
            )
            if len(embedding) > settings.threads:
                yield finish(*embedding.popleft())
        while embedding:
            yield finish(*embedding.popleft())


def matched_faces(results: Iterable[JobResult]) -> dict[str, float]:
    """The FaceIds that face-search results matched, each with its best Similarity."""
    best: dict[str, float] = {}
    for result in results:
        for match in result.body.get("FaceMatches", ()):
            face_id = match["Face"]["FaceId"]
            best[face_id] = max(best.get(face_id, 0.0), match["Similarity"])
    return best


def search_audit_record(
    access_key_id: str, collection_id: str, threshold: float, matched: dict[str, float]
) -> AuditRecord:
    """The one audit record of a face search through a video: the FaceIds it matched."""
    return AuditRecord(
        time=datetime.now(UTC),
        access_key_id=access_key_id,
        operation="StartFaceSearch",
        collection_id=collection_id,
        threshold=threshold,
        match_count=len(matched),
        best_similarity=max(matched.values()) if matched else None,
        face_ids=sorted(matched),
    )
