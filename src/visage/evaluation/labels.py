"""Cleaner labels for the calibration: which face of an image is its person, people filed twice, wrong names.

A Similarity map is fitted, and checked on held-out people, on every pair of a labelled
folder's images (:mod:`visage.evaluation.allpairs`). A wrong label there is not one error:
a photo filed under the wrong name makes a "false match" with every photo of the person it
really shows, and the held-out check then fails on label noise, not on the model. Three
kinds are cleaned here; the first for LFW and for an operator's own folder, the others
from LFW's list of errors, ``visage/data/lfw_labels.json``:

- **An image with several faces.** The labelled person's face is the one that agrees with
  their other photos: the face whose mean cosine to the person's *reference* faces is
  highest. The references are the faces of the person's other images that hold only one
  face (no doubt whose face that is); where there are none, the central faces of their
  other images. A person with a single image keeps its central face. (LFW's images are
  cropped around the labelled face, so there it changes no image; in a folder of
  ordinary photos it does.)
- **One person under two names** (``groups``): LFW's folder names that are one person
  (Sepp and Joseph Blatter), each group with its evidence. A group counts as one person:
  its pairs are genuine, not impostor, pairs.
- **A photo under a name that is not the person shown** (``mislabelled``): a photo of
  Abdullah Gul filed as Recep Tayyip Erdogan, one photograph filed under two names. These
  are left out, and listed.

The candidates came from comparing photos across folders: ``benchmarks/label_cleaning.py``
lists the pairs of folders whose photos match each other as closely as one person's do, and
each photo was compared with its own folder's photos and with every other folder's of four
or more (median cosine). A reader judged each candidate from the names and the photos; each
entry's evidence says what decided it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

import numpy as np

from visage.evaluation.lfw import central_face
from visage.faces import Face

LFW_LABELS_FILE = Path(str(files("visage") / "data" / "lfw_labels.json"))


def same_people(path: Path = LFW_LABELS_FILE) -> dict[str, str]:
    """Each folder name of a listed group, mapped to the group's first name (the label it counts under)."""
    groups = json.loads(path.read_text())["groups"]
    return {name: group["names"][0] for group in groups for name in group["names"]}


def mislabelled(path: Path = LFW_LABELS_FILE) -> set[str]:
    """The photos (``<folder>/<file>``) filed under a name that is not the person shown."""
    return {image for entry in json.loads(path.read_text())["mislabelled"] for image in entry["images"]}


def person_faces(faces: Mapping[Path, list[Face]], person_of: Mapping[Path, str]) -> dict[Path, Face | None]:
    """The face of each image that shows its labelled person (see the module's docstring);
    None for an image without a face."""
    images_of: dict[str, list[Path]] = defaultdict(list)
    for path in faces:
        images_of[person_of[path]].append(path)
    chosen: dict[Path, Face | None] = {}
    for paths in images_of.values():
        embedded = {p: [f for f in faces[p] if f.embedding is not None] for p in paths}
        for path in paths:
            candidates = embedded[path]
            if len(candidates) < 2:
                chosen[path] = central_face(faces[path])
                continue
            others = [p for p in paths if p != path]
            references = [embedded[p][0] for p in others if len(embedded[p]) == 1]
            if not references:
                references = [f for p in others if (f := central_face(embedded[p])) is not None]
            if not references:
                chosen[path] = central_face(faces[path])
                continue
            stacked = np.stack([f.embedded.vector for f in references])
            agreement = [float((stacked @ face.embedded.vector).mean()) for face in candidates]
            chosen[path] = candidates[int(np.argmax(agreement))]
    return chosen
