"""Video jobs in the service, on both store backends: the checks a Start makes before it
queues a job, the worker pool running jobs, retention, a clean shutdown; and the command
line (``visage video``, ``visage jobs list``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from visage.config import Settings
from visage.engine import Engine
from visage.errors import (
    IdempotentParameterMismatchException,
    LimitExceededException,
    ResourceNotFoundException,
)
from visage.service import Caller, RekognitionService
from visage.store import open_store

from .conftest import encode
from .videos import face_photo, passing_walkers, walk_frames, write_h264

CALLER = Caller.local("AKIDTEST")
WALK = {"S3Object": {"Bucket": "videos", "Name": "walk.mp4"}}


@pytest.fixture(scope="module")
def walk_video(tmp_path_factory: pytest.TempPathFactory, lfw: Path) -> Path:
    """Two seconds of three LFW people walking (H.264, 640x360, 25 fps)."""
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    return write_h264(path, walk_frames(passing_walkers(lfw), (640, 360), 2.0, 25), fps=25)


@pytest.fixture(params=["sqlite", "postgresql"])
def make_service(
    request: pytest.FixtureRequest, tmp_path: Path, engine: Engine, walk_video: Path, hamilton_clip: Path
) -> Iterator[Callable[..., RekognitionService]]:
    """Builds a service over a fresh store of each backend, with the videos in its local S3 folder."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgresql" else None
    (tmp_path / "s3" / "videos").mkdir(parents=True)
    shutil.copy(walk_video, tmp_path / "s3" / "videos" / "walk.mp4")
    shutil.copy(hamilton_clip, tmp_path / "s3" / "videos" / "clip.mp4")
    made: list[RekognitionService] = []

    def make(**overrides: Any) -> RekognitionService:
        settings = Settings(data_dir=tmp_path / "data", s3_root=tmp_path / "s3", store=dsn, **overrides)
        service = RekognitionService(engine, open_store(settings), settings)
        made.append(service)
        return service

    yield make
    for service in made:
        service.video.workers.stop()
        service.store.close()


