"""Several photos per person: does a user with five faces find a turned face that one face misses?

What: SearchUsersByImage against users with one enrolled face and against users with
five, probed with each person's most turned photo, at UserMatchThreshold 80 and 99.

How: through the real in-process RekognitionService (real Engine, real SQLite store in
a temporary folder), on LFW deep-funneled people with at least 6 images where a face
is found. DetectFaces gives each image's largest face and its Pose.Yaw; the image
whose face is most turned (largest |Yaw|) is the person's probe. Five enrolment
images are drawn from the rest at random (seed 16, people in name order); the first
drawn is the one face of collection "one", all five are associated with the user in
collection "five" (IndexFaces with MaxFaces 1 and QualityFilter NONE, then
AssociateFaces). Every other person's user is a distractor. Each probe is searched
with SearchUsersByImage (MaxUsers 5) in both collections, and with SearchFacesByImage
(MaxFaces 5) in "one", at each threshold. The outcome is the first result: the
person's own user (a hit), another user (a false identification) or nothing (a miss);
"any stranger" counts the probes that brought back any other user at all. A user's
Similarity is that of its best face (see ``RekognitionService._search_users``), so in
"one" both searches rank alike. Detections are kept in memory for the run only.

Goal: measure what enrolling five photos instead of one buys for people seen in
several poses (issue 16), for docs/accuracy.md ("Several photos per person").

    python benchmarks/several_photos.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results
from visage.config import Settings
from visage.engine import Engine
from visage.errors import VisageError
from visage.evaluation.data import eval_data_dir
from visage.service import Caller, RekognitionService
from visage.store.sqlite import SQLiteStore

MIN_IMAGES = 6  # the probe and five enrolment images
ENROLLED = {"one": 1, "five": 5}
THRESHOLDS = (80.0, 99.0)
MAX_RESULTS = 5
SEED = 16
YAW_BANDS = ((0.0, 30.0), (30.0, 45.0), (45.0, 180.0))  # |Yaw| of the probe, degrees

Row = dict[str, Any]


def largest_yaw(service: RekognitionService, caller: Caller, path: Path) -> float | None:
    """Pose.Yaw of the image's largest face (DetectFaces lists the largest first), or None."""
    try:
        faces = service.detect_faces({"Image": {"Bytes": path.read_bytes()}}, caller)["FaceDetails"]
    except VisageError:
        return None
    return float(faces[0]["Pose"]["Yaw"]) if faces else None


def choose(root: Path, service: RekognitionService, caller: Caller) -> dict[str, dict[str, Any]]:
    """Per person (name order): the probe (most turned face), five enrolment images and their yaws."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= MIN_IMAGES)
    paths = [image for folder in folders for image in sorted(folder.glob("*.jpg"))]
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        yaws = dict(zip(paths, pool.map(lambda p: largest_yaw(service, caller, p), paths)))
    print(f"DetectFaces on {len(paths):,} images of {len(folders)} people in {time.perf_counter() - started:.0f} s")
    rng = random.Random(SEED)
    people: dict[str, dict[str, Any]] = {}
    for folder in folders:
        found = {p: y for p in sorted(folder.glob("*.jpg")) if (y := yaws[p]) is not None}
        if len(found) < MIN_IMAGES:
            continue
        probe = max(found, key=lambda p: (abs(found[p]), p.name))
        enrol = rng.sample(sorted(p for p in found if p != probe), ENROLLED["five"])
        people[folder.name] = {
            "probe": probe,
            "probe_yaw": found[probe],
            "enrol": enrol,
            "enrol_yaws": [found[p] for p in enrol],
            "images": len(found),
        }
    return people


def enrol(service: RekognitionService, caller: Caller, collection: str, people: dict[str, Any], n: int) -> int:
    """Users named after the people, each with the faces of its first ``n`` enrolment images;
    the number of images where IndexFaces stored no face."""
    service.call("CreateCollection", {"CollectionId": collection}, caller)
    unindexed = 0
    for name, person in people.items():
        service.call("CreateUser", {"CollectionId": collection, "UserId": name}, caller)
        face_ids = []
        for path in person["enrol"][:n]:
            records = service.call(
                "IndexFaces",
                {
                    "CollectionId": collection,
                    "Image": {"Bytes": path.read_bytes()},
                    "ExternalImageId": name,
                    "MaxFaces": 1,
                    "QualityFilter": "NONE",
                },
                caller,
            )["FaceRecords"]
            face_ids += [r["Face"]["FaceId"] for r in records]
            unindexed += not records
        if face_ids:
            service.call("AssociateFaces", {"CollectionId": collection, "UserId": name, "FaceIds": face_ids}, caller)
    return unindexed


def outcome(person: str, found: list[tuple[str, float]]) -> dict[str, Any]:
    """The first result's verdict (hit, false identification or miss), and the strangers that came back."""
    first = "miss" if not found else ("hit" if found[0][0] == person else "false identification")
    return {"outcome": first, "strangers": [[name, round(s, 3)] for name, s in found if name != person]}


