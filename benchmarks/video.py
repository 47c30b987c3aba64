"""Stored-video jobs: speed as a multiple of real time, peak memory, and the tracker's quality.

Speed and memory: each job runs in a fresh process, through the real job path (a
StartFaceDetection or StartFaceSearch call, the worker pool, results saved to a SQLite
store), at the default sampling rate (5 frames a second), on:

- the Hamilton clip (640x360, 9.2 s, 29.97 fps) of the eval data;
- the clip scaled up to 1920x1080 (made here with libx264);
- the clip looped to 1 minute and to 10 minutes (640x360): peak memory must not grow
  with the length of the video.

Speed is the video's duration over the job's wall time (from the worker taking it to
its end; a worker makes its one-time imports as it starts, before it takes a job, as in a
server). The machine is shared: the CPU time of the process and the load average are
written beside each figure. Each face search also runs with a new vector for every face
(``VISAGE_VIDEO_VECTOR_REUSE_MS=0``), the baseline of keeping the vectors of still faces
(visage.jobs.still_faces), in the same run.

Tracking: the jobs' face search (visage.jobs.analysis, its tracker and kept vectors) on
LFW faces walking across frames made here (tests/videos.py: people passing, and people
covering each other) and on the clip: how many Indexes each person gets, and whether an
Index ever covers two people.

Goals (issue 14): >= 5x real time at 360p, >= 1x at 1080p, the 10-minute video within
50 MiB of the 1-minute one.

    python benchmarks/video.py [--skip-long]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.videos import face_search, occluding_walkers, passing_walkers, walk_frames, who, write_h264

from _results import RESULTS, ROOT, replace_block, write_results
from visage.evaluation.data import eval_data_dir

CLIP = "video/short_hamilton_clip.mp4"
LIN = "face_recognition_examples/examples/lin-manuel-miranda.png"


# Videos made here ------------------------------------------------------------------------


def clip_frames(clip: Path, size: tuple[int, int] | None = None, repeat_for: float | None = None) -> Any:
    """The clip's frames (RGB), resized to ``size``, looped (forth and back) for ``repeat_for`` seconds."""
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    total = round((repeat_for or len(frames) / 29.97) * 29.97)
    cycle = frames + frames[::-1]
    for n in range(total):
        frame = cycle[n % len(cycle)]
        yield cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC) if size else frame


def make_videos(clip: Path, folder: Path, long: bool) -> dict[str, Path]:
    videos = {"clip_360p": clip}
    videos["clip_1080p"] = write_h264(folder / "clip_1080p.mp4", clip_frames(clip, (1920, 1080)), fps=30, crf=20)
    if long:
        videos["loop_1min_360p"] = write_h264(folder / "loop_1min.mp4", clip_frames(clip, repeat_for=60), fps=30)
        videos["loop_10min_360p"] = write_h264(folder / "loop_10min.mp4", clip_frames(clip, repeat_for=600), fps=30)
    return videos


# One job in a fresh process ----------------------------------------------------------------


