"""Face vectors a video face search can keep: a face that has not moved or changed since its
person's vector was made, a moment before, keeps that vector instead of a new one.

A face vector costs about 18 ms of CPU, most of a face search's time on a video whose people
stay in view. Between two sampled frames 0.2 s apart a face that stays where it was usually
looks the same, and a new vector would be the same to within the noise of the model. A face
of a sampled frame keeps the vector its person was given (and that vector's FaceMatches) when:

- it is **in the same place**: its box overlaps (IoU >= :data:`SAME_PLACE`) the box of
  exactly one person of the previous sampled frame, and no other face of its frame overlaps
  it (IoU >= :data:`NEIGHBOUR`): where faces crowd together a new vector decides who is who;
- it **looks the same**: the normalised correlation of its box's pixels (grey, 24 x 24)
  with those of the face the vector was made from is at least :data:`SAME_LOOK`; a cut to
  another shot, or another face taking the place, looks different;
- the vector is **recent**: made at most ``reuse_ms`` milliseconds before (setting
  ``video_vector_reuse_ms``, default 600: every face is embedded again at least every
  three samples at 5 frames a second).

Any other face gets a new vector. docs/video.md gives what this saves and what it changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from visage.faces import BoundingBox

#: Least overlap (IoU) with a person's box of the previous sampled frame to be in the same place.
SAME_PLACE = 0.5
#: Another face of the frame overlapping this much (IoU) makes a face crowded: it gets a new vector.
NEIGHBOUR = 0.2
#: Least normalised correlation of the grey 24 x 24 pixels of the box with the face the vector
#: was made from (faces of one person 0.2 s apart in the test clip: mostly above 0.9).
SAME_LOOK = 0.8
#: Side of the grey patch a face's look is compared on.
LOOK_SIDE = 24


@dataclass
class MadeVector:
    """A face vector made for a face of one sampled frame, with the look it was made from; its
    vector and FaceMatches are filled in when the embedding is done, before any later frame's
    results are (frames are finished in time order)."""

    made_ms: int
    look: np.ndarray  # the face's grey patch, zero mean, unit length (:func:`look`)
    vector: np.ndarray | None = None
    matches: list[dict[str, Any]] | None = None  # its FaceMatches, as GetFaceSearch returns them

    @property
    def made(self) -> np.ndarray:
        """The vector (an error if it is asked for before its frame's embedding was done)."""
        if self.vector is None:
            raise RuntimeError(f"the face vector of {self.made_ms} ms is not made yet")
        return self.vector


def look(rgb: np.ndarray, box: BoundingBox) -> np.ndarray:
    """The face's pixels as a grey 24 x 24 patch, zero mean and unit length, to compare looks by a dot product."""
    height, width = rgb.shape[:2]
    left, top = max(0, int(box.left * width)), max(0, int(box.top * height))
    right = min(width, max(left + 1, int((box.left + box.width) * width)))
    bottom = min(height, max(top + 1, int((box.top + box.height) * height)))
    patch = cv2.resize(rgb[top:bottom, left:right], (LOOK_SIDE, LOOK_SIDE), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32).ravel()
    grey -= grey.mean()
    return grey / (float(np.linalg.norm(grey)) or 1.0)


class StillFaces:
    """Which faces of each sampled frame keep their person's vector; fed the frames in time order."""

    def __init__(self, reuse_ms: int) -> None:
        self._reuse_ms = reuse_ms
        #: The people of the previous sampled frame: their box and the vector they have.
        self._previous: list[tuple[BoundingBox, MadeVector]] = []

    def vectors(self, timestamp_ms: int, boxes: Sequence[BoundingBox], looks: Sequence[np.ndarray]) -> list[MadeVector]:
        """For each face of the next frame, the vector it keeps, or a new one to make (``made_ms``
        is then ``timestamp_ms``)."""
        out = []
        for i, (box, face_look) in enumerate(zip(boxes, looks)):
            places = [made for place, made in self._previous if box.overlap(place) >= SAME_PLACE]
            crowded = any(box.overlap(other) >= NEIGHBOUR for j, other in enumerate(boxes) if j != i)
            keep = (
                self._reuse_ms > 0
                and len(places) == 1
                and not crowded
                and timestamp_ms - places[0].made_ms <= self._reuse_ms
                and float(face_look @ places[0].look) >= SAME_LOOK
            )
            out.append(places[0] if keep else MadeVector(timestamp_ms, face_look))
        self._previous = list(zip(boxes, out))
        return out
