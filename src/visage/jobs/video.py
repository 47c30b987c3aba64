"""Stored video: what Visage takes, checked before any frame is decoded, and its frames,
decoded as a stream and sampled at a fixed rate.

Visage analyses H.264 video in an MP4 or MOV file, as Rekognition Video does. Opening
a :class:`Video` reads only the start of the file and its header (the ``moov`` box):

- a file that is not MP4 or MOV (a JPEG renamed ``.mp4``, Matroska, AVI...), or whose
  video track is not H.264, is refused with ``InvalidParameterException``;
- a file over ``max_video_bytes`` or longer than ``max_video_seconds`` is refused with
  ``VideoTooLargeException``;
- a file that starts as MP4 but is broken (truncated, no ``moov`` box, a header FFmpeg
  cannot read) raises :class:`BrokenVideo`, whose message says what is wrong: the job
  that meets it ends FAILED with that message.

:meth:`Video.frames` decodes with FFmpeg (PyAV) one frame at a time and keeps one
frame every ``1/rate`` seconds: memory does not grow with the length of the video.
A frame's timestamp is its presentation time in the container, in milliseconds from
the first frame. A kept frame larger than ``video_frame_side`` on its long side is
scaled down as FFmpeg converts it to RGB (boxes and landmarks are ratios of the frame,
so they do not change).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO

import av
import av.error

from visage.config import Settings
from visage.engine import DecodedImage
from visage.errors import InvalidParameterException, VideoTooLargeException

#: Top-level box types an MP4 or MOV file may start with (ISO base media file format).
_MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"})
#: Other formats, by their first bytes, to say what a refused file is.
_OTHER_FORMATS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1a\x45\xdf\xa3", "a Matroska or WebM video"),
    (b"FLV", "an FLV video"),
    (b"\x00\x00\x01\xba", "an MPEG program stream"),
    (b"OggS", "an Ogg file"),
)
#: Top-level boxes checked for truncation; a fragmented file may have thousands.
_BOXES_CHECKED = 64
ACCEPTED = "Visage analyses H.264 video in MP4 or MOV files"


class BrokenVideo(Exception):
    """The file starts as an MP4 or MOV but cannot be read through; the message says why."""


@dataclass(frozen=True)
class VideoMetadata:
    """Rekognition's VideoMetadata."""

    codec: str  # "h264"
    format: str  # FFmpeg's name of the container: "QuickTime / MOV"
    duration_ms: int
    frame_rate: float
    frame_width: int
    frame_height: int
    color_range: str  # FULL or LIMITED

    def to_rekognition(self) -> dict[str, Any]:
        return {
            "Codec": self.codec,
            "DurationMillis": self.duration_ms,
            "Format": self.format,
            "FrameRate": self.frame_rate,
            "FrameHeight": self.frame_height,
            "FrameWidth": self.frame_width,
            "ColorRange": self.color_range,
        }


@dataclass(frozen=True)
class SampledFrame:
    timestamp_ms: int  # from the first frame, by the container's timestamps
    image: DecodedImage


