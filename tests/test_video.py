"""Stored video, below the server: which files are taken (checked before decoding), how
frames are sampled, and the tracker that gives each person one Index, on real video
(the Hamilton clip of the eval data, and LFW faces walking across frames made here)."""

from __future__ import annotations

import io
from collections import defaultdict
from itertools import groupby, pairwise
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from visage.config import Settings
from visage.engine import Engine
from visage.errors import InvalidParameterException, VideoTooLargeException
from visage.faces import BoundingBox
from visage.jobs.still_faces import SAME_LOOK, StillFaces, look
from visage.jobs.tracker import CONTINUE_SIMILARITY, REIDENTIFY_SIMILARITY, FaceTracker
from visage.jobs.video import BrokenVideo, Video
from visage.store.base import JobResult

from .videos import Walker, face_photo, face_search, occluding_walkers, passing_walkers, walk_frames, who, write_h264


@pytest.fixture(scope="session")
def clip_path(hamilton_clip: Path) -> Path:
    return hamilton_clip


@pytest.fixture(scope="session")
def clip(hamilton_clip: Path) -> bytes:
    return hamilton_clip.read_bytes()


def open_video(data: bytes, settings: Settings | None = None, name: str = "clip.mp4") -> Video:
    return Video(io.BytesIO(data), len(data), name, settings or Settings())


def remux(source: Path, target: Path, faststart: bool) -> bytes:
    """The video track of ``source`` in a new MP4, its index (moov) first if ``faststart``."""
    with (
        av.open(str(source)) as inp,
        av.open(str(target), "w", format="mp4", options={"movflags": "faststart"} if faststart else {}) as out,
    ):
        track = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = track
                out.mux(packet)
    return target.read_bytes()


# What is taken ------------------------------------------------------------------------------


def test_the_clip_is_read_and_sampled_at_five_frames_a_second(clip: bytes) -> None:
    with open_video(clip) as video:
        assert video.metadata.to_rekognition() == {
            "Codec": "h264",
            "DurationMillis": 9176,
            "Format": "QuickTime / MOV",
            "FrameRate": 29.97,
            "FrameHeight": 360,
            "FrameWidth": 640,
            "ColorRange": "LIMITED",
        }
        frames = list(video.frames(Settings().video_sample_rate))
    times = [f.timestamp_ms for f in frames]
    # 275 frames at 29.97 fps: every sixth, timed by the container from the first frame.
    assert len(frames) == 46 and times[:5] == [0, 200, 400, 601, 801] and times[-1] == 9009
    assert all(180 < b - a < 220 for a, b in pairwise(times))
    assert frames[0].image.rgb.shape == (360, 640, 3)


def test_the_sampling_rate_is_a_setting(clip: bytes) -> None:
    with open_video(clip) as video:
        times = [f.timestamp_ms for f in video.frames(1.0)]
    assert times == [0, 1001, 2002, 3003, 4004, 5005, 6006, 7007, 8008, 9009]


def test_other_formats_and_codecs_are_refused_before_decoding(tmp_path: Path, eval_data: Path, clip: bytes) -> None:
    jpeg = (eval_data / "face_recognition_examples" / "examples" / "biden.jpg").read_bytes()
    with pytest.raises(InvalidParameterException, match=r"renamed\.mp4 is a JPEG image, not an MP4 or MOV file"):
        open_video(jpeg, name="renamed.mp4")
    with pytest.raises(InvalidParameterException, match="is empty"):
        open_video(b"", name="empty.mp4")
    path = tmp_path / "mpeg4.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for n in range(20):
        writer.write(np.full((240, 320, 3), n * 10, np.uint8))
    writer.release()
    with pytest.raises(InvalidParameterException, match=r"MPEG-4 part 2 \(mpeg4\), not H.264"):
        open_video(path.read_bytes())
    with pytest.raises(VideoTooLargeException, match="613,928 bytes; videos are limited to 600,000 bytes"):
        open_video(clip, Settings(max_video_bytes=600_000))
    with pytest.raises(VideoTooLargeException, match="lasts 0:00:09; videos are limited to 0:00:05"):
        open_video(clip, Settings(max_video_seconds=5))