def run_job(video: Path, operation: str) -> dict[str, Any]:
    """(Child process) one job through the service and its worker pool, on a store of its own."""
    from visage.config import Settings
    from visage.service import Caller, open_service

    folder = Path(tempfile.mkdtemp(prefix="visage-video-bench-"))
    try:
        (folder / "s3" / "videos").mkdir(parents=True)
        shutil.copy(video, folder / "s3" / "videos" / "video.mp4")
        settings = Settings.from_env(data_dir=folder / "data", s3_root=folder / "s3")
        service = open_service(settings)
        service.engine.warm_up()
        caller = Caller.local("benchmark")
        request: dict[str, Any] = {"Video": {"S3Object": {"Bucket": "videos", "Name": "video.mp4"}}}
        if operation == "StartFaceSearch":
            service.call("CreateCollection", {"CollectionId": "cast"}, caller)
            photo = (eval_data_dir() / LIN).read_bytes()
            service.call("IndexFaces", {"CollectionId": "cast", "Image": {"Bytes": photo}}, caller)
            request["CollectionId"] = "cast"
        made = [0]  # face vectors the job makes (the engine's own method, counted on the way)
        embed_faces = service.engine.embed_faces

        def counted(image: Any, faces: Any, model: str | None = None) -> Any:
            made[0] += len(faces)
            return embed_faces(image, faces, model)

        service.engine.embed_faces = counted  # type: ignore[method-assign]
        rss_before = peak_rss_mib()
        cpu_before = time.process_time()
        job_id = service.call(operation, request, caller)["JobId"]
        service.video.workers.start()
        get = "GetFaceSearch" if operation == "StartFaceSearch" else "GetFaceDetection"
        while (response := service.call(get, {"JobId": job_id, "MaxResults": 1}, caller))["JobStatus"] == "IN_PROGRESS":
            time.sleep(0.05)
        service.video.workers.stop()
        job = service.store.get_job(job_id)
        assert job.status == "SUCCEEDED", job.status_message
        assert job.started_at is not None and job.finished_at is not None
        wall = (job.finished_at - job.started_at).total_seconds()
        duration = response["VideoMetadata"]["DurationMillis"] / 1000
        peak = peak_rss_mib()  # the job's peak, before the results are read back
        results, after = 0, None
        while page := service.store.job_results(job_id, False, after, 1000):  # a page at a time, as a client reads them
            results, after = results + len(page), (0, page[-1].seq)
        service.store.close()
        return {
            "duration_s": round(duration, 2),
            "wall_s": round(wall, 2),
            "cpu_s": round(time.process_time() - cpu_before, 2),
            "x_real_time": round(duration / wall, 2),
            "peak_rss_mib": peak,
            "peak_rss_before_job_mib": rss_before,
            "results": results,
            "face_vectors_made": made[0] if operation == "StartFaceSearch" else None,
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


#: The job label of a face search that makes a new vector for every face (the baseline of kept vectors).
EVERY_FACE = "StartFaceSearch, a vector for every face"


def measure(video: Path, operation: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if operation == EVERY_FACE:
        operation, env["VISAGE_VIDEO_VECTOR_REUSE_MS"] = "StartFaceSearch", "0"
    command = [sys.executable, __file__, "--job", str(video), operation]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# Tracking quality --------------------------------------------------------------------------


def tracking(lfw: Path, clip: Path, folder: Path) -> list[dict[str, Any]]:
    from visage.engine import Engine
    from visage.faces import BoundingBox

    engine = Engine()
    lin = (eval_data_dir() / LIN).read_bytes()

    def indexes(path: Path, photos: tuple[bytes, ...] = ()) -> list[tuple[int, Any, int, bool]]:
        """(timestamp, box, Index after merges, matched a photo at 80) of every face, found by
        the jobs' own path (vectors kept as a job keeps them)."""
        results, tracker = face_search(engine, path, Path(tempfile.mkdtemp(dir=folder)), photos)
        merged = tracker.merged()
        return [
            (
                r.timestamp_ms,
                BoundingBox.from_rekognition(r.body["Person"]["BoundingBox"]),
                merged.get(r.person_index, r.person_index),
                bool(r.body["FaceMatches"]),
            )
            for r in results
        ]

    rows = []
    for name, walkers in (("lfw_passing", passing_walkers(lfw)), ("lfw_occluding", occluding_walkers(lfw))):
        path = write_h264(folder / f"{name}.mp4", walk_frames(walkers, (640, 360), 6.0, 25), fps=25)
        people: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for t, box, index, _ in indexes(path):
            centre = ((box.left + box.width / 2) * 640, (box.top + box.height / 2) * 360)
            people[who(walkers, t / 1000, centre)][index] += 1
        owners: dict[int, set[str]] = defaultdict(set)
        for person, counts in people.items():
            for index in counts:
                owners[index].add(person)
        faces = sum(sum(c.values()) for c in people.values())
        rows.append(
            {
                "video": name,
                "people": len(people),
                "indexes": len(owners),
                "faces": faces,
                "faces_under_their_main_index": round(sum(max(c.values()) for c in people.values()) / faces, 3),
                "indexes_covering_two_people": sum(len(o) > 1 for o in owners.values()),
                "indexes_per_person": {p: dict(c) for p, c in people.items()},
            }
        )
    on_screen = [(t, i) for t, _, i, matched in indexes(clip, (lin,)) if 2800 <= t <= 7010 and matched]
    rows.append(
        {
            "video": "hamilton_clip",
            "lin_samples_2.8_to_7.0_s": len(on_screen),
            "lin_indexes_2.8_to_7.0_s": len({i for _, i in on_screen}),
        }
    )
    return rows


def report(results: dict[str, Any]) -> None:
    """Writes the results: benchmarks/results/video.{json,md}, docs/performance.md, and the
    speed and tracking blocks of docs/video.md."""
    jobs, tracked = results["jobs"], results["tracking"]
    speed = [
        "| video | job | duration s | job wall s | x real time | CPU s | face vectors made | peak RSS MiB | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for j in jobs:
        vectors = j.get("face_vectors_made")
        speed.append(
            f"| {j['video']} | {j['operation']} | {j['duration_s']} | {j['wall_s']} | {j['x_real_time']} "
            f"| {j['cpu_s']} | {'' if vectors is None else vectors} | {j['peak_rss_mib']} | {j['load_average_1min']} |"
        )
    by = {(j["video"], j["operation"]): j for j in jobs}
    for video in ("clip_360p", "clip_1080p"):
        kept, every = by.get((video, "StartFaceSearch")), by.get((video, EVERY_FACE))
        if kept and every and kept.get("face_vectors_made") is not None:
            speed += [
                "",
                f"{video}: keeping the vectors of still faces made {kept['face_vectors_made']} face vectors where a "
                f"vector for every face made {every['face_vectors_made']}, and ran "
                f"{kept['x_real_time'] / every['x_real_time']:.2f}x as fast (same run).",
            ]
    if ("loop_10min_360p", "StartFaceDetection") in by:
        growth = (
            by["loop_10min_360p", "StartFaceDetection"]["peak_rss_mib"]
            - by["loop_1min_360p", "StartFaceDetection"]["peak_rss_mib"]
        )
        speed += ["", f"Peak memory, 10-minute video minus 1-minute video: {growth:+.1f} MiB (goal: within 50 MiB)."]
    speed += [
        "",
        "x real time is the video's duration over the job's wall time; CPU s is the process's CPU time "
        "(both cores count); load avg is the machine's 1-minute load while the job ran (2 cores: above 2, "
        "other work was waiting for them too).",
    ]
    tracking_lines = [
        "| video | people | Indexes | sampled faces | faces under their person's main Index | Indexes given to two people |",
        "|---|---|---|---|---|---|",
    ]
    for t in tracked[:-1]:
        tracking_lines.append(
            f"| {t['video']} | {t['people']} | {t['indexes']} | {t['faces']} "
            f"| {t['faces_under_their_main_index']:.1%} | {t['indexes_covering_two_people']} |"
        )
    lin = tracked[-1]
    tracking_lines += [
        "",
        f"Hamilton clip: Lin-Manuel Miranda is matched at Similarity >= 80 in {lin['lin_samples_2.8_to_7.0_s']} sampled "
        f"frames between 2.8 and 7.0 s, under {lin['lin_indexes_2.8_to_7.0_s']} Index.",
    ]
    footer = f"Measured at commit {results['commit'][:12]} with `{results['command']}`, sampling 5 frames a second."
    write_results(
        "video", results, "\n".join([*speed, "", "Tracking (Person.Index):", "", *tracking_lines, "", footer])
    )
    video_doc = ROOT / "docs" / "video.md"
    replace_block(video_doc, "video-speed", "\n".join([*speed, "", footer]))
    replace_block(video_doc, "video-tracking", "\n".join([*tracking_lines, "", footer]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-long", action="store_true", help="Leave out the 1- and 10-minute videos.")
    parser.add_argument("--render", action="store_true", help="Only write the docs again from results/video.json.")
    parser.add_argument("--job", nargs=2, metavar=("VIDEO", "OPERATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_job(Path(args.job[0]), args.job[1])))
        return
    if args.render:
        results = json.loads((RESULTS / "video.json").read_text())
        report({k: v for k, v in results.items() if k != "machine"})
        return
    data = eval_data_dir()
    clip = data / CLIP
    folder = Path(tempfile.mkdtemp(prefix="visage-video-bench-"))
    try:
        videos = make_videos(clip, folder, long=not args.skip_long)
        jobs = []
        for name, path in videos.items():
            operations = (
                ["StartFaceDetection", "StartFaceSearch", EVERY_FACE]
                if name.startswith("clip")
                else ["StartFaceDetection"]
            )
            for operation in operations:
                result = {"video": name, "operation": operation, **measure(path, operation)}
                print(json.dumps(result), flush=True)
                jobs.append(result)
        tracked = tracking(data / "lfw", clip, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/video.py" + (" --skip-long" if args.skip_long else "")
    report(
        {
            "commit": commit,
            "command": command,
            "jobs": jobs,
            "tracking": tracked,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


if __name__ == "__main__":
    main()
