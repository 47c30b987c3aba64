"""Every pair of labelled images: the genuine and impostor score distributions of a face model.

The images are a folder of one sub-folder per person (``DIR/<person>/<image>``): LFW's
``lfw-deepfunneled``, or an operator's own population (``visage eval calibrate --data DIR``).
All 13,233 LFW images are embedded once (through the evaluation cache) with the
face nearest the centre of each, or, with ``clean_labels``, with the face that agrees with
the person's other photos, and people filed under two names counted as one
(:mod:`visage.evaluation.labels`). A *genuine* pair is two images of the same
person, an *impostor* pair two images of different people; with every pair
counted there are about 240,000 genuine and 87 million impostor pairs, enough
to measure false-match rates down to about one in ten million. Images where no
face is found are left out, and listed.

The impostor scores are computed as chunked matrix products of the unit vectors
(images sorted by person, so each row's impostors are one contiguous run of
columns) straight into one preallocated float32 array, sorted in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visage.engine import Engine
from visage.errors import VisageError
from visage.evaluation.labels import mislabelled, person_faces, same_people
from visage.evaluation.lfw import embed_images, embedded_faces, lfw_dir


@dataclass(frozen=True)
class LabelledVectors:
    """One vector per image, with the person it shows; rows sorted by person."""

    model: str
    names: list[str]  # every person's name; a person index points in here
    paths: list[str]  # relative to lfw-deepfunneled, e.g. "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
    people: np.ndarray  # int person index of each row, non-decreasing
    vectors: np.ndarray  # float32, (rows, dimension), unit length
    without_face: list[str]  # images left out: no face found
    unreadable: list[str] = field(default_factory=list)  # images left out: not a PNG or JPEG the engine reads
    same_as: dict[str, str] = field(default_factory=dict)  # folders counted under another folder's name
    left_out: list[str] = field(default_factory=list)  # images left out: filed under the wrong name
    face_rule: str = "central"  # which face of an image with several: "central", or "agreeing" (clean_labels)
    photos_per_person: int = 0  # images kept of each person (at_most); 0: all

    def at_most(self, photos: int) -> LabelledVectors:
        """At most ``photos`` images of each person (their first, by file name); 0 keeps every image."""
        if photos <= 0:
            return self
        keep = np.zeros(len(self.people), dtype=bool)
        starts = np.searchsorted(self.people, np.unique(self.people), side="left")
        for start in starts:
            keep[start : start + photos] = self.people[start : start + photos] == self.people[start]
        return dataclasses.replace(
            self,
            paths=[p for p, k in zip(self.paths, keep) if k],
            people=self.people[keep],
            vectors=self.vectors[keep],
            photos_per_person=photos,
        )

    def subset(self, people: np.ndarray) -> LabelledVectors:
        """Only the images of the given person indices."""
        keep = np.isin(self.people, people)
        wanted = {self.names[i] for i in people}
        wanted |= {folder for folder, name in self.same_as.items() if name in wanted}
        return dataclasses.replace(
            self,
            paths=[p for p, k in zip(self.paths, keep) if k],
            people=self.people[keep],
            vectors=self.vectors[keep],
            without_face=[p for p in self.without_face if p.split("/")[0] in wanted],
            left_out=[p for p in self.left_out if p.split("/")[0] in wanted],
        )


#: The image files a person's folder may hold (the engine reads PNG and JPEG).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def lfw_vectors(engine: Engine, model: str, root: Path | None = None, clean_labels: bool = False) -> LabelledVectors:
    """Every LFW image's central face embedded with ``model`` (from the evaluation cache); with
    ``clean_labels``, the face that agrees with the person's other photos, the people of
    ``visage/data/lfw_labels.json`` filed under two names counted once each, and the photos
    it lists as filed under a wrong name left out."""
    images = lfw_dir(root) / "lfw-deepfunneled"
    if not clean_labels:
        return folder_vectors(engine, model, images)
    return folder_vectors(engine, model, images, clean_labels=True, same_as=same_people(), leave_out=mislabelled())


def person_images(images: Path) -> list[Path]:
    """The image files of ``images/<person>/``, sorted (hidden files and other files left out)."""
    return sorted(
        p
        for p in images.glob("*/*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.startswith(".")
        and not p.parent.name.startswith(".")
    )


def folder_vectors(
    engine: Engine,
    model: str,
    images: Path,
    skip_unreadable: bool = False,
    clean_labels: bool = False,
    same_as: dict[str, str] | None = None,
    leave_out: set[str] | None = None,
) -> LabelledVectors:
    """The central face of every image in ``images/<person>/``, embedded with ``model`` (from the
    evaluation cache); the sub-folder's name is the person. With ``skip_unreadable``, files
    the engine cannot decode are left out and listed instead of stopping the run. With
    ``clean_labels``, an image with several faces gives the one that agrees with the person's
    other photos (:func:`visage.evaluation.labels.person_faces`); ``same_as`` counts some
    folders under another folder's name (one person filed under two names); ``leave_out``
    names images (``<folder>/<file>``) to leave out (filed under a wrong name)."""
    paths = person_images(images)
    left_out = [p for p in paths if str(p.relative_to(images)) in (leave_out or set())]
    paths = [p for p in paths if p not in left_out]
    unreadable: list[str] = []
    if skip_unreadable:
        readable = []
        for path in paths:
            try:
                engine.decode(path.read_bytes())
                readable.append(path)
            except (VisageError, OSError):
                unreadable.append(str(path.relative_to(images)))
        paths = readable
    same_as = same_as or {}

    def label(path: Path) -> str:
        return same_as.get(path.parent.name, path.parent.name)

    # rows sorted by person: a folder counted under another name joins that person's run
    paths = sorted(paths, key=lambda p: (label(p), p))
    labels = [label(p) for p in paths]
    if clean_labels:
        faces = person_faces(embedded_faces(engine, paths, model), dict(zip(paths, labels)))
    else:
        faces = embed_images(engine, paths, model)
    names, people = np.unique(labels, return_inverse=True)
    kept = np.array([faces[p] is not None for p in paths])
    vectors = [face.embedding.vector for p in paths if (face := faces[p]) is not None and face.embedding is not None]
    return LabelledVectors(
        model=model,
        names=[str(n) for n in names],
        paths=[str(p.relative_to(images)) for p, k in zip(paths, kept) if k],
        people=people[kept].astype(np.int64),
        vectors=np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32),
        without_face=[str(p.relative_to(images)) for p, k in zip(paths, kept) if not k],
        unreadable=unreadable,
        same_as={p.parent.name: name for p, name in zip(paths, labels) if p.parent.name != name},
        left_out=[str(p.relative_to(images)) for p in left_out],
        face_rule="agreeing" if clean_labels else "central",
    )


@dataclass(frozen=True)
class PairScores:
    """Sorted raw scores of every genuine and every impostor pair."""

    genuine: np.ndarray  # float32, ascending
    impostor: np.ndarray  # float32, ascending

    def impostors_at_or_above(self, threshold: float) -> int:
        return len(self.impostor) - int(np.searchsorted(self.impostor, threshold, side="left"))

    def genuine_below(self, threshold: float) -> int:
        return int(np.searchsorted(self.genuine, threshold, side="left"))

    def fmr(self, threshold: float) -> float:
        """False-match rate: the share of impostor pairs scoring at least ``threshold``."""
        return self.impostors_at_or_above(threshold) / len(self.impostor)

    def fnmr(self, threshold: float) -> float:
        """False non-match rate: the share of genuine pairs scoring below ``threshold``."""
        return self.genuine_below(threshold) / len(self.genuine)


def all_pair_scores(labelled: LabelledVectors, chunk: int = 1024) -> PairScores:
    """Scores of all genuine and impostor pairs (each unordered pair once)."""
    vectors, people = labelled.vectors, labelled.people
    if np.any(np.diff(people) < 0):
        raise ValueError("rows must be sorted by person")
    n = len(people)
    ends = np.searchsorted(people, people, side="right")  # first row of the next person, per row
    starts = np.searchsorted(people, people, side="left")
    impostor = np.empty(int(np.sum(n - ends)), dtype=np.float32)
    position = 0
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        lowest = int(ends[first])
        block = vectors[first:last] @ vectors[lowest:].T
        for row in range(last - first):
            scores = block[row, ends[first + row] - lowest :]
            impostor[position : position + len(scores)] = scores
            position += len(scores)
    impostor.sort()
    genuine = []
    for start in np.unique(starts):
        end = int(ends[start])
        if end - start >= 2:
            block = vectors[start:end] @ vectors[start:end].T
            genuine.append(block[np.triu_indices(end - start, k=1)])
    genuine_scores = np.sort(np.concatenate(genuine)).astype(np.float32) if genuine else np.empty(0, np.float32)
    return PairScores(genuine=genuine_scores, impostor=impostor)


@dataclass(frozen=True)
class ScoredPair:
    """One impostor pair: its score, both images, and the two people's names."""

    score: float
    left: str
    right: str

    @property
    def people(self) -> tuple[str, str]:
        return self.left.split("/")[0], self.right.split("/")[0]


def impostor_pairs_at_or_above(labelled: LabelledVectors, threshold: float, chunk: int = 1024) -> list[ScoredPair]:
    """Every impostor pair scoring at least ``threshold``, highest first (meant for the sparse tail)."""
    vectors, people = labelled.vectors, labelled.people
    ends = np.searchsorted(people, people, side="right")
    found: list[ScoredPair] = []
    for first in range(0, len(people), chunk):
        last = min(len(people), first + chunk)
        block = vectors[first:last] @ vectors.T
        for row, column in zip(*np.nonzero(block >= threshold)):
            if column >= ends[first + row]:  # a later person: each unordered pair once
                found.append(ScoredPair(float(block[row, column]), labelled.paths[first + row], labelled.paths[column]))
    return sorted(found, key=lambda pair: -pair.score)
