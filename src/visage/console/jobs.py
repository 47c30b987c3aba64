"""Video jobs in the console: the store's jobs, a form that starts one on an S3 object, and a
job's page with its progress while it runs and, once it has succeeded, a timeline of the faces
found.

Starting a job and reading its results are the API's own calls (StartFaceDetection,
StartFaceSearch, GetFaceDetection, GetFaceSearch) through the service, with the signed-in key
as the caller. The list of jobs and a job's progress, which Rekognition has no call for, come
from :meth:`~visage.jobs.operations.VideoJobs.list_jobs` and
:meth:`~visage.jobs.operations.VideoJobs.job`, checked as the Get calls are. A key that is not
allowed sees the console's "Not allowed" page.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from visage.console.accuracy import threshold_cost_sentence
from visage.console.app import Context, page, service_error
from visage.console.images import CONSOLE_THRESHOLD, collection_ids
from visage.errors import AccessDeniedException, ResourceNotFoundException, VisageError
from visage.jobs.operations import MAX_PAGE, get_operation
from visage.store.base import VideoJob

#: Jobs per page of the Video jobs page.
JOBS_PER_PAGE = 25
#: Results a job's timeline reads at most (a six-hour video sampled 5 times a second with a face
#: in each frame has 108,000): past it, the page says the timeline stops there.
MAX_TIMELINE_RESULTS = 50 * MAX_PAGE
#: Seconds between two loads of the page of a job that is queued or running.
REFRESH_SECONDS = 2
APIS = {
    "StartFaceSearch": "Search a collection's faces (StartFaceSearch)",
    "StartFaceDetection": "Detect faces (StartFaceDetection)",
}
FACE_ATTRIBUTES = ("DEFAULT", "ALL")
#: Width of a timeline, in the units of its drawing.
TIMELINE_WIDTH = 1000.0


def routes() -> list[BaseRoute]:
    return [
        Route("/jobs", page(jobs_page), methods=["GET"]),
        Route("/jobs", page(start_job), methods=["POST"]),
        Route("/jobs/{jid}", page(job_page), methods=["GET"]),
    ]


# The list and the form ---------------------------------------------------------------------


async def jobs_page(context: Context, error: str | None = None) -> Response:
    query = context.request.query_params.get("page", "0")
    number = int(query) if query.isdigit() else 0
    try:
        jobs = await context.console.run(
            context.service.video.list_jobs, context.caller, JOBS_PER_PAGE + 1, number * JOBS_PER_PAGE
        )
    except AccessDeniedException as failure:
        return denied(context, failure)
    try:
        collections = await collection_ids(context)
    except VisageError:
        collections = []
    settings = context.console.settings
    return context.render(
        "jobs.html",
        section="jobs",
        title="Video jobs",
        jobs=jobs[:JOBS_PER_PAGE],
        page_number=number,
        more=len(jobs) > JOBS_PER_PAGE,
        collections=collections,
        apis=APIS,
        face_attributes=FACE_ATTRIBUTES,
        cost=threshold_cost_sentence(settings, settings.face_model),
        form={
            "api": context.field("api") or "StartFaceSearch",
            "bucket": context.field("bucket"),
            "name": context.field("name"),
            "collection_id": context.field("collection_id") or context.request.query_params.get("collection", ""),
            "threshold": context.field("threshold") or f"{CONSOLE_THRESHOLD:g}",
            "face_attributes": context.field("face_attributes") or "DEFAULT",
            "job_tag": context.field("job_tag"),
            # A resent form (a double click, a reload) returns the job it started, and starts no other.
            "client_request_token": context.field("client_request_token") or secrets.token_hex(16),
        },
        error=error,
    )


async def start_job(context: Context) -> Response:
    api = context.field("api")
    if api not in APIS:
        return await jobs_page(context, error=f"Choose what the job does: {' or '.join(APIS)}.")
    request: dict[str, Any] = {
        "Video": {"S3Object": {"Bucket": context.field("bucket"), "Name": context.field("name")}}
    }
    for member, name in (("ClientRequestToken", "client_request_token"), ("JobTag", "job_tag")):
        if context.field(name):
            request[member] = context.field(name)
    if api == "StartFaceSearch":
        try:
            request["FaceMatchThreshold"] = float(context.field("threshold") or CONSOLE_THRESHOLD)
        except ValueError:
            return await jobs_page(context, error="The threshold must be a number from 0 to 100.")
        request["CollectionId"] = context.field("collection_id")
    else:
        request["FaceAttributes"] = context.field("face_attributes") or "DEFAULT"
    try:
        answer = await context.call(api, request)
    except AccessDeniedException as failure:
        return denied(context, failure)
    except VisageError as failure:
        return await jobs_page(context, error=service_error(failure))
    return context.redirect(f"/jobs/{answer['JobId']}", f"Started a {api} job.")


def denied(context: Context, failure: VisageError) -> Response:
    return context.render("denied.html", 403, section="jobs", title="Video jobs", error=service_error(failure))


# A job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A stretch of the video in which someone (or some face) was seen at every sampled frame."""

    start_ms: int
    end_ms: int  # the time of the last sampled frame of the stretch

    def words(self) -> str:
        start, end = self.start_ms / 1000, self.end_ms / 1000
        return f"{start:.1f} s" if self.start_ms == self.end_ms else f"{start:.1f}-{end:.1f} s"