class Video:
    """An MP4 or MOV file with an H.264 video track, opened from a seekable stream.

    ``name`` names it in messages (``s3://bucket/key``). Closing the video closes the stream.
    """

    def __init__(self, stream: BinaryIO, size: int, name: str, settings: Settings) -> None:
        self.name = name
        self._stream = stream
        self._container: Any = None
        self._frame_side = settings.video_frame_side
        try:
            if size > settings.max_video_bytes:
                raise VideoTooLargeException(
                    f"{name} is {size:,} bytes; videos are limited to {settings.max_video_bytes:,} bytes."
                )
            _check_boxes(stream, size, name)
            stream.seek(0)
            try:
                self._container = av.open(stream, mode="r")
            except av.error.FFmpegError as error:
                raise BrokenVideo(f"{name} starts as an MP4 file but FFmpeg cannot read its header: {error}") from error
            # A cover picture some writers add is a "video" track of one image: not the video.
            tracks = [
                t for t in self._container.streams.video if not t.disposition & av.stream.Disposition.attached_pic
            ]
            if not tracks:
                raise InvalidParameterException(f"{name} has no video track; {ACCEPTED}.")
            self._track = tracks[0]
            codec = self._track.codec_context
            if codec.name != "h264":
                raise InvalidParameterException(
                    f"The video track of {name} is {codec.codec.long_name} ({codec.name}), not H.264; {ACCEPTED}."
                )
            self.metadata = self._read_metadata()
            if self.metadata.duration_ms > settings.max_video_seconds * 1000:
                raise VideoTooLargeException(
                    f"{name} lasts {_clock(self.metadata.duration_ms)}; videos are limited to "
                    f"{_clock(settings.max_video_seconds * 1000)}."
                )
        except BaseException:
            self.close()
            raise

    def _read_metadata(self) -> VideoMetadata:
        track, codec = self._track, self._track.codec_context
        #: Whether the video track says how long it is (the container's duration may include a longer sound track).
        self._track_duration = track.duration is not None and track.time_base is not None
        if self._track_duration:
            duration_ms = round(float(track.duration * track.time_base) * 1000)
        else:
            duration_ms = round((self._container.duration or 0) / 1000)
        rate = track.average_rate or track.guessed_rate or 0
        return VideoMetadata(
            codec=codec.name,
            format=self._container.format.long_name,
            duration_ms=duration_ms,
            frame_rate=round(float(rate), 3),
            frame_width=codec.width,
            frame_height=codec.height,
            color_range="FULL" if codec.color_range == 2 else "LIMITED",  # AVCOL_RANGE_JPEG is full range
        )

    def frames(self, rate: float) -> Iterator[SampledFrame]:
        """One frame every ``1/rate`` seconds, in time order: the first frame at or after each
        sampling time. Raises :class:`BrokenVideo` if decoding fails or the frames stop short of
        the duration the header gives."""
        track = self._track
        track.thread_type = "AUTO"  # FFmpeg decodes with a thread per core
        width, height = self.metadata.frame_width, self.metadata.frame_height
        scale = min(1.0, self._frame_side / max(width, height, 1))
        size = {"width": max(2, round(width * scale)), "height": max(2, round(height * scale))} if scale < 1 else {}
        step = 1000.0 / rate
        due = 0.0
        origin: float | None = None
        last_ms = 0.0
        try:
            for frame in self._container.decode(track):
                if frame.time is None:
                    continue
                if origin is None:
                    start = track.start_time
                    origin = float(start * track.time_base) if start is not None else frame.time
                last_ms = (frame.time - origin) * 1000.0
                if last_ms < due - 1.0:  # a millisecond of slack for rounded timestamps
                    continue
                while due <= last_ms + 1.0:
                    due += step
                rgb = frame.to_ndarray(format="rgb24", **size)
                yield SampledFrame(max(0, round(last_ms)), DecodedImage.from_array(rgb))
        except av.error.FFmpegError as error:
            raise BrokenVideo(f"Decoding {self.name} failed at {last_ms / 1000:.1f} s: {error}") from error
        # Frames may end a frame or two before the track's duration; more than that is a damaged file.
        slack = max(1000.0, 3000.0 / (self.metadata.frame_rate or 1.0))
        if origin is None or (self._track_duration and last_ms < self.metadata.duration_ms - slack):
            reached = 0.0 if origin is None else last_ms
            raise BrokenVideo(
                f"The frames of {self.name} stop at {reached / 1000:.1f} s of the "
                f"{self.metadata.duration_ms / 1000:.1f} s its header gives: the file is truncated or damaged."
            )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._stream.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _check_boxes(stream: BinaryIO, size: int, name: str) -> None:
    """Refuses a file that is not MP4 or MOV; :class:`BrokenVideo` for one whose top-level boxes
    run past its end, or that has no ``moov`` box."""
    head = stream.read(12)
    if len(head) < 8 or head[4:8] not in _MP4_BOXES:
        raise InvalidParameterException(f"{name} is {_describe(head)}, not an MP4 or MOV file; {ACCEPTED}.")
    offset, seen = 0, set()
    for _ in range(_BOXES_CHECKED):
        if offset >= size:
            break
        stream.seek(offset)
        header = stream.read(16)
        if len(header) < 8:
            raise BrokenVideo(f"{name} is truncated: it ends inside the header of a box, at byte {size:,}.")
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1 and len(header) == 16:
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:  # the box runs to the end of the file
            length = size - offset
        label = kind.decode("latin-1")
        if length < 8:
            raise BrokenVideo(f"{name} is damaged: its '{label}' box at byte {offset:,} has an impossible size.")
        if offset + length > size:
            raise BrokenVideo(
                f"{name} is truncated: its '{label}' box at byte {offset:,} runs to byte {offset + length:,}, "
                f"past the end of the file ({size:,} bytes)."
            )
        seen.add(kind)
        offset += length
    else:
        return  # a fragmented file: the rest is checked as it is decoded
    if b"moov" not in seen:
        raise BrokenVideo(
            f"{name} has no 'moov' box (the index of its frames): the file is truncated, or its writer never finished it."
        )


def _describe(head: bytes) -> str:
    """What the first bytes of a refused file say it is."""
    if not head:
        return "empty"
    for signature, what in _OTHER_FORMATS:
        if head.startswith(signature):
            return what
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "an AVI video"
    if head[0] == 0x47:
        return "an MPEG transport stream"
    return f"not a video format Visage knows (it starts with {head[:8].hex(' ')})"


def _clock(ms: float) -> str:
    seconds = int(ms // 1000)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
