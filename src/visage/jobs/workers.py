"""The threads that run video jobs in a server process.

Each worker takes the oldest queued job from the store (:meth:`claim_job`: one worker of
one process gets it, however many share the store), leased for
``video_job_lease_seconds``. While it runs the job (:mod:`visage.jobs.analysis`), a thread
of its own renews the lease every third of it, however long a frame takes, and results are
saved as often; then the worker finishes the job SUCCEEDED or FAILED (with a
StatusMessage that says why), publishes the completion message
(:mod:`visage.jobs.notifications`) and, for a face search, appends one audit record with
the FaceIds it matched.

Between jobs, workers take back the jobs of workers that died (their lease ran out: a
killed server): each is queued again once, then, if it is abandoned again, FAILED
(:data:`MAX_ATTEMPTS`). They also delete jobs finished more than
``video_retention_seconds`` ago. A worker stopped cleanly (server shutdown) puts its job
back in the queue, the attempt not counted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from visage.config import DEFAULT_THRESHOLD
from visage.errors import VisageError
from visage.jobs.analysis import FrameResults, detect_faces, matched_faces, search_audit_record, search_faces
from visage.jobs.notifications import publish_completion
from visage.jobs.tracker import FaceTracker
from visage.jobs.tracker import preload as preload_tracker
from visage.jobs.video import BrokenVideo, Video
from visage.s3 import open_s3_object
from visage.store.base import AuditRecord, JobResult, Store, VideoJob

if TYPE_CHECKING:
    from visage.service import RekognitionService

log = logging.getLogger("visage.jobs")

#: A job is run at most this many times; abandoned once more, it is FAILED.
MAX_ATTEMPTS = 2
ABANDONED = (
    f"The server running this job stopped {MAX_ATTEMPTS} times while running it (killed, or its machine "
    "restarted); it was not tried again. Start a new job."
)
#: Seconds an idle worker waits for a job before it looks again (a Start in this process wakes it).
POLL_SECONDS = 1.0


class _Stopped(Exception):
    """The pool is stopping: the job goes back to the queue."""


class JobWorkers:
    """``settings.video_workers`` threads running the jobs of ``service``'s store."""

    def __init__(self, service: RekognitionService) -> None:
        self.service = service
        self.settings = service.settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._housekeeping_due = 0.0
        self._housekeeping_lock = threading.Lock()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.video_job_lease_seconds)

    def start(self) -> None:
        for n in range(self.settings.video_workers):
            thread = threading.Thread(target=self._work, args=(f"{self._name}:{n}",), name=f"visage-job-{n}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """A job was queued: an idle worker of this process looks now."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the workers; a running job is put back in the queue."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    # A worker ------------------------------------------------------------------------

    def _work(self, worker: str) -> None:
        preload_tracker()
        store = self.service.store
        while not self._stop.is_set():
            try:
                self._housekeeping()
                job = store.claim_job(worker, datetime.now(UTC) + self.lease)
            except Exception:
                log.exception("video worker %s: the store failed; retrying", worker)
                job = None
            if job is None:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            try:
                self._run(job, worker)
            except Exception:
                log.exception("video worker %s: job %s could not be finished", worker, job.job_id)

    def _housekeeping(self) -> None:
        """Takes back abandoned jobs and deletes expired ones, every half lease (in one worker at a time)."""
        now = time.monotonic()
        if now < self._housekeeping_due or not self._housekeeping_lock.acquire(blocking=False):
            return
        try:
            self._housekeeping_due = now + self.settings.video_job_lease_seconds / 2
            store, moment = self.service.store, datetime.now(UTC)
            for failed in store.expire_jobs(moment, MAX_ATTEMPTS, ABANDONED):
                log.warning("job %s: %s", failed.job_id, ABANDONED)
                publish_completion(failed, self.settings.sns_endpoint_url)
            store.purge_jobs(moment - timedelta(seconds=self.settings.video_retention_seconds))
        finally:
            self._housekeeping_lock.release()

    def _run(self, job: VideoJob, worker: str) -> None:
        store = self.service.store
        matched: dict[str, float] = {}  # FaceId -> best Similarity, for the audit record
        renumber: dict[int, int] = {}  # people found to be earlier ones
        try:
            self._analyse(job, worker, matched, renumber)
        except _Stopped:
            store.release_job(job.job_id, worker)
            return
        except _LeaseLost:
            log.warning("job %s: worker %s lost its lease; another worker runs the job", job.job_id, worker)
            return
        except (VisageError, BrokenVideo) as error:
            finished = store.finish_job(job.job_id, worker, "FAILED", str(error))
        except Exception as error:
            log.exception("job %s failed", job.job_id)
            finished = store.finish_job(job.job_id, worker, "FAILED", f"Internal error: {type(error).__name__}.")
        else:
            # A face search's identifications are audited in the transaction that ends it.
            audit = search_audit(job, matched) if job.operation == "StartFaceSearch" else None
            finished = store.finish_job(job.job_id, worker, "SUCCEEDED", renumber=renumber, audit=audit)
        if finished is not None:
            publish_completion(finished, self.settings.sns_endpoint_url)

    def _analyse(self, job: VideoJob, worker: str, matched: dict[str, float], renumber: dict[int, int]) -> None:
        with _Lease(self.service.store, job.job_id, worker, self.settings.video_job_lease_seconds) as lease:
            self._analyse_leased(job, worker, matched, renumber, lease)

    def _analyse_leased(
        self, job: VideoJob, worker: str, matched: dict[str, float], renumber: dict[int, int], lease: _Lease
    ) -> None:
        """Runs the job's analysis, saving its results and renewing its lease as it goes; fills
        ``matched`` (FaceIds matched, best Similarity) and ``renumber`` (the tracker's merges)."""
        request, settings, store = job.request, self.settings, self.service.store
        s3_object = request["Video"]["S3Object"]
        stream, size = open_s3_object(s3_object, settings)
        with Video(stream, size, f"s3://{s3_object['Bucket']}/{s3_object['Name']}", settings) as video:
            metadata = video.metadata
            frames: Iterator[FrameResults]
            tracker: FaceTracker | None = None
            if job.operation == "StartFaceSearch":
                collection = store.get_collection(request["CollectionId"])
                threshold = request.get("FaceMatchThreshold", DEFAULT_THRESHOLD)
                tracker = FaceTracker(self.service.engine.similarity_map(collection.face_model))
                frames = search_faces(video, self.service, collection, threshold, tracker)
            else:
                attributes = [request.get("FaceAttributes", "DEFAULT")]
                frames = detect_faces(
                    video, self.service.engine, attributes, settings.video_sample_rate, settings.threads
                )
            lease.save(0.0, [], metadata.to_rekognition())
            pending: list[JobResult] = []
            saved = time.monotonic()
            for timestamp, results in frames:
                if self._stop.is_set():
                    raise _Stopped
                pending += results
                for face_id, similarity in matched_faces(results).items():
                    matched[face_id] = max(matched.get(face_id, 0.0), similarity)
                if time.monotonic() - saved >= lease.seconds / 3:
                    lease.save(timestamp / max(metadata.duration_ms, 1), pending)
                    pending, saved = [], time.monotonic()
            lease.save(1.0, pending)
            if tracker is not None:
                renumber.update(tracker.merged())


def search_audit(job: VideoJob, matched: dict[str, float]) -> AuditRecord:
    """The audit record of a face search job: the faces it matched, each with its best Similarity."""
    threshold = job.request.get("FaceMatchThreshold", DEFAULT_THRESHOLD)
    return search_audit_record(job.access_key_id, job.request["CollectionId"], threshold, matched)


class _LeaseLost(Exception):
    """Another worker took the job (this one could not renew its lease in time)."""


class _Lease:
    """A running job's lease, renewed every third of it by a thread of its own while the worker
    lives; :meth:`save` saves results (and renews it too)."""

    def __init__(self, store: Store, job_id: str, worker: str, seconds: int) -> None:
        self.store, self.job_id, self.worker, self.seconds = store, job_id, worker, seconds
        self.progress = 0.0
        self._lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"visage-lease-{job_id[:8]}", daemon=True)

    def save(self, progress: float, results: list[JobResult], metadata: dict[str, Any] | None = None) -> None:
        """Saves results and progress; _LeaseLost if another worker has the job now."""
        self.progress = min(progress, 1.0)
        if self._lost or not self.store.save_job_progress(
            self.job_id, self.worker, self._until(), self.progress, results, video_metadata=metadata
        ):
            raise _LeaseLost

    def _until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.seconds)

    def _renew(self) -> None:
        while not self._done.wait(self.seconds / 3):
            try:
                if not self.store.save_job_progress(self.job_id, self.worker, self._until(), self.progress):
                    self._lost = True
                    return
            except Exception:
                log.exception("job %s: its lease could not be renewed; trying again", self.job_id)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