@dataclass
class Person:
    """One Person.Index of a face-search job: when they were seen, when they matched a face of
    the collection, and their best match."""

    index: int
    times: list[int] = field(default_factory=list)  # of each sampled frame they are in
    matched_times: list[int] = field(default_factory=list)  # of those where they match a face
    best: dict[str, Any] | None = None  # the FaceMatch with the highest Similarity
    best_ms: int = 0
    seen: list[Span] = field(default_factory=list)
    matched: list[Span] = field(default_factory=list)


@dataclass(frozen=True)
class Timeline:
    """What a finished job found, laid out over the video's duration."""

    duration_ms: int
    step_ms: int  # the time between two sampled frames
    results: int
    truncated: bool
    #: Face search: each person, by Index.
    people: list[Person]
    #: Face detection: (time, number of faces) of each sampled frame with a face.
    frames: list[tuple[int, int]]

    def x(self, ms: int) -> float:
        """Where ``ms`` lies on a timeline :data:`TIMELINE_WIDTH` wide."""
        return TIMELINE_WIDTH * min(ms, self.duration_ms) / self.duration_ms

    def width(self, start_ms: int, end_ms: int) -> float:
        """The width of a stretch, one sampling step at least (so a single frame shows)."""
        return max(self.x(end_ms + self.step_ms) - self.x(start_ms), TIMELINE_WIDTH / 500)

    @property
    def most_faces(self) -> int:
        return max((count for _, count in self.frames), default=0)

    @property
    def seen(self) -> list[Span]:
        """Face detection: the stretches of the video with a face in every sampled frame."""
        return spans((t for t, _ in self.frames), self.step_ms)


def spans(times: Iterable[int], step_ms: int) -> list[Span]:
    """Sorted times joined into stretches: two sampled frames further apart than one and a half
    sampling steps are in different stretches."""
    out: list[Span] = []
    for t in sorted(set(times)):
        if out and t - out[-1].end_ms <= step_ms * 1.5:
            out[-1] = Span(out[-1].start_ms, t)
        else:
            out.append(Span(t, t))
    return out


def timeline(
    operation: str, results: list[dict[str, Any]], duration_ms: int, step_ms: int, truncated: bool
) -> Timeline:
    """The timeline of a job's results: GetFaceSearch's Persons or GetFaceDetection's Faces."""
    people: dict[int, Person] = {}
    frames: dict[int, int] = {}
    for result in results:
        t = int(result["Timestamp"])
        if operation == "StartFaceDetection":
            frames[t] = frames.get(t, 0) + 1
            continue
        index = int(result["Person"]["Index"])
        person = people.setdefault(index, Person(index))
        person.times.append(t)
        if result.get("FaceMatches"):
            person.matched_times.append(t)
        for match in result.get("FaceMatches", []):
            if person.best is None or match["Similarity"] > person.best["Similarity"]:
                person.best, person.best_ms = match, t
    for person in people.values():
        person.seen, person.matched = spans(person.times, step_ms), spans(person.matched_times, step_ms)
    duration = max(duration_ms, max((int(r["Timestamp"]) for r in results), default=0) + step_ms, 1)
    return Timeline(
        duration_ms=duration,
        step_ms=step_ms,
        results=len(results),
        truncated=truncated,
        people=[person for _, person in sorted(people.items())],
        frames=sorted(frames.items()),
    )


async def read_results(context: Context, job: VideoJob) -> tuple[list[dict[str, Any]], bool]:
    """A succeeded job's results, page by page through its Get call (at most
    :data:`MAX_TIMELINE_RESULTS`), and whether there were more."""
    getter = get_operation(job.operation)
    member = "Persons" if job.operation == "StartFaceSearch" else "Faces"
    results: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        request: dict[str, Any] = {"JobId": job.job_id, "MaxResults": MAX_PAGE}
        if token:
            request["NextToken"] = token
        answer = await context.call(getter, request)
        results += answer[member]
        token = answer.get("NextToken")
        if not token:
            return results, False
        if len(results) >= MAX_TIMELINE_RESULTS:
            return results, True


async def job_page(context: Context) -> Response:
    job_id = context.request.path_params["jid"]
    try:
        job = await context.console.run(context.service.video.job, job_id, context.caller)
        results, truncated = await read_results(context, job) if job.status == "SUCCEEDED" else ([], False)
    except AccessDeniedException as failure:
        return denied(context, failure)
    except ResourceNotFoundException as failure:
        return context.render("missing.html", 404, section="jobs", title="Not found", what=failure.message)
    except VisageError as failure:
        return context.render("missing.html", 400, section="jobs", title="Video job", what=service_error(failure))
    settings = context.console.settings
    drawn = None
    if job.status == "SUCCEEDED":
        duration = int((job.video_metadata or {}).get("DurationMillis", 0))
        drawn = timeline(job.operation, results, duration, round(1000 / settings.video_sample_rate), truncated)
    return context.render(
        "job.html",
        section="jobs",
        title=f"Video job {job_id[:12]}",
        job=job,
        running=job.status in ("QUEUED", "RUNNING"),
        refresh=REFRESH_SECONDS,
        timeline=drawn,
        width=TIMELINE_WIDTH,
    )
