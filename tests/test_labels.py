"""Cleaner labels for the calibration (visage.evaluation.labels): the face of an image that is
its person, people LFW files under two names counted once, photos under a wrong name left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from visage.engine import Engine
from visage.engine.recognition import cosine
from visage.evaluation.allpairs import LabelledVectors, all_pair_scores, folder_vectors
from visage.evaluation.labels import LFW_LABELS_FILE, mislabelled, same_people


def _linked(tmp_path: Path, lfw: Path, people: list[str]) -> Path:
    """A folder of LFW people (linked, not copied: the evaluation cache keys on the real files)."""
    for person in people:
        (tmp_path / person).symlink_to(lfw / "lfw-deepfunneled" / person, target_is_directory=True)
    return tmp_path


def test_every_group_of_one_person_names_lfw_folders_and_says_why(lfw: Path) -> None:
    groups = json.loads(LFW_LABELS_FILE.read_text())["groups"]
    assert len(groups) >= 4
    names = [name for group in groups for name in group["names"]]
    assert len(names) == len(set(names)), "a folder in two groups"
    for group in groups:
        assert len(group["names"]) >= 2
        assert len(group["evidence"]) > 40, group
        for name in group["names"]:
            assert (lfw / "lfw-deepfunneled" / name).is_dir(), name
    mapping = same_people()
    assert mapping["Joseph_Blatter"] == mapping["Sepp_Blatter"] == "Sepp_Blatter"


def test_a_person_filed_under_two_names_is_one_person_in_the_pairs(engine: Engine, lfw: Path, tmp_path: Path) -> None:
    folder = _linked(tmp_path, lfw, ["Abdullah_Gul", "Joseph_Blatter", "Sepp_Blatter"])
    apart = folder_vectors(engine, "sface", folder, clean_labels=True)
    together = folder_vectors(engine, "sface", folder, clean_labels=True, same_as=same_people())
    assert apart.names == ["Abdullah_Gul", "Joseph_Blatter", "Sepp_Blatter"]
    assert together.names == ["Abdullah_Gul", "Sepp_Blatter"]
    assert together.same_as == {"Joseph_Blatter": "Sepp_Blatter"}
    assert np.all(np.diff(together.people) >= 0), "rows must stay sorted by person"
    blatter = [p for p, person in zip(together.paths, together.people) if together.names[person] == "Sepp_Blatter"]
    assert sorted(p.split("/")[0] for p in blatter) == ["Joseph_Blatter"] * 2 + ["Sepp_Blatter"] * 4
    # the 2 x 4 pairs across the two names move from impostor to genuine
    a, t = all_pair_scores(apart), all_pair_scores(together)
    assert len(t.genuine) == len(a.genuine) + 8
    assert len(t.impostor) == len(a.impostor) - 8
    # a subset of the people keeps the images of both names
    half = together.subset(np.array([together.names.index("Sepp_Blatter")]))
    assert len(half.paths) == 6


def test_in_a_photo_of_several_people_the_persons_face_is_the_one_like_their_other_photos(
    engine: Engine, lfw: Path, tmp_path: Path
) -> None:
    """A photo filed under Abdullah Gul whose central face is Recep Tayyip Erdogan's: by default
    (the central face) it gives Erdogan's vector; with clean labels, Gul's."""
    images = lfw / "lfw-deepfunneled"
    person = tmp_path / "Abdullah_Gul"
    person.mkdir()
    for n in (1, 2, 3):
        (person / f"Abdullah_Gul_000{n}.jpg").symlink_to(images / "Abdullah_Gul" / f"Abdullah_Gul_000{n}.jpg")
    panels = [
        Image.open(images / "Recep_Tayyip_Erdogan" / "Recep_Tayyip_Erdogan_0001.jpg"),
        Image.open(images / "Recep_Tayyip_Erdogan" / "Recep_Tayyip_Erdogan_0002.jpg"),  # the centre
        Image.open(images / "Abdullah_Gul" / "Abdullah_Gul_0004.jpg"),
    ]
    group = Image.new("RGB", (sum(p.width for p in panels), max(p.height for p in panels)))
    for i, panel in enumerate(panels):
        group.paste(panel, (i * panels[0].width, 0))
    group.save(person / "group.jpg", quality=95)

    def likeness(labelled: LabelledVectors) -> float:
        """Mean cosine of the group photo's vector to the person's three other photos."""
        row = labelled.paths.index("Abdullah_Gul/group.jpg")
        others = [i for i, p in enumerate(labelled.paths) if p != "Abdullah_Gul/group.jpg"]
        return float((labelled.vectors[others] @ labelled.vectors[row]).mean())

    assert likeness(folder_vectors(engine, "sface", tmp_path)) < 0.3  # Erdogan's face
    cleaned = folder_vectors(engine, "sface", tmp_path, clean_labels=True)
    assert cleaned.face_rule == "agreeing"
    assert likeness(cleaned) > 0.5  # Gul's


def test_photos_listed_as_filed_under_a_wrong_name_are_left_out(engine: Engine, lfw: Path, tmp_path: Path) -> None:
    """The list's claims hold on the photos: a photograph filed under two names is one face, and
    the photo of Abdullah Gul filed as Recep Tayyip Erdogan is like Gul's photos, not Erdogan's."""
    wrong = mislabelled()
    entries = json.loads(LFW_LABELS_FILE.read_text())["mislabelled"]
    assert len(entries) >= 8 and all(len(e["evidence"]) > 30 for e in entries)
    images = lfw / "lfw-deepfunneled"
    for entry in entries:
        if len(entry["images"]) == 2:  # one photograph under two names
            a, b = (engine.embed((images / i).read_bytes())[0] for i in entry["images"])
            assert cosine(a.embedded, b.embedded) > 0.9, entry
    folder = _linked(tmp_path, lfw, ["Abdullah_Gul", "Recep_Tayyip_Erdogan"])
    kept = folder_vectors(engine, "sface", folder, leave_out=wrong)
    photo = "Recep_Tayyip_Erdogan/Recep_Tayyip_Erdogan_0004.jpg"
    assert kept.left_out == [photo] and photo not in kept.paths
    everything = folder_vectors(engine, "sface", folder)
    vector = everything.vectors[everything.paths.index(photo)]
    gul, erdogan = (kept.vectors[kept.people == kept.names.index(n)] for n in ("Abdullah_Gul", "Recep_Tayyip_Erdogan"))
    assert np.median(gul @ vector) > 0.6 > 0.3 > np.median(erdogan @ vector)


def test_at_most_keeps_the_first_photos_of_every_person(engine: Engine, lfw: Path, tmp_path: Path) -> None:
    folder = _linked(tmp_path, lfw, ["Abdullah_Gul", "Joseph_Blatter", "Sepp_Blatter"])
    every = folder_vectors(engine, "sface", folder)
    assert every.at_most(0) is every
    two = every.at_most(2)
    assert two.photos_per_person == 2 and two.names == every.names
    assert np.bincount(two.people).tolist() == [2, 2, 2]
    assert two.paths == [p for p in every.paths if int(p[-8:-4]) <= 2]  # the first two of each, by file name
    assert np.array_equal(two.vectors, every.vectors[[every.paths.index(p) for p in two.paths]])