def search(
    service: RekognitionService, caller: Caller, operation: str, collection: str, path: Path, t: float
) -> list[tuple[str, float]]:
    """The people (UserId, or the face's ExternalImageId: the same name) the search returns, best first,
    with their Similarity."""
    image = {"Bytes": path.read_bytes()}
    if operation == "SearchUsersByImage":
        request = {"CollectionId": collection, "Image": image, "UserMatchThreshold": t, "MaxUsers": MAX_RESULTS}
        users = service.call(operation, request, caller)["UserMatches"]
        return [(m["User"]["UserId"], m["Similarity"]) for m in users]
    request = {"CollectionId": collection, "Image": image, "FaceMatchThreshold": t, "MaxFaces": MAX_RESULTS}
    try:
        faces = service.call(operation, request, caller)["FaceMatches"]
    except VisageError:  # no face in the probe: SearchFacesByImage fails where SearchUsersByImage returns nothing
        return []
    return [(m["Face"]["ExternalImageId"], m["Similarity"]) for m in faces]


def measure(service: RekognitionService, caller: Caller, people: dict[str, Any]) -> list[Row]:
    cases = [("SearchUsersByImage", c) for c in ENROLLED] + [("SearchFacesByImage", "one")]
    rows = []
    for operation, collection in cases:
        for threshold in THRESHOLDS:
            per_probe = {
                name: outcome(name, search(service, caller, operation, collection, person["probe"], threshold))
                for name, person in people.items()
            }
            rows.append(
                {
                    "operation": operation,
                    "collection": collection,
                    "faces_per_user": ENROLLED[collection],
                    "threshold": threshold,
                    **counts(per_probe),
                    "by_probe_yaw": {
                        f"{low:g}-{high:g}": counts(
                            {n: o for n, o in per_probe.items() if in_band(people[n], low, high)}
                        )
                        for low, high in YAW_BANDS
                    },
                    # The probes that were not plain hits: what came back instead, or beside.
                    "not_hits": {n: o for n, o in per_probe.items() if o["outcome"] != "hit" or o["strangers"]},
                }
            )
            print(f"{operation} {collection} at {threshold:g}: {counts(per_probe)}")
    return rows


def in_band(person: dict[str, Any], low: float, high: float) -> bool:
    return low <= abs(person["probe_yaw"]) < high


def counts(per_probe: dict[str, dict[str, Any]]) -> dict[str, int]:
    outcomes = list(per_probe.values())
    return {
        "probes": len(outcomes),
        "hits": sum(o["outcome"] == "hit" for o in outcomes),
        "false_identifications": sum(o["outcome"] == "false identification" for o in outcomes),
        "misses": sum(o["outcome"] == "miss" for o in outcomes),
        "any_stranger": sum(bool(o["strangers"]) for o in outcomes),
    }


