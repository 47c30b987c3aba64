"""The stored-video operations: StartFaceDetection / GetFaceDetection and StartFaceSearch /
GetFaceSearch, on plain dicts like the rest of :mod:`visage.service`, which routes them here.

A Start call checks what it can at once, before any frame is decoded: the request, the
collection (face search), the S3 object (``InvalidS3ObjectException``), its size, format,
codec and duration (``VideoTooLargeException``, ``InvalidParameterException``; see
:mod:`visage.jobs.video`), its ClientRequestToken and the number of jobs queued or running
(``LimitExceededException``). It then queues the job in the store and returns its JobId; a
worker (:mod:`visage.jobs.workers`) runs it. A Get call reads the job and, once it has
SUCCEEDED, a page of its results; VideoMetadata comes on every page.

A NextToken is the position of the last result of the page: ``t<seq>`` in time order,
``i<index>.<seq>`` by person (GetFaceSearch with SortBy INDEX). Results and tokens are
kept ``video_retention_seconds`` after the job ends; then the job is ResourceNotFound.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from visage.errors import InvalidPaginationTokenException, InvalidParameterException, ResourceNotFoundException
from visage.jobs.video import BrokenVideo, Video
from visage.jobs.workers import JobWorkers
from visage.s3 import open_s3_object
from visage.store.base import VideoJob

if TYPE_CHECKING:
    from visage.service import Caller, RekognitionService

Request = dict[str, Any]
Response = dict[str, Any]

#: Results per page when MaxResults is not given, and the most a page holds.
MAX_PAGE = 1000
_TIME_TOKEN = re.compile(r"t(\d{1,18})")
_PERSON_TOKEN = re.compile(r"i(\d{1,18})\.(\d{1,18})")

#: Rekognition operations that AWS has ended, with what to say when they are called.
ENDED_OPERATIONS = {
    operation: (
        f"{operation} is not offered: AWS ended Rekognition People Pathing (StartPersonTracking, "
        "GetPersonTracking) on 31 October 2025, and Visage does not implement it. StartFaceSearch and "
        "GetFaceSearch give each person seen in a video an Index and a BoundingBox at each Timestamp."
    )
    for operation in ("StartPersonTracking", "GetPersonTracking")
}


class VideoJobs:
    """The video operations of a :class:`~visage.service.RekognitionService`, and the
    workers that run its jobs (started by the server, not by the command line)."""

    def __init__(self, service: RekognitionService) -> None:
        self.service = service
        self.store = service.store
        self.settings = service.settings
        self.workers = JobWorkers(service)

    # Start -------------------------------------------------------------------------

    def start_face_detection(self, request: Request, caller: Caller) -> Response:
        return self._start("StartFaceDetection", request, caller)

    def start_face_search(self, request: Request, caller: Caller) -> Response:
        self.store.get_collection(request["CollectionId"])
        return self._start("StartFaceSearch", request, caller)

    def _start(self, operation: str, request: Request, caller: Caller) -> Response:
        s3_object = request["Video"].get("S3Object")
        if s3_object is None:
            raise InvalidParameterException("Video.S3Object is required: Visage reads stored video from S3.")
        self._check_video(s3_object)
        body = {key: value for key, value in request.items() if key != "ClientRequestToken"}
        job = VideoJob(
            job_id=secrets.token_hex(32),
            operation=operation,
            request=body,
            access_key_id=caller.access_key_id,
            created_at=datetime.now(UTC),
            client_token=request.get("ClientRequestToken"),
            request_digest=hashlib.sha256(json.dumps([operation, body], sort_keys=True).encode()).hexdigest(),
        )
        queued = self.store.create_job(job, self.settings.max_video_jobs)
        if queued.job_id == job.job_id:
            self.workers.wake()
        return {"JobId": queued.job_id}

    def _check_video(self, s3_object: Request) -> None:
        """What can be refused before decoding: a missing object, its size, format, codec and
        duration. A broken file is left to its job, which fails saying what is wrong."""
        stream, size = open_s3_object(s3_object, self.settings)
        try:
            Video(stream, size, f"s3://{s3_object['Bucket']}/{s3_object['Name']}", self.settings).close()
        except BrokenVideo:
            pass

    # The jobs as a list: what Rekognition has no operation for ---------------------

    def list_jobs(self, caller: Caller, limit: int, offset: int = 0) -> list[VideoJob]:
        """The jobs of the store, newest first (the console's Video jobs page). Listing them shows
        every job's JobId, so it is checked as reading any job: ``rekognition:GetFaceDetection``
        and ``rekognition:GetFaceSearch`` on ``*``."""
        for action in ("rekognition:GetFaceDetection", "rekognition:GetFaceSearch"):
            self.service.authorize(caller, action, "*", operation="ListJobs")
        return self.store.list_jobs(limit, offset)

    def job(self, job_id: str, caller: Caller) -> VideoJob:
        """One job as stored, with its progress (which no Get response carries), checked as its
        Get operation is (``rekognition:GetFaceDetection`` or ``rekognition:GetFaceSearch`` on ``*``)."""
        job = self.store.get_job(job_id)
        getter = get_operation(job.operation)
        self.service.authorize(caller, f"rekognition:{getter}", "*", operation=getter)
        return job

    # Get ---------------------------------------------------------------------------

    def get_face_detection(self, request: Request, caller: Caller) -> Response:
        job, response = self._job(request["JobId"], "StartFaceDetection", "GetFaceDetection")
        response["Faces"] = self._page(job, request, response, by_person=False)
        return response

    def get_face_search(self, request: Request, caller: Caller) -> Response:
        job, response = self._job(request["JobId"], "StartFaceSearch", "GetFaceSearch")
        response["Persons"] = self._page(job, request, response, by_person=request.get("SortBy") == "INDEX")
        return response

    def _job(self, job_id: str, operation: str, getter: str) -> tuple[VideoJob, Response]:
        """The job (ResourceNotFound if it is not a job of ``operation``, or has expired) and the
        members every page of a Get response carries."""
        job = self.store.get_job(job_id)
        if job.operation != operation:
            raise ResourceNotFoundException(
                f"Job {job_id} is a {job.operation} job, not a {operation} job; read it with "
                f"{get_operation(job.operation)}, not {getter}."
            )
        retention = timedelta(seconds=self.settings.video_retention_seconds)
        if job.finished_at is not None and datetime.now(UTC) - job.finished_at > retention:
            raise ResourceNotFoundException(
                f"The results of job {job_id} have expired: they are kept {_days(retention)} after the job ends."
            )
        response: Response = {
            "JobStatus": "IN_PROGRESS" if job.status in ("QUEUED", "RUNNING") else job.status,
            "StatusMessage": job.status_message,
            "VideoMetadata": job.video_metadata,
            "JobId": job.job_id,
            "Video": job.request["Video"],
            "JobTag": job.request.get("JobTag"),
        }
        return job, {key: value for key, value in response.items() if value is not None}

    def _page(self, job: VideoJob, request: Request, response: Response, by_person: bool) -> list[Response]:
        """A page of a SUCCEEDED job's results (none before), and the NextToken after it."""
        after = _position(request.get("NextToken") or None, by_person)
        if job.status != "SUCCEEDED":
            return []
        limit = min(request.get("MaxResults") or MAX_PAGE, MAX_PAGE)
        page = self.store.job_results(job.job_id, by_person, after, limit + 1)
        if len(page) > limit:
            last = page[limit - 1]
            response["NextToken"] = f"i{last.person_index}.{last.seq}" if by_person else f"t{last.seq}"
        return [result.to_rekognition() for result in page[:limit]]


def get_operation(operation: str) -> str:
    """The Get operation of a Start operation's jobs: GetFaceSearch for StartFaceSearch."""
    return "Get" + operation.removeprefix("Start")


def _position(token: str | None, by_person: bool) -> tuple[int, int] | None:
    """The (person index, seq) after which a page starts; a token of another order is refused."""
    if token is None:
        return None
    if by_person and (match := _PERSON_TOKEN.fullmatch(token)):
        return int(match.group(1)), int(match.group(2))
    if not by_person and (match := _TIME_TOKEN.fullmatch(token)):
        return 0, int(match.group(1))
    order = "SortBy INDEX" if by_person else "time order"
    raise InvalidPaginationTokenException(f"NextToken {token!r} was not issued by this server for a page in {order}.")


def _days(period: timedelta) -> str:
    days = period.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{period.total_seconds():g} seconds"
