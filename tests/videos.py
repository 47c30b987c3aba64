"""Real videos made for the tests and the benchmarks: H.264 in MP4 through PyAV's libx264,
and a walk of LFW faces across the frames whose ground truth is known.

Nothing here is a stand-in: the files are ordinary MP4s that FFmpeg decodes like any
other, and the faces are photos of real people (LFW).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from visage.config import Settings
from visage.engine import Engine
from visage.jobs.analysis import search_faces
from visage.jobs.tracker import FaceTracker
from visage.jobs.video import Video
from visage.service import Caller, RekognitionService
from visage.store import open_store
from visage.store.base import JobResult


def write_h264(path: Path, frames: Iterable[np.ndarray], fps: int = 25, crf: int = 23) -> Path:
    """Writes RGB frames (H x W x 3 uint8, even sides) as H.264 in MP4."""
    with av.open(str(path), "w", format="mp4") as container:
        stream: av.VideoStream | None = None
        for rgb in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps))
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


def face_photo(lfw: Path, person: str, number: int, side: int) -> np.ndarray:
    """The middle of an LFW photo (the face and a margin), ``side`` pixels square."""
    image = Image.open(lfw / "lfw-deepfunneled" / person / f"{person}_{number:04d}.jpg").convert("RGB")
    return np.asarray(image.crop((50, 40, 200, 210)).resize((side, round(side * 170 / 150))))


@dataclass(frozen=True)
class Walker:
    """A face photo that moves in a straight line while it is on screen."""

    person: str
    photo: np.ndarray
    start: tuple[float, float]  # top-left corner, pixels, at ``enter``
    end: tuple[float, float]  # at ``leave``
    enter: float  # seconds
    leave: float

    def corner(self, t: float) -> tuple[int, int] | None:
        if not self.enter <= t < self.leave:
            return None
        f = (t - self.enter) / (self.leave - self.enter)
        return round(self.start[0] + f * (self.end[0] - self.start[0])), round(
            self.start[1] + f * (self.end[1] - self.start[1])
        )

    def centre(self, t: float) -> tuple[float, float] | None:
        corner = self.corner(t)
        if corner is None:
            return None
        return corner[0] + self.photo.shape[1] / 2, corner[1] + self.photo.shape[0] / 2


def walk_frames(
    walkers: Sequence[Walker], size: tuple[int, int], seconds: float, fps: int, seed: int = 0
) -> Iterable[np.ndarray]:
    """Frames of the walkers over a fixed textured background (later walkers drawn on top)."""
    width, height = size
    rng = np.random.default_rng(seed)
    background = (rng.integers(90, 140, (height // 8, width // 8, 3))).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).resize((width, height), Image.Resampling.BILINEAR))
    for n in range(round(seconds * fps)):
        frame = background.copy()
        for walker in walkers:
            corner = walker.corner(n / fps)
            if corner is None:
                continue
            x, y = corner
            h, w = walker.photo.shape[:2]
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
            if x1 > x0 and y1 > y0:
                frame[y0:y1, x0:x1] = walker.photo[y0 - y : y1 - y, x0 - x : x1 - x]
        yield frame


def who(walkers: Sequence[Walker], t: float, centre: tuple[float, float]) -> str:
    """The walker whose face is nearest a detected face's centre at time ``t``."""
    on_screen = [(w, c) for w in walkers if (c := w.centre(t)) is not None]
    walker, _ = min(on_screen, key=lambda wc: (wc[1][0] - centre[0]) ** 2 + (wc[1][1] - centre[1]) ** 2)
    return walker.person


def passing_walkers(lfw: Path, side: int = 100) -> list[Walker]:
    """Three people in three lanes: one crosses left to right, one right to left, leaves and comes
    back 0.8 s later, one stands in the middle lane for four seconds. No face covers another."""
    a = face_photo(lfw, "Colin_Powell", 1, side)
    b = face_photo(lfw, "Serena_Williams", 1, side)
    c = face_photo(lfw, "Tony_Blair", 1, side)
    return [
        Walker("Colin_Powell", a, (10, 5), (530, 5), 0.0, 6.0),
        Walker("Serena_Williams", b, (530, 243), (-60, 243), 0.0, 3.6),
        Walker("Serena_Williams", b, (-20, 243), (200, 243), 4.4, 6.0),
        Walker("Tony_Blair", c, (270, 124), (272, 124), 1.0, 5.0),
    ]


def occluding_walkers(lfw: Path, side: int = 120) -> list[Walker]:
    """Harder: two people cross in lanes that overlap a little (one face covers the other's chin
    as they pass); the second walks behind a third who stands still, leaves and comes back."""
    a = face_photo(lfw, "Colin_Powell", 1, side)
    b = face_photo(lfw, "Serena_Williams", 1, side)
    c = face_photo(lfw, "Tony_Blair", 1, side)
    return [
        Walker("Colin_Powell", a, (10, 40), (510, 40), 0.0, 6.0),
        Walker("Serena_Williams", b, (500, 150), (120, 150), 0.0, 3.6),
        Walker("Serena_Williams", b, (30, 160), (160, 160), 4.4, 6.0),
        Walker("Tony_Blair", c, (260, 190), (262, 190), 1.0, 5.0),
    ]


def face_search(
    engine: Engine, path: Path, folder: Path, photos: tuple[bytes, ...] = (), **settings: Any
) -> tuple[list[JobResult], FaceTracker]:
    """A face search of the video through the jobs' own path (:func:`search_faces`), against a
    collection of ``photos``: its results, and the tracker (for its merges)."""
    config = Settings(data_dir=folder / "data", **settings)
    service = RekognitionService(engine, open_store(config), config)
    caller = Caller.local("test")
    service.call("CreateCollection", {"CollectionId": "cast"}, caller)
    for photo in photos:
        service.call("IndexFaces", {"CollectionId": "cast", "Image": {"Bytes": photo}}, caller)
    collection = service.store.get_collection("cast")
    tracker = FaceTracker(engine.similarity_map("sface"))
    try:
        with Video(path.open("rb"), path.stat().st_size, path.name, config) as video:
            found = [r for _, frame in search_faces(video, service, collection, 80.0, tracker) for r in frame]
    finally:
        service.store.close()
    return found, tracker
