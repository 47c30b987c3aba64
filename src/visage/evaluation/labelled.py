"""The labelled faces of the evaluation data, read from their own label files.

- UTKFace ``crop_part1``: the balanced subset of ``labels.csv``
  (``balanced_random_200_group``: 200 faces per gender x race cell), true age and gender.
- FairFace sample: ``ground_truth.json``, age group x gender, 30 faces per cell.
- LFW: the per-image gender lists; images in both lists or in neither are left out.

Each set is a list of :class:`LabelledFace`; ``cell`` names the demographic group.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from visage.evaluation.data import eval_data_dir

UTKFACE = "utkface_crop_part1"
FAIRFACE = "fairface_age_gender_540"
LFW = "lfw"
FAIRFACE_AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")


@dataclass(frozen=True)
class LabelledFace:
    path: Path
    cell: str  # e.g. "females/black", "20-29/Female", "Female"
    gender: str  # "Male" or "Female"
    age: int | None = None  # exact age in years (UTKFace)
    age_group: str | None = None  # e.g. "20-29" or "70+" (FairFace)
    identity: str | None = None  # the person (LFW)


def age_group_bounds(group: str) -> tuple[float, float]:
    """Group ``a-b`` covers ages a <= age < b + 1 (whole years as labelled); ``70+`` is open above."""
    if group.endswith("+"):
        return float(group[:-1]), float("inf")
    low, high = group.split("-")
    return float(low), float(high) + 1.0


def utkface(root: Path | None = None) -> list[LabelledFace]:
    folder = (root or eval_data_dir()) / UTKFACE
    faces = []
    with (folder / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            group = row["balanced_random_200_group"]
            if not group:
                continue
            gender = "Female" if group.startswith("females") else "Male"
            faces.append(LabelledFace(folder / row["filename"], group, gender, age=int(row["age"])))
    return sorted(faces, key=lambda f: (f.cell, f.path.name))


def fairface(root: Path | None = None) -> list[LabelledFace]:
    folder = (root or eval_data_dir()) / FAIRFACE / "fairface"
    rows = json.loads((folder / "ground_truth.json").read_text())
    faces = [
        LabelledFace(folder / r["filename"], f"{r['age']}/{r['gender']}", r["gender"], age_group=r["age"]) for r in rows
    ]
    order = {g: i for i, g in enumerate(FAIRFACE_AGE_GROUPS)}
    return sorted(faces, key=lambda f: (order[f.age_group or ""], f.gender, f.path.name))


def lfw_by_gender(root: Path | None = None) -> list[LabelledFace]:
    folder = (root or eval_data_dir()) / LFW
    lists = {
        gender: set((folder / "gender_labels" / f"{gender.lower()}_names.txt").read_text().split())
        for gender in ("Female", "Male")
    }
    ambiguous = lists["Female"] & lists["Male"]
    faces = []
    for gender, names in lists.items():
        for name in sorted(names - ambiguous):
            person = name.rsplit("_", 1)[0]
            faces.append(LabelledFace(folder / "lfw-deepfunneled" / person / name, gender, gender, identity=person))
    return sorted(faces, key=lambda f: (f.cell, f.path.name))


def by_cell(faces: Iterable[LabelledFace]) -> dict[str, list[LabelledFace]]:
    cells: dict[str, list[LabelledFace]] = defaultdict(list)
    for face in faces:
        cells[face.cell].append(face)
    return dict(cells)


def limit_per_cell(faces: list[LabelledFace], limit: int | None, seed: int = 0) -> list[LabelledFace]:
    """At most ``limit`` faces per cell, a seeded random choice (all of them without a limit).

    Faces with an identity are taken person by person (all of a person's images or none,
    people in seeded random order, skipping anyone who would overflow the limit), so a
    reduced LFW run keeps its same-person pairs.
    """
    if limit is None:
        return faces
    kept: list[LabelledFace] = []
    for cell, members in by_cell(faces).items():
        rng = random.Random(f"{seed}:{cell}")
        if members[0].identity is None:
            kept += sorted(rng.sample(members, min(limit, len(members))), key=lambda f: f.path.name)
            continue
        people: dict[str, list[LabelledFace]] = defaultdict(list)
        for face in members:
            people[face.identity or ""].append(face)
        chosen: list[LabelledFace] = []
        for person in rng.sample(sorted(people), len(people)):
            if len(chosen) + len(people[person]) <= limit:
                chosen += people[person]
            if len(chosen) == limit:
                break
        kept += sorted(chosen, key=lambda f: f.path.name)
    return kept
