"""The gallery search of ``visage eval gallery`` (:mod:`visage.evaluation.gallery.command`), step by step.

:func:`plan_gallery` picks the probes and the gallery, :func:`run_gallery` starts a
``visage serve``, indexes the gallery and searches the probes through boto3, and
:func:`compare` sets the false matches found against the calibration's prediction.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click
from botocore.exceptions import ClientError

from visage.bulk import as_external_image_id
from visage.config import Settings
from visage.contract import shape_max
from visage.engine.registry import face_model_entry
from visage.evaluation.intervals import binomial_range, poisson_range
from visage.evaluation.labelled import fairface, utkface
from visage.evaluation.lfw import lfw_dir
from visage.evaluation.prediction import map_identity, predicted_fmr
from visage.testing import LocalServer

THRESHOLDS = (80.0, 95.0, 99.0)
CONTROLS = 50  # people searched who *are* in a reduced gallery: the search must find them
COLLECTION = "gallery"
MAX_MATCHES = shape_max("MaxFaces")  # the most one search may return
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Plan:
    probes: list[tuple[str, Path]]  # (LFW person, the one image searched)
    gallery: list[Path]
    #: (LFW person with an image in the gallery, another image of theirs that is not): true matches to find
    controls: list[tuple[str, Path]] = field(default_factory=list)


def plan_gallery(data: Path, probes: int, limit: int | None = None, seed: int = 0) -> Plan:
    """Seeded probe people with one image each; every other face of the eval data as the gallery.

    A reduced gallery (``limit``) leaves some images of its LFW people out: up to
    :data:`CONTROLS` of those people are searched with such an image, as controls that
    the search finds who is there. The probes and the gallery do not depend on them.
    """
    images = lfw_dir(data) / "lfw-deepfunneled"
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted(images.iterdir()) if p.is_dir()}
    rng = random.Random(seed)
    chosen = sorted(rng.sample(sorted(people), probes))
    probe_list = [(person, rng.choice(people[person])) for person in chosen]
    excluded = set(chosen)
    gallery = [path for person, paths in people.items() if person not in excluded for path in paths]
    gallery += [f.path for f in utkface(data)] + [f.path for f in fairface(data)]
    controls: list[tuple[str, Path]] = []
    if limit is not None and limit < len(gallery):
        gallery = sorted(rng.sample(gallery, limit))
        kept = set(gallery)
        present = sorted({p.parent.name for p in gallery if p.is_relative_to(images)})
        left_out = {person: [p for p in people[person] if p not in kept] for person in present}
        candidates = [person for person in present if left_out[person]]
        controls = [
            (person, left_out[person][0]) for person in sorted(rng.sample(candidates, min(CONTROLS, len(candidates))))
        ]
    leaked = [p for p in gallery if p.parent.name in excluded and p.is_relative_to(images)]
    if leaked:
        raise AssertionError(f"probe people in the gallery: {leaked[:3]}")
    return Plan(probe_list, gallery, controls)


def external_id(path: Path, data: Path) -> str:
    """Rekognition's ExternalImageId naming the image's file (its path's end, if too long)."""
    return as_external_image_id(str(path.relative_to(data)).replace("/", ":"), keep_end=True)


def source(image_id: str) -> str:
    """The data set an ExternalImageId comes from: its eval data folder."""
    return image_id.split(":", 1)[0]


# Through the server ------------------------------------------------------------------


@dataclass
class Indexed:
    images: int
    faces: int = 0
    without_face: int = 0  # images where IndexFaces stored nothing
    reasons: Counter[str] = field(default_factory=Counter)  # why, in the images that stored none
    faces_by_source: Counter[str] = field(default_factory=Counter)  # "lfw", "utkface_crop_part1", ...
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class ProbeResult:
    person: str
    image: str
    face_found: bool
    matches: list[tuple[str, float]]  # (gallery ExternalImageId, Similarity), best first


def parallel(
    work: Callable[[T], R], items: Iterable[T], threads: int, every: int, label: str, progress: bool
) -> list[R]:
    items = list(items)
    started = time.monotonic()
    results = []
    with ThreadPoolExecutor(threads) as pool:
        for i, result in enumerate(pool.map(work, items), start=1):
            results.append(result)
            if progress and (i % every == 0 or i == len(items)):
                click.echo(f"{label}: {i:,} of {len(items):,} ({time.monotonic() - started:.0f} s)", err=True)
    return results


def index_gallery(client: Any, plan: Plan, data: Path, threads: int, progress: bool) -> Indexed:
    def index(path: Path) -> dict[str, Any] | str:
        try:
            return client.index_faces(
                CollectionId=COLLECTION,
                Image={"Bytes": path.read_bytes()},
                ExternalImageId=external_id(path, data),
                MaxFaces=1,
            )
        except ClientError as error:
            return f"{path.name}: {error.response['Error']['Code']}"

    started = time.monotonic()
    responses = parallel(index, plan.gallery, threads, 1000, "indexed", progress)
    indexed = Indexed(images=len(plan.gallery), errors=[r for r in responses if isinstance(r, str)])
    for path, response in zip(plan.gallery, responses):
        if isinstance(response, dict):
            indexed.faces_by_source[source(external_id(path, data))] += len(response["FaceRecords"])
            if not response["FaceRecords"]:
                indexed.without_face += 1
                indexed.reasons.update(r for face in response["UnindexedFaces"] for r in face["Reasons"])
    indexed.faces = client.describe_collection(CollectionId=COLLECTION)["FaceCount"]
    indexed.seconds = time.monotonic() - started
    return indexed


def search_probes(
    client: Any, probes: list[tuple[str, Path]], data: Path, threshold: float, threads: int, progress: bool
) -> list[ProbeResult]:
    def search(probe: tuple[str, Path]) -> ProbeResult:
        person, path = probe
        try:
            response = client.search_faces_by_image(
                CollectionId=COLLECTION,
                Image={"Bytes": path.read_bytes()},
                FaceMatchThreshold=threshold,
                MaxFaces=MAX_MATCHES,
            )
        except client.exceptions.InvalidParameterException:  # no face in the probe image
            return ProbeResult(person, external_id(path, data), False, [])
        matches = [(m["Face"].get("ExternalImageId", ""), float(m["Similarity"])) for m in response["FaceMatches"]]
        return ProbeResult(person, external_id(path, data), True, matches)

    return parallel(search, probes, threads, 100, "searched", progress)


def person(image_id: str) -> str | None:
    """The LFW person an ExternalImageId shows (None for the other sources)."""
    parts = image_id.split(":")
    return parts[2] if parts[0] == "lfw" and len(parts) > 3 else None


def controls_found(controls: list[ProbeResult], thresholds: tuple[float, ...]) -> dict[str, Any]:
    """How many control searches found their own person in the gallery, at each threshold."""
    searched = [c for c in controls if c.face_found]
    return {
        "searched": len(searched),
        "without_face": len(controls) - len(searched),
        "found": {
            f"{t:g}": sum(any(person(g) == c.person and s >= t for g, s in c.matches) for c in searched)
            for t in thresholds
        },
    }


# Observed against predicted ----------------------------------------------------------


@dataclass(frozen=True)
class ThresholdResult:
    threshold: float
    predicted_fmr: float | None
    comparisons: int
    false_matches: int
    expected_false_matches: float | None
    false_matches_range95: tuple[int, int] | None  # Poisson
    false_matches_verdict: str
    probes_with_false_match: int
    expected_probes: float | None
    probes_range95: tuple[int, int] | None  # binomial
    probes_verdict: str


def verdict(observed: int, allowed: tuple[int, int] | None) -> str:
    if allowed is None:
        return "no prediction (the map makes no false-match promise)"
    if observed > allowed[1]:
        return "above: more false matches than the calibration promises"
    if observed < allowed[0]:
        return "below: fewer than promised (the calibration is conservative here)"
    return "within the 95 % range"


def compare(
    results: list[ProbeResult],
    gallery_faces: int,
    fmr: Callable[[float], float | None],
    thresholds: tuple[float, ...],
    part: str | None = None,
) -> list[ThresholdResult]:
    """Observed false matches against the prediction, over the whole gallery or one ``part`` (a source)."""
    searched = [r for r in results if r.face_found]
    comparisons = len(searched) * gallery_faces
    rows = []
    for t in thresholds:
        hits = [[s for g, s in r.matches if s >= t and (part is None or source(g) == part)] for r in searched]
        false_matches = sum(len(h) for h in hits)
        probes = sum(1 for h in hits if h)
        rate = fmr(t)
        expected = rate * comparisons if rate is not None else None
        per_probe = 1.0 - (1.0 - rate) ** gallery_faces if rate is not None else None
        match_range = poisson_range(expected) if expected is not None else None
        probe_range = binomial_range(len(searched), per_probe) if per_probe is not None else None
        rows.append(
            ThresholdResult(
                t,
                rate,
                comparisons,
                false_matches,
                expected,
                match_range,
                verdict(false_matches, match_range),
                probes,
                per_probe * len(searched) if per_probe is not None else None,
                probe_range,
                verdict(probes, probe_range),
            )
        )
    return rows


# Running -----------------------------------------------------------------------------


def run_gallery(
    data: Path, probes: int = 500, limit: int | None = None, seed: int = 0, threads: int = 2, progress: bool = False
) -> dict[str, Any]:
    started = time.monotonic()
    settings = Settings.from_env()
    model = face_model_entry(settings.face_model)  # its version and map; the server loads the network
    plan = plan_gallery(data, probes, limit, seed)
    with tempfile.TemporaryDirectory(prefix="visage-gallery-") as folder, LocalServer(Path(folder)) as server:
        client = server.client()
        version = client.create_collection(CollectionId=COLLECTION)["FaceModelVersion"]
        if version != model.version:
            raise RuntimeError(f"the server's collection uses {version}, this process's map is for {model.version}")
        indexed = index_gallery(client, plan, data, threads, progress)
        search_started = time.monotonic()
        results = search_probes(client, plan.probes, data, min(THRESHOLDS), threads, progress)
        search_seconds = time.monotonic() - search_started
        controls = search_probes(client, plan.controls, data, min(THRESHOLDS), threads, progress)
    promise = partial(predicted_fmr, model.similarity_map())
    rows = compare(results, indexed.faces, promise, THRESHOLDS)
    parts = {
        part: compare(results, faces, promise, THRESHOLDS, part)
        for part, faces in sorted(indexed.faces_by_source.items())
    }
    truncated = [r.image for r in results if len(r.matches) >= MAX_MATCHES]
    matches: list[dict[str, Any]] = [
        {"probe": r.image, "gallery": g, "similarity": s} for r in results for g, s in r.matches
    ]
    matches.sort(key=lambda m: -m["similarity"])
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "face_model_version": version,
        "similarity_map": map_identity(model.similarity_map()),
        "seed": seed,
        "limit": limit,
        "probe_people": len(plan.probes),
        "probes_searched": sum(r.face_found for r in results),
        "probes_without_face": [r.image for r in results if not r.face_found],
        "gallery_images": indexed.images,
        "gallery_faces": indexed.faces,
        "gallery_images_without_indexed_face": indexed.without_face,
        "unindexed_reasons": dict(indexed.reasons),
        "index_errors": indexed.errors,
        "index_seconds": round(indexed.seconds, 1),
        "search_seconds": round(search_seconds, 1),
        "runtime_seconds": round(time.monotonic() - started, 1),
        "truncated_searches": truncated,
        "controls": controls_found(controls, THRESHOLDS),
        "thresholds": [asdict(r) for r in rows],
        "by_source": {
            part: {"faces": indexed.faces_by_source[part], "thresholds": [asdict(r) for r in part_rows]}
            for part, part_rows in parts.items()
        },
        "false_matches": matches,
    }