def finished(service: RekognitionService, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (response := service.call("GetFaceDetection", {"JobId": job_id}, CALLER))["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return response


def test_a_start_checks_tokens_and_the_limit_before_queueing(make_service: Callable[..., RekognitionService]) -> None:
    service = make_service(max_video_jobs=2)  # no workers: jobs stay queued
    first = {"Video": WALK, "ClientRequestToken": "walk-1", "JobTag": "a"}
    job_id = service.call("StartFaceDetection", first, CALLER)["JobId"]
    assert len(job_id) == 64
    service.call("StartFaceDetection", {"Video": WALK}, CALLER)
    with pytest.raises(LimitExceededException):
        service.call("StartFaceDetection", {"Video": WALK}, CALLER)
    assert service.call("StartFaceDetection", first, CALLER)["JobId"] == job_id  # a retry, even when full
    with pytest.raises(IdempotentParameterMismatchException, match="walk-1"):
        service.call("StartFaceDetection", {**first, "JobTag": "b"}, CALLER)
    service.call("CreateCollection", {"CollectionId": "c"}, CALLER)
    with pytest.raises(IdempotentParameterMismatchException):  # the same token for another operation
        service.call("StartFaceSearch", {**first, "CollectionId": "c"}, CALLER)
    queued = service.call("GetFaceDetection", {"JobId": job_id}, CALLER)
    assert queued == {"JobStatus": "IN_PROGRESS", "JobId": job_id, "Video": WALK, "JobTag": "a", "Faces": []}
    assert service.store.get_job(job_id).access_key_id == CALLER.access_key_id


def test_workers_run_jobs_whose_results_expire(make_service: Callable[..., RekognitionService]) -> None:
    service = make_service(video_retention_seconds=3, video_job_lease_seconds=2)
    service.video.workers.start()
    request = {"Video": WALK, "ClientRequestToken": "walk-2"}
    job_id = service.call("StartFaceDetection", request, CALLER)["JobId"]
    done = finished(service, job_id)
    assert done["JobStatus"] == "SUCCEEDED" and done["VideoMetadata"]["FrameRate"] == 25
    assert sorted({f["Timestamp"] for f in done["Faces"]}) == list(range(0, 2000, 200))
    assert service.store.get_job(job_id).progress == 1.0
    time.sleep(3.5)
    with pytest.raises(ResourceNotFoundException, match=r"kept 3 seconds after the job ends|retention time"):
        service.call("GetFaceDetection", {"JobId": job_id}, CALLER)
    deadline = time.monotonic() + 30  # the workers' housekeeping deletes it, and frees its token
    while service.call("StartFaceDetection", request, CALLER)["JobId"] == job_id:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    with pytest.raises(ResourceNotFoundException, match="does not exist"):
        service.store.get_job(job_id)


def test_a_clean_shutdown_puts_the_running_job_back(make_service: Callable[..., RekognitionService]) -> None:
    # Every frame sampled: the job lasts seconds even on an idle machine, so the stop lands mid-job.
    service = make_service(video_job_lease_seconds=3, video_sample_rate=60)
    service.video.workers.start()
    job_id = service.call(
        "StartFaceDetection", {"Video": {"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}}, CALLER
    )["JobId"]
    deadline = time.monotonic() + 300
    while service.store.get_job(job_id).progress == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    service.video.workers.stop()
    job = service.store.get_job(job_id)
    assert (job.status, job.worker, job.attempts) == ("QUEUED", None, 0)


# The command line ------------------------------------------------------------------------


def visage(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VISAGE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "visage.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_the_command_line_analyses_a_video_offline(tmp_path: Path, walk_video: Path, lfw: Path, engine: Engine) -> None:
    faces = visage("video", "faces", str(walk_video), "--json", data_dir=tmp_path)
    assert faces.returncode == 0, faces.stderr
    detected = json.loads(faces.stdout)
    assert detected["VideoMetadata"]["DurationMillis"] == 2000
    assert sorted({f["Timestamp"] for f in detected["Faces"]}) == list(range(0, 2000, 200))
    table = visage("video", "faces", str(walk_video), "--attributes", "ALL", data_dir=tmp_path)
    assert table.returncode == 0 and "faces in 10 sampled frames" in table.stdout and "Male" in table.stdout

    # Index another photo of Colin Powell, then find him in the video.
    settings = Settings(data_dir=tmp_path)
    service = RekognitionService(engine, open_store(settings), settings)
    service.call("CreateCollection", {"CollectionId": "people"}, CALLER)
    photo = face_photo(lfw, "Colin_Powell", 2, 200)
    service.call(
        "IndexFaces",
        {"CollectionId": "people", "Image": {"Bytes": encode(photo)}, "ExternalImageId": "colin"},
        CALLER,
    )
    service.store.close()
    searched = visage("video", "search", str(walk_video), "--collection", "people", "--json", data_dir=tmp_path)
    assert searched.returncode == 0, searched.stderr
    persons = json.loads(searched.stdout)["Persons"]
    colin = {p["Person"]["Index"] for p in persons if p["FaceMatches"]}
    assert len(colin) == 1 and all(m["Face"]["ExternalImageId"] == "colin" for p in persons for m in p["FaceMatches"])
    assert len([p for p in persons if p["Person"]["Index"] in colin]) == 10  # in every sampled frame
    table = visage("video", "search", str(walk_video), "--collection", "people", data_dir=tmp_path)
    assert table.returncode == 0 and "colin" in table.stdout
    missing = visage("video", "search", str(walk_video), "--collection", "nobody", data_dir=tmp_path)
    assert missing.returncode == 1 and "ResourceNotFoundException" in missing.stderr


def test_jobs_list_shows_a_servers_jobs(tmp_path: Path, engine: Engine, walk_video: Path) -> None:
    (tmp_path / "s3" / "videos").mkdir(parents=True)
    shutil.copy(walk_video, tmp_path / "s3" / "videos" / "walk.mp4")
    settings = Settings(data_dir=tmp_path / "data", s3_root=tmp_path / "s3")
    service = RekognitionService(engine, open_store(settings), settings)
    job_id = service.call("StartFaceDetection", {"Video": WALK}, CALLER)["JobId"]
    service.store.close()
    listed = visage("jobs", "list", "--json", data_dir=tmp_path / "data")
    assert listed.returncode == 0, listed.stderr
    (job,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (job["JobId"], job["API"], job["State"], job["Video"]) == (
        job_id,
        "StartFaceDetection",
        "QUEUED",
        "s3://videos/walk.mp4",
    )
    table = visage("jobs", "list", data_dir=tmp_path / "data")
    assert table.returncode == 0 and "1 video jobs" in table.stdout and "QUEUED" in table.stdout
    empty = visage("jobs", "list", data_dir=tmp_path / "nothing")
    assert empty.returncode == 2 and "No Visage database" in empty.stderr
