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

from visage.engine import Engine
from visage.faces import Face, FaceDetail
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
    frames: Iterable[SampledFrame], work: Callable[[SampledFrame], T], threads: int
) -> Iterator[tuple[SampledFrame, T]]:
    """``work`` done on each frame by ``threads`` threads, yielded in frame order; at most two
    frames per thread are decoded ahead, so memory does not grow with the video."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="visage-frames") as pool:
        pending: deque[tuple[SampledFrame, Future[T]]] = deque()
        for frame in frames:
            pending.append((frame, pool.submit(work, frame)))
            if len(pending) >= 2 * threads:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def detect_faces(
    video: Video, engine: Engine, attributes: list[str], rate: float, threads: int = 1
) -> Iterator[FrameResults]:
    """The faces of each sampled frame, largest first, with ``attributes`` (DEFAULT or ALL)."""

    def faces_of(frame: SampledFrame) -> list[FaceDetail]:
        return engine.detect_faces(frame.image, attributes)

    for frame, faces in in_order(video.frames(rate), faces_of, threads):
        t = frame.timestamp_ms
        yield t, [JobResult(t, {"Timestamp": t, "Face": face.to_rekognition()}) for face in faces]


def search_faces(
    video: Video,
    service: RekognitionService,
    collection: Collection,
    threshold: float,
    rate: float,
    tracker: FaceTracker,
    threads: int = 1,
) -> Iterator[FrameResults]:
    """The people of each sampled frame, by Index (from ``tracker``, whose merges the caller
    applies at the end), each with the faces of ``collection`` whose Similarity to their face
    reaches ``threshold`` (none: an empty FaceMatches)."""

    def faces_of(frame: SampledFrame) -> list[Face]:
        return [f for f in service.analyze(collection, frame.image, "NONE", None) if f.embedding is not None]

    for frame, faces in in_order(video.frames(rate), faces_of, threads):
        t = frame.timestamp_ms
        indexes = tracker.assign(t, [f.detail.bounding_box for f in faces], [f.embedded.vector for f in faces])
        results = []
        for index, face in sorted(zip(indexes, faces), key=lambda pair: pair[0]):
            matches = service.search_collection(collection, face.embedded.vector, MAX_FACE_MATCHES, threshold)
            person = {"BoundingBox": face.detail.bounding_box.to_rekognition(), "Face": face.detail.to_rekognition()}
            body = {
                "Timestamp": t,
                "Person": person,
                "FaceMatches": [service.face_match(collection, m) for m in matches],
            }
            results.append(JobResult(t, body, person_index=index))
        yield t, results


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
