"""Stored-video jobs through the real server: boto3 and an AWS CLI polling loop on the
Hamilton clip, paging, bad inputs, a kill -9 in the middle of a job, and an S3-compatible
server with SNS and SQS (moto's standalone server) for S3 objects and notifications, read
the way AWS's Python example reads them."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from visage.config import Settings
from visage.engine import Engine
from visage.jobs.video import Video
from visage.store.base import Store
from visage.store.postgres import PostgresStore
from visage.store.sqlite import SQLiteStore
from visage.testing import LocalServer, free_port

from .conftest import RunningServer
from .test_server_cli_and_data import aws
from .videos import passing_walkers, walk_frames, write_h264

BUCKET = "videos"
#: Lin-Manuel Miranda is on screen from about 2.8 s to 7.0 s (measured by hand).
ON_SCREEN = (2800, 7010)
#: He is also on screen in the clip's opening wide shot, up to the cut at about 0.7 s: small (his
#: face about 38 px wide), singing on the stage in the suit and with the microphone of the close-up
#: (checked by eye on the frames at 0, 200, 400 and 600 ms). The pianist comes after the cut.
WIDE_SHOT = (0, 700)


def lin_on_screen(t: int) -> bool:
    """Whether Lin-Manuel Miranda is on screen at ``t`` ms, in the close-up or the wide shot."""
    return any(start <= t <= end for start, end in (ON_SCREEN, WIDE_SHOT))


def wait_for(get: Callable[..., dict[str, Any]], job_id: str, timeout: float = 900, **kwargs: Any) -> dict[str, Any]:
    """Polls a Get call until the job is no longer IN_PROGRESS, as AWS's Java examples do."""
    deadline = time.monotonic() + timeout
    while (response := get(JobId=job_id, **kwargs))["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, f"job {job_id} still IN_PROGRESS after {timeout:.0f} s"
        time.sleep(0.5)
    return response


def pages(get: Callable[..., dict[str, Any]], job_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of a finished job, following NextToken from an empty one (as AWS's guide does)."""
    out, token = [], ""
    while True:
        page = get(JobId=job_id, NextToken=token, **kwargs)
        out.append(page)
        token = page.get("NextToken")
        if not token:
            return out


def video(name: str, bucket: str = BUCKET) -> dict[str, Any]:
    return {"S3Object": {"Bucket": bucket, "Name": name}}


def lin_found(persons: list[dict[str, Any]], face_id: str, threshold: float) -> list[int]:
    return [
        p["Timestamp"]
        for p in persons
        if any(m["Face"]["FaceId"] == face_id and m["Similarity"] >= threshold for m in p["FaceMatches"])
    ]


@pytest.fixture(scope="module")
def videos(server: RunningServer, hamilton_clip: Path, eval_data: Path) -> Path:
    """The clip and the bad files, in the server's local S3 folder."""
    bucket = server.s3_root / BUCKET
    bucket.mkdir(exist_ok=True)
    shutil.copy(hamilton_clip, bucket / "clip.mp4")
    shutil.copy(eval_data / "face_recognition_examples" / "examples" / "biden.jpg", bucket / "renamed.mp4")
    data = hamilton_clip.read_bytes()
    (bucket / "truncated.mp4").write_bytes(data[: len(data) // 2])
    writer = cv2.VideoWriter(str(bucket / "mpeg4.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for n in range(20):
        writer.write(np.full((240, 320, 3), n * 10, np.uint8))
    writer.release()
    return bucket


@pytest.fixture(scope="module")
def hamilton(rekognition: Any, lin_manuel_miranda: bytes) -> tuple[str, str]:
    """A collection holding Lin-Manuel Miranda's photo, and its FaceId."""
    rekognition.create_collection(CollectionId="hamilton")
    indexed = rekognition.index_faces(
        CollectionId="hamilton", Image={"Bytes": lin_manuel_miranda}, ExternalImageId="lin-manuel-miranda"
    )
    (record,) = indexed["FaceRecords"]
    return "hamilton", record["Face"]["FaceId"]


# The clip --------------------------------------------------------------------------------


def test_face_search_finds_lin_manuel_miranda_while_he_is_on_screen(
    server: RunningServer, rekognition: Any, videos: Path, hamilton: tuple[str, str]
) -> None:
    collection, face_id = hamilton
    channel = {
        "SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:AmazonRekognition-hamilton",
        "RoleArn": "arn:aws:iam::123456789012:role/rekognition",
    }
    request = {
        "Video": video("clip.mp4"),
        "CollectionId": collection,
        "JobTag": "hamilton",
        "ClientRequestToken": "hamilton-search-1",
        "NotificationChannel": channel,  # no SNS endpoint on this server: the job runs all the same
    }
    job_id = rekognition.start_face_search(**request)["JobId"]
    assert rekognition.start_face_search(**request)["JobId"] == job_id  # same token, same job
    with pytest.raises(rekognition.exceptions.IdempotentParameterMismatchException):
        rekognition.start_face_search(**{**request, "JobTag": "another"})

    done = wait_for(rekognition.get_face_search, job_id)
    assert done["JobStatus"] == "SUCCEEDED" and "StatusMessage" not in done
    assert (done["JobId"], done["JobTag"], done["Video"]) == (job_id, "hamilton", video("clip.mp4"))
    assert done["VideoMetadata"] == {
        "Codec": "h264",
        "DurationMillis": 9176,
        "Format": "QuickTime / MOV",
        "FrameRate": pytest.approx(29.97),
        "FrameHeight": 360,
        "FrameWidth": 640,
        "ColorRange": "LIMITED",
    }
    persons = done["Persons"]
    times = [p["Timestamp"] for p in persons]
    assert times == sorted(times) and "NextToken" not in done
    sampled = sorted(set(times))
    on_screen = [t for t in sampled if ON_SCREEN[0] <= t <= ON_SCREEN[1]]
    assert len(on_screen) == 22  # every sampled frame of 2.8-7.0 s has a face
    found = lin_found(persons, face_id, 80)
    assert [t for t in found if ON_SCREEN[0] <= t <= ON_SCREEN[1]] == on_screen  # he is found in each of them
    assert all(lin_on_screen(t) for t in lin_found(persons, face_id, 99))  # nowhere else above 99
    match = next(m for p in persons for m in p["FaceMatches"])
    assert (
        match["Face"]["ExternalImageId"] == "lin-manuel-miranda"
        and match["Face"]["IndexFacesModelVersion"] == "sface-1"
    )
    # One Index for him while he is on screen; faces of one frame never share one.
    lin = [p for p in persons if ON_SCREEN[0] <= p["Timestamp"] <= ON_SCREEN[1]]
    assert len({p["Person"]["Index"] for p in lin}) == 1
    for t in sampled:
        indexes = [p["Person"]["Index"] for p in persons if p["Timestamp"] == t]
        assert len(indexes) == len(set(indexes))
    assert all(set(p["Person"]) == {"Index", "BoundingBox", "Face"} for p in persons)

    # By person, ten at a time: the same results, ordered by Index then time.
    by_index = [
        p for page in pages(rekognition.get_face_search, job_id, SortBy="INDEX", MaxResults=10) for p in page["Persons"]
    ]
    assert by_index == sorted(persons, key=lambda p: (p["Person"]["Index"], p["Timestamp"]))
    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
        rekognition.get_face_search(JobId=job_id, SortBy="INDEX", NextToken="t12")  # a time-order token

    # One audit record, with the FaceIds the job matched.
    store = SQLiteStore(server.data_dir / "visage.db")
    try:
        (record,) = [
            r for r in store.audit_records() if r.operation == "StartFaceSearch" and r.collection_id == collection
        ]
    finally:
        store.close()
    assert record.face_ids == [face_id] and record.threshold == 80 and record.best_similarity >= 99


def test_face_search_through_an_aws_cli_polling_loop(
    server: RunningServer, videos: Path, hamilton: tuple[str, str]
) -> None:
    collection, face_id = hamilton
    started = aws(server, "start-face-search", "--video", json.dumps(video("clip.mp4")), "--collection-id", collection)
    deadline = time.monotonic() + 900
    while (result := aws(server, "get-face-search", "--job-id", started["JobId"]))["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(1)
    assert result["JobStatus"] == "SUCCEEDED"
    on_screen = [t for t in lin_found(result["Persons"], face_id, 80) if ON_SCREEN[0] <= t <= ON_SCREEN[1]]
    assert on_screen[0] == 2803 and on_screen[-1] == 7007 and len(on_screen) == 22
    assert all(lin_on_screen(t) for t in lin_found(result["Persons"], face_id, 99))


def test_face_detection_pages_every_sampled_frame_with_a_face_in_time_order(
    rekognition: Any, videos: Path, engine: Engine, hamilton_clip: Path
) -> None:
    job_id = rekognition.start_face_detection(Video=video("clip.mp4"), FaceAttributes="ALL", JobTag="faces")["JobId"]
    first = wait_for(rekognition.get_face_detection, job_id, MaxResults=10, NextToken="")
    assert first["JobStatus"] == "SUCCEEDED" and len(first["Faces"]) == 10 and first["NextToken"]
    got = pages(rekognition.get_face_detection, job_id, MaxResults=10)
    assert all(p["VideoMetadata"]["DurationMillis"] == 9176 and p["JobTag"] == "faces" for p in got)
    assert all(len(p["Faces"]) == 10 for p in got[:-1]) and 1 <= len(got[-1]["Faces"]) <= 10
    faces = [f for p in got for f in p["Faces"]]
    times = [f["Timestamp"] for f in faces]
    assert times == sorted(times)
    # The same faces as the engine finds in the same sampled frames, here in the test.
    data = hamilton_clip.read_bytes()
    with Video(open(hamilton_clip, "rb"), len(data), "clip", Settings()) as clip:
        expected = {f.timestamp_ms: len(engine.detect_faces(f.image)) for f in clip.frames(5.0)}
    assert {t: times.count(t) for t in set(times)} == {t: n for t, n in expected.items() if n}
    for item in faces:
        face = item["Face"]
        assert {"AgeRange", "Gender", "EyesOpen", "MouthOpen", "Smile", "Pose", "Quality"} <= set(face)
        assert "EyeDirection" not in face  # images only, as in Rekognition
        assert len(face["Landmarks"]) == 30
    whole = rekognition.get_face_detection(JobId=job_id, MaxResults=5000)  # over 1000 asks for 1000
    assert whole["Faces"] == faces and "NextToken" not in whole


# Bad input -------------------------------------------------------------------------------


def test_bad_videos_get_their_error_and_the_server_keeps_serving(rekognition: Any, videos: Path) -> None:
    def serving() -> None:
        assert "hamilton" in rekognition.list_collections()["CollectionIds"]

    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException, match="does not exist"):
        rekognition.start_face_detection(Video=video("missing.mp4"))
    serving()
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="is a JPEG image, not an MP4"):
        rekognition.start_face_detection(Video=video("renamed.mp4"))
    serving()
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match=r"MPEG-4 part 2 \(mpeg4\), not H.264"):
        rekognition.start_face_search(Video=video("mpeg4.mp4"), CollectionId="hamilton")
    serving()
    job_id = rekognition.start_face_detection(Video=video("truncated.mp4"))["JobId"]
    failed = wait_for(rekognition.get_face_detection, job_id)
    assert failed["JobStatus"] == "FAILED" and failed["Faces"] == []
    assert "truncated: its 'mdat' box at byte 40 runs to byte 604,704" in failed["StatusMessage"]
    serving()


def test_requests_a_job_cannot_take(rekognition: Any, videos: Path, hamilton: tuple[str, str]) -> None:
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.get_face_detection(JobId="a" * 64)
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.start_face_search(Video=video("clip.mp4"), CollectionId="no-such-collection")
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match=r"Video\.S3Object is required"):
        rekognition.start_face_detection(Video={})
    with pytest.raises(rekognition.exceptions.InvalidParameterException, match="SNSTopicArn"):
        rekognition.start_face_detection(
            Video=video("clip.mp4"),
            NotificationChannel={"SNSTopicArn": "my-topic", "RoleArn": "arn:aws:iam::123456789012:role/r"},
        )
    job_id = rekognition.start_face_search(Video=video("truncated.mp4"), CollectionId=hamilton[0])["JobId"]
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException, match="read it with GetFaceSearch"):
        rekognition.get_face_detection(JobId=job_id)
    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
        rekognition.get_face_search(JobId=job_id, NextToken="not-a-token")
    for call in (
        lambda: rekognition.start_person_tracking(Video=video("clip.mp4")),
        lambda: rekognition.get_person_tracking(JobId=job_id),
    ):
        with pytest.raises(
            rekognition.exceptions.ClientError, match="is not offered: AWS ended Rekognition People Pathing"
        ):
            call()


# A server killed in the middle of a job --------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_job_running_when_the_server_is_killed_is_run_again(
    tmp_path: Path, hamilton_clip: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "s3" / BUCKET).mkdir(parents=True)
    shutil.copy(hamilton_clip, tmp_path / "s3" / BUCKET / "clip.mp4")
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgresql" else None
    server = LocalServer(
        tmp_path / "data",
        tmp_path / "s3",
        ("--store", dsn) if dsn else (),
        # Every frame sampled (rate 60 for a 29.97 fps clip): the job takes seconds even on an idle
        # machine, where the clip's 46 default samples are done in about one, so the kill lands mid-job.
        env={"VISAGE_VIDEO_JOB_LEASE_SECONDS": "3", "VISAGE_VIDEO_SAMPLE_RATE": "60"},
    )
    with server:
        job_id = server.client().start_face_detection(Video=video("clip.mp4"))["JobId"]
        store: Store = PostgresStore(dsn) if dsn else SQLiteStore(tmp_path / "data" / "visage.db")
        deadline = time.monotonic() + 300
        while (job := store.get_job(job_id)).progress == 0:  # running, and some results saved
            assert job.status in ("QUEUED", "RUNNING") and time.monotonic() < deadline
            time.sleep(0.1)
        server.stop(signal.SIGKILL)
        killed = store.get_job(job_id)
        assert killed.status == "RUNNING" and killed.progress < 1 and killed.attempts == 1
        server.start()  # the same data dir: the job's lease runs out and another worker takes it
        done = wait_for(server.client().get_face_detection, job_id)
        assert done["JobStatus"] == "SUCCEEDED"
        assert store.get_job(job_id).attempts == 2
        store.close()
    faces = done["Faces"]
    assert 9000 <= faces[-1]["Timestamp"] <= 9180  # the whole 9.18 s video, its first part once only (below)
    keys = [(f["Timestamp"], json.dumps(f["Face"]["BoundingBox"], sort_keys=True)) for f in faces]
    assert len(keys) == len(set(keys))


# An S3-compatible server, SNS and SQS (moto) ------------------------------------------------

MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's standalone server (S3, SNS, SQS) on a free loopback port, in a process of its own."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    aws_client("s3", url)  # an import of boto3 while moto starts
    deadline = time.monotonic() + 60
    while True:
        try:
            aws_client("s3", url).list_buckets()
            break
        except Exception:
            assert process.poll() is None and time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(30)


def aws_client(service: str, url: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_videos_and_images_from_an_s3_endpoint_with_sns_notifications(
    tmp_path: Path, moto_url: str, lfw: Path, hamilton_clip: Path, astronaut_jpeg: bytes
) -> None:
    s3, sns, sqs = (aws_client(name, moto_url) for name in ("s3", "sns", "sqs"))
    s3.create_bucket(Bucket="media")
    walk = write_h264(tmp_path / "walk.mp4", walk_frames(passing_walkers(lfw), (640, 360), 3.0, 25), fps=25)
    s3.upload_file(str(walk), "media", "walk.mp4")
    s3.upload_file(str(hamilton_clip), "media", "clip.mp4")
    s3.put_object(Bucket="media", Key="astronaut.jpg", Body=astronaut_jpeg)
    # AWS's Python example: an SNS topic, an SQS queue subscribed to it.
    topic = sns.create_topic(Name="AmazonRekognition-jobs")["TopicArn"]
    queue = sqs.create_queue(QueueName="rekognition-jobs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    env = {**MOTO_CREDENTIALS, "VISAGE_MAX_VIDEO_BYTES": "500000", "VISAGE_MAX_VIDEO_JOBS": "1"}
    endpoints = ("--s3-endpoint-url", moto_url, "--sns-endpoint-url", moto_url)
    with LocalServer(tmp_path / "data", extra_args=endpoints, env=env) as server:
        rekognition = server.client()
        # Images through the same S3 access.
        found = rekognition.detect_faces(Image={"S3Object": {"Bucket": "media", "Name": "astronaut.jpg"}})
        assert len(found["FaceDetails"]) == 1

        channel = {"SNSTopicArn": topic, "RoleArn": "arn:aws:iam::123456789012:role/rekognition"}
        walk_video = video("walk.mp4", bucket="media")
        job_id = rekognition.start_face_detection(Video=walk_video, NotificationChannel=channel, JobTag="walk-1")[
            "JobId"
        ]
        # The limit is one job queued or running: a second Start waits for the first to end. One attempt:
        # the SDKs retry LimitExceededException, and a retry may come after the short first job has ended.
        once = server.client(retry=False)
        with pytest.raises(once.exceptions.LimitExceededException, match="1 video jobs are queued or running"):
            once.start_face_detection(Video=walk_video)
        with pytest.raises(
            rekognition.exceptions.VideoTooLargeException, match="613,928 bytes; videos are limited to 500,000"
        ):
            rekognition.start_face_detection(Video=video("clip.mp4", bucket="media"))
        with pytest.raises(rekognition.exceptions.InvalidS3ObjectException, match=r"s3://media/missing\.mp4"):
            rekognition.start_face_detection(Video=video("missing.mp4", bucket="media"))

        # Wait for the notification as AWS's Python example does: poll SQS, read the SNS envelope.
        notification, deadline = None, time.monotonic() + 600
        while notification is None:
            assert time.monotonic() < deadline, "no completion message"
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                body = json.loads(message["Body"])
                candidate = json.loads(body["Message"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                if candidate["JobId"] == job_id:
                    notification = candidate
        assert notification["Status"] == "SUCCEEDED" and notification["API"] == "StartFaceDetection"
        assert notification["JobTag"] == "walk-1"
        assert notification["Video"] == {"S3ObjectName": "walk.mp4", "S3Bucket": "media"}
        assert abs(notification["Timestamp"] / 1000 - time.time()) < 600
        done = rekognition.get_face_detection(JobId=job_id)
        assert done["JobStatus"] == "SUCCEEDED" and {f["Timestamp"] for f in done["Faces"]} == set(range(0, 3000, 200))
        # The job is over: there is room for another.
        assert rekognition.start_face_detection(Video=walk_video)["JobId"] != job_id
