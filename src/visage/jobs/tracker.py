"""Person.Index: one number per person through a video, from the faces of its sampled frames.

Faces are linked from one sampled frame to the next by two kinds of evidence:

- **box overlap with the same look**: the face overlaps (IoU >= :data:`MIN_OVERLAP`) the
  last box of a person seen in the last :data:`MAX_GAP_MS` milliseconds, and its
  Similarity to that person's face is at least :data:`CONTINUE_SIMILARITY`; this keeps
  someone who stays in view under one Index as they turn and move, while a different
  face that takes the same place does not inherit the Index;
- **the same face elsewhere**: Similarity at least :data:`REIDENTIFY_SIMILARITY` (a
  false-match rate of 1 in a million pairs) to a person seen at any earlier time, at
  any place: someone who leaves and comes back, or moves fast, keeps the Index.

When a face linked by position also re-identifies an earlier person, last seen before
the later one first appeared, the two were one person (the first faces of the later one
were poorly seen: half hidden, turned away): the later person takes the earlier Index,
and :meth:`FaceTracker.merged` says which Indexes given before must be renumbered, so that
at the end each person has one Index however they were first seen.

A person's face is the running mean of their face vectors (and their last vector;
the better of the two Similarities counts). In each frame the faces and people are
paired by the Hungarian method on overlap + cosine, so two faces of one frame never
share an Index; a face with no admissible pair starts a new Index. Similarities are
the face model's calibrated ones (:mod:`visage.engine.similarity`), so the bars mean
the same for every face model. docs/video.md gives the measured quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visage.engine.similarity import SimilarityMap
from visage.faces import BoundingBox

#: Least box overlap (intersection over union) that links a face to a person by position.
MIN_OVERLAP = 0.2
#: A person's last box is a place to link to for this long after they were last seen.
MAX_GAP_MS = 1500
#: Least Similarity of a face linked by position (Similarity 50: a cosine of 0.44 for sface,
#: where faces of one person in consecutive frames of the test clip are above 0.5).
CONTINUE_SIMILARITY = 50.0
#: Least Similarity of a face linked by look alone (a false-match rate of 1e-6 per pair).
REIDENTIFY_SIMILARITY = 99.0
#: Weight of a new face vector in a person's running mean.
MEAN_WEIGHT = 0.3
#: People remembered for re-identification; the longest unseen are forgotten first.
MAX_PEOPLE = 10_000

_NEVER = -1e9


@dataclass
class _Person:
    index: int
    box: BoundingBox
    first_seen_ms: int
    last_seen_ms: int
    last: np.ndarray  # the last face vector (unit length)
    mean: np.ndarray  # running mean of the face vectors, renormalised


def preload() -> None:
    """Imports what a :class:`FaceTracker` needs (scipy.optimize: about 0.4 s), so that a video
    worker pays it as it starts, not in its first face search."""
    import scipy.optimize  # noqa: F401


class FaceTracker:
    """Gives each face of a video's sampled frames, in time order, a person Index (0, 1, 2...)."""

    def __init__(self, similarity: SimilarityMap) -> None:
        # Here, not at the top: scipy.optimize takes a second to import, which a server that runs
        # no face search need not pay as it starts.
        from scipy.optimize import linear_sum_assignment

        self._pair = linear_sum_assignment
        self._continue = similarity.raw_threshold(CONTINUE_SIMILARITY)
        self._reidentify = similarity.raw_threshold(REIDENTIFY_SIMILARITY)
        self._people: list[_Person] = []
        self._next_index = 0
        self._renumbered: dict[int, int] = {}

    def merged(self) -> dict[int, int]:
        """Indexes given to people later found to be earlier ones, and the Index each has now."""
        final = {}
        for index in self._renumbered:
            target = index
            while target in self._renumbered:
                target = self._renumbered[target]
            final[index] = target
        return final

    def assign(self, timestamp_ms: int, boxes: Sequence[BoundingBox], vectors: Sequence[np.ndarray]) -> list[int]:
        """The Index of each face of one frame (boxes and unit vectors of the same faces)."""
        if not boxes:
            return []
        faces = np.asarray(vectors, dtype=np.float32)
        score = np.full((len(boxes), len(self._people)), _NEVER)
        if self._people:
            cosine = np.maximum(
                faces @ np.stack([p.last for p in self._people]).T,
                faces @ np.stack([p.mean for p in self._people]).T,
            )
            for j, person in enumerate(self._people):
                recent = timestamp_ms - person.last_seen_ms <= MAX_GAP_MS
                for i, box in enumerate(boxes):
                    overlap = box.overlap(person.box) if recent else 0.0
                    near = overlap >= MIN_OVERLAP and cosine[i, j] >= self._continue
                    if near or cosine[i, j] >= self._reidentify:
                        score[i, j] = overlap + cosine[i, j]
        pairs: dict[int, int] = {}
        if self._people:
            rows, columns = self._pair(score, maximize=True)
            pairs = {int(i): int(j) for i, j in zip(rows, columns) if score[i, j] > _NEVER}
        self._merge(pairs, cosine if self._people else None)
        indexes = []
        for i, (box, vector) in enumerate(zip(boxes, faces)):
            matched = pairs.get(i)
            if matched is not None:
                person = self._people[matched]
                person.box, person.last_seen_ms, person.last = box, timestamp_ms, vector
                mean = (1 - MEAN_WEIGHT) * person.mean + MEAN_WEIGHT * vector
                person.mean = mean / (np.linalg.norm(mean) or 1.0)
            else:
                person = _Person(self._next_index, box, timestamp_ms, timestamp_ms, vector, vector)
                self._next_index += 1
                self._people.append(person)
            indexes.append(person.index)
        self._people = [p for p in self._people if p.index >= 0]  # those merged away
        if len(self._people) > MAX_PEOPLE:
            self._people.sort(key=lambda p: p.last_seen_ms)
            del self._people[: len(self._people) - MAX_PEOPLE]
        return indexes

    def _merge(self, pairs: dict[int, int], cosine: np.ndarray | None) -> None:
        """A person paired with a face that re-identifies a person last seen before they first
        appeared takes that person's Index (the earlier person is dropped)."""
        if cosine is None:
            return
        taken = set(pairs.values())
        for i, j in pairs.items():
            person = self._people[j]
            earlier = [
                k
                for k, other in enumerate(self._people)
                if k not in taken
                and other.index >= 0
                and other.last_seen_ms < person.first_seen_ms
                and cosine[i, k] >= self._reidentify
            ]
            if earlier:
                k = max(earlier, key=lambda k: cosine[i, k])
                self._renumbered[person.index] = self._people[k].index
                person.index, person.first_seen_ms = self._people[k].index, self._people[k].first_seen_ms
                self._people[k].index = -1
                taken.add(k)