def quartiles(values: list[float]) -> dict[str, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return {"median": round(median, 1), "p25": round(q1, 1), "p75": round(q3, 1), "max": round(max(values), 1)}


def table(results: dict[str, Any]) -> str:
    n = results["people"]
    lines = [
        "| Search | Faces per user | Threshold | Hits | False identifications | Misses | Any stranger returned |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        cells = [f"{r[k]} ({100 * r[k] / n:.1f} %)" for k in ("hits", "false_identifications", "misses")]
        lines.append(
            f"| {r['operation']} | {r['faces_per_user']} | {r['threshold']:g} | " + " | ".join(cells) + f" | "
            f"{r['any_stranger']} |"
        )
    users = [r for r in results["rows"] if r["operation"] == "SearchUsersByImage"]
    bands = list(users[0]["by_probe_yaw"])
    band_lines = [
        "| Probe abs(Yaw), degrees | Probes | "
        + " | ".join(f"{r['faces_per_user']} face(s) at {r['threshold']:g}" for r in users)
        + " |",
        "|---|---|" + "---|" * len(users),
    ]
    for band in bands:
        probes = users[0]["by_probe_yaw"][band]["probes"]
        band_lines.append(
            f"| {band} | {probes} | " + " | ".join(f"{r['by_probe_yaw'][band]['hits']}" for r in users) + " |"
        )
    probe, enrolled = results["probe_abs_yaw"], results["enrolled_abs_yaw"]
    return (
        f"{n} LFW people with at least {MIN_IMAGES} images where a face is found ({results['images']:,} images), "
        f"each probed with their most turned face: |Yaw| median {probe['median']:g} degrees (quartiles "
        f"{probe['p25']:g}-{probe['p75']:g}, largest {probe['max']:g}); enrolled faces median {enrolled['median']:g}. "
        f"Each search is against all {n} users; the other {n - 1} are distractors. First result: the person's own "
        f"user (hit), another (false identification), none (miss); the last column counts probes that brought "
        f"back any other user among up to {MAX_RESULTS} (`benchmarks/several_photos.py`).\n\n"
        + "\n".join(lines)
        + "\n\nHits of SearchUsersByImage by how turned the probe is:\n\n"
        + "\n".join(band_lines)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    root = eval_data_dir() / "lfw" / "lfw-deepfunneled"
    with tempfile.TemporaryDirectory(prefix="visage-several-photos-") as folder:
        engine = Engine(Settings(data_dir=Path(folder)))
        engine.warm_up(attributes=False)  # loaded once, before two threads detect
        service = RekognitionService(engine, SQLiteStore(Path(folder) / "visage.db"))
        caller = Caller.local("benchmark")
        try:
            people = choose(root, service, caller)
            started = time.perf_counter()
            unindexed = {c: enrol(service, caller, c, people, n) for c, n in ENROLLED.items()}
            print(f"enrolled in {time.perf_counter() - started:.0f} s; images without a stored face: {unindexed}")
            started = time.perf_counter()
            rows = measure(service, caller, people)
            print(f"searched in {time.perf_counter() - started:.0f} s")
        finally:
            service.store.close()
    results: dict[str, Any] = {
        "people": len(people),
        "images": sum(p["images"] for p in people.values()),
        "min_images": MIN_IMAGES,
        "face_model_version": engine.face_model().version,
        "enrolment": f"5 images drawn at random from each person's others (random.Random({SEED}), people in name "
        "order); collection one holds the first drawn",
        "max_results": MAX_RESULTS,
        "unindexed_enrolment_images": unindexed,
        "probe_abs_yaw": quartiles([abs(p["probe_yaw"]) for p in people.values()]),
        "enrolled_abs_yaw": quartiles([abs(y) for p in people.values() for y in p["enrol_yaws"]]),
        "rows": rows,
        "probes": {
            name: {"image": p["probe"].name, "yaw": round(p["probe_yaw"], 1), "enrolled": [e.name for e in p["enrol"]]}
            for name, p in people.items()
        },
    }
    markdown = "### Several photos per person (SearchUsersByImage)\n\n" + table(results)
    print(markdown)
    write_results("several_photos", results, markdown)


if __name__ == "__main__":
    main()