def test_broken_mp4_files_say_what_is_wrong(tmp_path: Path, clip_path: Path, clip: bytes) -> None:
    # The clip keeps its index (moov) at the end: cut, it has a box that runs past the end.
    with pytest.raises(BrokenVideo, match=r"truncated: its 'mdat' box at byte 40 runs to byte 604,704, past the end"):
        open_video(clip[: len(clip) // 2])
    # The same without its moov box at all.
    with pytest.raises(BrokenVideo, match="has no 'moov' box"):
        open_video(clip[:604_704])
    # Index first ("fast start"): the header reads, and a cut or damaged file fails as it is decoded.
    faststart = remux(clip_path, tmp_path / "faststart.mp4", faststart=True)
    assert faststart[36:40] == b"moov"
    with open_video(faststart) as video:
        assert len(list(video.frames(5.0))) == 46
    with pytest.raises(BrokenVideo, match="truncated: its 'mdat' box"):
        open_video(faststart[: len(faststart) // 2])
    damaged = bytearray(faststart)
    middle = len(damaged) // 2
    damaged[middle : middle + 50_000] = bytes(50_000)
    with open_video(bytes(damaged)) as video, pytest.raises(BrokenVideo, match=r"Decoding clip.mp4 failed at 4\.\d s"):
        list(video.frames(5.0))


def test_a_video_is_decoded_as_a_stream(tmp_path: Path) -> None:
    """A frame is decoded at a time: a 20 s video whose frames are all different (so none
    compresses to nothing) reads through ~180 KiB of pixels at a time."""
    rng = np.random.default_rng(1)
    frames = (rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(20 * 10))
    path = write_h264(tmp_path / "noise.mp4", frames, fps=10, crf=35)
    with open_video(path.read_bytes()) as video:
        seen = [(f.timestamp_ms, f.image.rgb.nbytes) for f in video.frames(5.0)]
    assert [t for t, _ in seen] == list(range(0, 20_000, 200))
    assert {n for _, n in seen} == {240 * 320 * 3}


def test_large_frames_are_scaled_down_before_faces_are_looked_for(tmp_path: Path, astronaut_rgb: np.ndarray) -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[100:612, 300:812] = astronaut_rgb
    path = write_h264(tmp_path / "720p.mp4", [frame] * 10, fps=10)
    with open_video(path.read_bytes(), Settings(video_frame_side=640)) as video:
        assert (video.metadata.frame_width, video.metadata.frame_height) == (1280, 720)
        (first, *_) = video.frames(5.0)
    assert first.image.rgb.shape == (360, 640, 3)


# Person.Index ---------------------------------------------------------------------------


def tracked(
    engine: Engine, path: Path, walkers: list[Walker], size: tuple[int, int], folder: Path
) -> dict[str, dict[int, int]]:
    """Each person's Indexes (after the tracker's merges), with how many sampled faces got each."""
    results, tracker = face_search(engine, path, folder)
    faces: list[tuple[str, int]] = []
    for t, frame in groupby(results, key=lambda r: r.timestamp_ms):
        found = list(frame)
        assert len({r.person_index for r in found}) == len(found)  # two faces of a frame never share an Index
        for result in found:
            box = BoundingBox.from_rekognition(result.body["Person"]["BoundingBox"])
            centre = ((box.left + box.width / 2) * size[0], (box.top + box.height / 2) * size[1])
            faces.append((who(walkers, t / 1000, centre), result.person_index))
    merged = tracker.merged()
    people: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for person, index in faces:
        people[person][merged.get(index, index)] += 1
    return {person: dict(indexes) for person, indexes in people.items()}


def test_each_person_keeps_one_index(engine: Engine, lfw: Path, tmp_path: Path) -> None:
    """Three LFW people: two cross the frame, one of them leaves and comes back, one stands still."""
    walkers = passing_walkers(lfw)
    path = write_h264(tmp_path / "walk.mp4", walk_frames(walkers, (640, 360), 6.0, 25), fps=25)
    people = tracked(engine, path, walkers, (640, 360), tmp_path)
    assert set(people) == {"Colin_Powell", "Serena_Williams", "Tony_Blair"}
    assert all(len(indexes) == 1 for indexes in people.values()), people
    assert len({next(iter(indexes)) for indexes in people.values()}) == 3, people  # no Index shared
    assert people["Colin_Powell"] == {1: 30} and sum(people["Serena_Williams"].values()) == 26


def test_an_index_never_spans_two_people_through_occlusion(engine: Engine, lfw: Path, tmp_path: Path) -> None:
    """Harder: faces cover each other as they pass. A half-hidden face may start a new Index;
    none is given to two people, and a person seen again keeps their first Index."""
    walkers = occluding_walkers(lfw)
    path = write_h264(tmp_path / "occluded.mp4", walk_frames(walkers, (640, 360), 6.0, 25), fps=25)
    people = tracked(engine, path, walkers, (640, 360), tmp_path)
    owners: dict[int, set[str]] = defaultdict(set)
    for person, indexes in people.items():
        for index in indexes:
            owners[index].add(person)
    assert all(len(names) == 1 for names in owners.values()), people
    serena = people["Serena_Williams"]
    assert max(serena.values()) >= 0.9 * sum(serena.values()), people


def box(left: float, top: float = 0.1) -> BoundingBox:
    return BoundingBox(left=left, top=top, width=0.1, height=0.2)


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def test_faces_of_one_frame_never_share_an_index(engine: Engine) -> None:
    tracker = FaceTracker(engine.similarity_map("sface"))
    same = np.eye(128, dtype=np.float32)[0]
    assert tracker.assign(0, [box(0.1), box(0.5)], [same, same]) == [0, 1]
    # Both look like both: each keeps the one it overlaps.
    assert tracker.assign(200, [box(0.52), box(0.12)], [same, same]) == [1, 0]
    assert tracker.merged() == {}


def test_a_later_person_merges_only_with_one_gone_before_they_came(engine: Engine) -> None:
    similarity = engine.similarity_map("sface")
    tracker = FaceTracker(similarity)
    reidentify, carry_on = (similarity.raw_threshold(s) for s in (REIDENTIFY_SIMILARITY, CONTINUE_SIMILARITY))
    rng = np.random.default_rng(3)
    a, b, c, d = (v / np.linalg.norm(v) for v in rng.standard_normal((4, 128)).astype(np.float32))
    hidden = (a + 3 * d) / np.linalg.norm(a + 3 * d)  # A half hidden: a cosine of about 0.3 to A
    # Better seen, but still short of re-identifying A: halfway from the hidden face's cosine to A's bar
    weight = next(w for w in np.linspace(0, 1, 1001) if cosine(hidden + w * a, a) >= (hidden @ a + reidentify) / 2)
    better = (hidden + weight * a) / np.linalg.norm(hidden + weight * a)
    assert better @ a < reidentify and better @ hidden >= carry_on  # what the steps below rest on
    assert tracker.assign(0, [box(0.1)], [a]) == [0]
    assert tracker.assign(2000, [box(0.6)], [hidden]) == [1]  # A gone, a new face
    assert tracker.assign(2200, [box(0.61)], [better]) == [1]
    assert tracker.assign(2400, [box(0.62)], [a]) == [0]  # seen clearly: it was A
    assert tracker.merged() == {1: 0}
    # B and C were seen together: C never takes B's Index, however alike they look later.
    assert tracker.assign(3000, [box(0.1, 0.6), box(0.5, 0.6)], [b, c]) == [2, 3]
    assert tracker.assign(6000, [box(0.5, 0.6)], [c]) == [3]
    assert tracker.assign(6200, [box(0.51, 0.6)], [b]) == [2]
    assert tracker.merged() == {1: 0}


# Face vectors kept while a face stays still ------------------------------------------------


def test_a_still_face_keeps_its_vector_and_any_change_gets_a_new_one(lfw: Path) -> None:
    """A face that stays where it was, and looks the same, keeps its person's vector for up to
    reuse_ms; one that moves away, is crowded, turns into someone else or waits too long gets a
    new one, and reuse_ms 0 makes a new one for every face."""
    powell, blair = face_photo(lfw, "Colin_Powell", 1, 100), face_photo(lfw, "Tony_Blair", 1, 100)

    def frame(*faces: tuple[np.ndarray, int]) -> tuple[np.ndarray, list[BoundingBox]]:
        rgb = np.full((360, 640, 3), 110, np.uint8)
        for photo, x in faces:
            rgb[100 : 100 + photo.shape[0], x : x + 100] = photo
        return rgb, [BoundingBox(x / 640, 100 / 360, 100 / 640, photo.shape[0] / 360) for photo, x in faces]

    def vectors(still: StillFaces, t: int, rgb: np.ndarray, boxes: list[BoundingBox]) -> list[int]:
        """When each face's vector was made."""
        return [made.made_ms for made in still.vectors(t, boxes, [look(rgb, b) for b in boxes])]

    still = StillFaces(600)
    assert vectors(still, 0, *frame((powell, 200))) == [0]
    assert vectors(still, 200, *frame((powell, 204))) == [0]  # a little move: kept
    assert vectors(still, 400, *frame((blair, 204))) == [400]  # someone else in the place
    assert vectors(still, 600, *frame((blair, 206))) == [400]
    assert vectors(still, 800, *frame((blair, 206))) == [400]
    assert vectors(still, 1000, *frame((blair, 206))) == [400]
    assert vectors(still, 1200, *frame((blair, 206))) == [1200]  # 800 ms old: made again
    assert vectors(still, 1400, *frame((blair, 330))) == [1400]  # moved away
    assert vectors(still, 1600, *frame((blair, 330), (powell, 400))) == [1600, 1600]  # crowded
    assert vectors(still, 1800, *frame((blair, 330))) == [1800]  # the previous frame's was crowded
    assert vectors(still, 2000, *frame()) == []  # a frame without her
    assert vectors(still, 2200, *frame((blair, 330))) == [2200]  # not in the previous frame

    rgb, boxes = frame((powell, 500))
    (new,) = still.vectors(2400, boxes, [look(rgb, b) for b in boxes])
    with pytest.raises(RuntimeError, match="not made yet"):  # a new vector is read only once it is made
        _ = new.made

    again = StillFaces(0)
    assert vectors(again, 0, *frame((powell, 200))) == [0]
    assert vectors(again, 200, *frame((powell, 200))) == [200]

    # The looks that decided: the same face moved 4 px, and another face in its place.
    rgb, (place,) = frame((powell, 200))
    moved, (moved_place,) = frame((powell, 204))
    other, _ = frame((blair, 200))
    assert (
        float(look(rgb, place) @ look(moved, moved_place)) >= SAME_LOOK > float(look(rgb, place) @ look(other, place))
    )


def test_a_cut_to_another_face_in_the_same_place_is_not_matched_as_the_first(
    engine: Engine, lfw: Path, tmp_path: Path
) -> None:
    """Colin Powell for 1 s, then a cut to Tony Blair in the very same place (while Powell's
    vector, made at 0.8 s, could still be kept): Blair's faces get their own vectors, an Index
    of their own, and no match with Powell's photo."""
    side, cut = 120, 1.0
    powell, blair = face_photo(lfw, "Colin_Powell", 1, side), face_photo(lfw, "Tony_Blair", 1, side)
    walkers = [
        Walker("Colin_Powell", powell, (260, 100), (260, 100), 0.0, cut),
        Walker("Tony_Blair", blair, (243, 105), (243, 105), cut, 3.0),  # his face where Powell's was
    ]
    path = write_h264(tmp_path / "cut.mp4", walk_frames(walkers, (640, 360), 3.0, 25), fps=25)
    photo = (lfw / "lfw-deepfunneled" / "Colin_Powell" / "Colin_Powell_0002.jpg").read_bytes()
    results, _ = face_search(engine, path, tmp_path, (photo,))
    powell_frames = [r for r in results if r.timestamp_ms < cut * 1000]
    blair_frames = [r for r in results if r.timestamp_ms >= cut * 1000]
    assert len(powell_frames) == 5 and len(blair_frames) == 10
    assert all(r.body["FaceMatches"] for r in powell_frames)  # Powell is found while he is there
    assert not any(r.body["FaceMatches"] for r in blair_frames)
    assert {r.person_index for r in powell_frames} == {0} and {r.person_index for r in blair_frames} == {1}


def test_kept_vectors_change_little_on_the_clip(
    engine: Engine, hamilton_clip: Path, lin_manuel_miranda: bytes, tmp_path: Path
) -> None:
    """The clip searched for Lin-Manuel Miranda with vectors kept (the default) and with a new
    vector for every face: the same faces, the same people, and he is found in the same span."""
    kept, _ = face_search(engine, hamilton_clip, tmp_path / "kept", (lin_manuel_miranda,))
    fresh, _ = face_search(engine, hamilton_clip, tmp_path / "fresh", (lin_manuel_miranda,), video_vector_reuse_ms=0)
    assert [r.body["Person"]["BoundingBox"] for r in kept] == [r.body["Person"]["BoundingBox"] for r in fresh]

    def found(results: list[JobResult]) -> list[int]:
        return [r.timestamp_ms for r in results if r.body["FaceMatches"]]

    assert len(set(found(kept)) ^ set(found(fresh))) <= 2, (found(kept), found(fresh))
    assert len({r.person_index for r in kept}) == len({r.person_index for r in fresh})
