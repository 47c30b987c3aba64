"""Write ``docs/accuracy.md`` and its plots from the evaluation results; nothing in it is typed by hand.

Sources: ``docs/accuracy/lfw-<model>.json`` (written by ``visage eval lfw``), the
Similarity maps with their calibration metadata (``visage eval calibrate``),
``visage/data/fusion.json`` (``visage eval fusion-weight``), each face model's
embedding time, from ``benchmarks/results/engine_speed.json`` (the one embedding
time every page quotes; see :mod:`visage.evaluation.published`), and users of one
face against five, from ``benchmarks/results/several_photos.json``.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from visage.engine.recognition import FUSION_FILE
from visage.engine.registry import MODEL_NAMES
from visage.engine.similarity import SimilarityMap
from visage.evaluation.accuracy.curves import Curve
from visage.evaluation.accuracy.plots import det_plot, heldout_plot, roc_plot, similarity_plot
from visage.evaluation.calibration.similarity_map import (
    CHECK_DOWN_TO,
    CHECK_FACTOR,
    FIRST_LEVEL_FMR,
    FMR_PER_POINT,
    LINEAR_FMR,
    LINEAR_FROM,
    MIN_EVENTS,
    TAIL_SIMILARITY,
    fmr_for_similarity,
    is_checked,
)
from visage.evaluation.published import Sources
from visage.service import MAX_FACES_PER_USER

GALLERY, PROBES = 25_000, 500  # the plain-language example: a 25,000-face gallery searched with 500 probes


def write_accuracy_doc(
    docs: Path, sources: Sources, maps: dict[str, SimilarityMap] | None = None, own_map: Path | None = None
) -> Path:
    """Write ``docs/accuracy.md`` and its plots (``docs/accuracy/*.png``) from ``sources``, describing
    ``maps`` (default: the shipped ones) as the maps in force; ``own_map`` names the file of one
    fitted for the operator's own population."""
    folder = docs / "accuracy"
    folder.mkdir(parents=True, exist_ok=True)
    results = sources.lfw()
    cfp = {m: json.loads(p.read_text()) for m in MODEL_NAMES if (p := sources.results / f"cfp-{m}.json").exists()}
    if any(r.get("limit") is not None for r in cfp.values()):
        raise ValueError(f"{sources.results} holds reduced CFP runs (--limit): publish full runs only")
    full = {m: r for m, r in results.items() if r.get("limit") is None}
    if len(full) != len(results):
        raise ValueError(f"{sources.results} holds reduced runs (--limit): publish full runs only")
    maps = maps or {m: SimilarityMap.load(m) for m in MODEL_NAMES}
    fusion = json.loads(FUSION_FILE.read_text())
    _plots(folder, results, maps)
    text = "\n".join(
        [
            _header(),
            _in_force(maps, own_map),
            _meaning(maps),
            _accuracy(results, fusion, sources),
            _tar(results),
            _pose(cfp),
            users_section(sources),
            _thresholds(maps, results),
            _heldout(maps),
            label_noise_section(sources, maps),
            _highest(maps),
            _fusion(fusion, sources),
            _method(maps),
        ]
    )
    path = docs / "accuracy.md"
    path.write_text(text)
    return path


def _plots(folder: Path, results: dict[str, Any], maps: dict[str, SimilarityMap]) -> None:
    curves = {}
    for model, result in results.items():
        label, data = (
            ("LFW all pairs", result["curves"]["LFW all pairs"])
            if "LFW all pairs" in result["curves"]
            else ("LFW pairs.txt", result["curves"]["LFW pairs.txt"])
        )
        curves[f"{model} ({label})"] = Curve.from_json(data)
    roc_plot(curves, folder / "roc.png", "ROC of each face model on LFW")
    det_plot(curves, folder / "det.png", "DET of each face model on LFW")
    similarity_plot(maps, folder / "similarity.png")
    heldout_plot({m: s.metadata["heldout_check"]["rows"] for m, s in maps.items()}, folder / "heldout.png")


def _header() -> str:
    return f"""# Accuracy

<!-- Written by `visage eval docs` on {date.today().isoformat()}; do not edit by hand. -->

Every number and plot on this page is written by a script from measurements on
real labelled faces (LFW, see `../shared/eval/lfw/SOURCE.md`). To reproduce:

```sh
visage eval fusion-weight --install                     # the fusion model's weight, on LFW pairsDevTrain
visage eval calibrate --install                         # the Similarity maps (visage/data/similarity/*.json)
visage eval lfw --model sface --out docs/accuracy       # likewise --model dlib, --model fusion
python benchmarks/engine_speed.py                       # each model's embedding time
visage eval cfp --model sface --out docs/accuracy       # pose (CFP); likewise dlib, fusion
python benchmarks/several_photos.py                     # users of one face and of five (SearchUsers)
visage eval docs --out docs                             # this page
```

(`make figures` runs them all. Without `--install` and `--out`, each command writes to
a new folder under the current directory, and nothing that ships changes.)

**A face match must never decide alone.** A trained person must review every
identification that matters, with the photos side by side. LFW is mostly
photographs of white, male, middle-aged public figures; false-match rates for
other groups can be higher than the ones measured here (see the bias audit).
"""


def labels_in_fit(meta: dict[str, Any]) -> str:
    """What a map's pairs were drawn from: which face of each image, which labels, how many photos
    of each person (maps fitted before these were recorded: every image's central face, as labelled)."""
    labels = meta.get("labels", {"face": "the face nearest the centre of each image", "photos_per_person": "all"})
    corrections = [
        f"{len(labels['same_people'])} people filed under two names counted once" if labels.get("same_people") else "",
        f"{len(labels['left_out'])} photos filed under a wrong name left out" if labels.get("left_out") else "",
    ]
    cleaned = "; ".join(c for c in corrections if c) or "labels as given"
    per_person = labels["photos_per_person"]
    photos = "every photo of each person" if per_person == "all" else f"at most {per_person} photos of each person"
    return f"{labels['face']}; {cleaned}; {photos}"


def _in_force(maps: dict[str, SimilarityMap], own_map: Path | None) -> str:
    rows = []
    for model, mapping in maps.items():
        shipped = own_map is None or mapping.model != SimilarityMap.read(own_map).model
        source = f"`visage/data/similarity/{model}.json` (shipped)" if shipped else f"`{own_map}`"
        reach = mapping.metadata.get("measured_down_to")
        measured = f"{_sci(reach['fmr'])} (Similarity {reach['similarity']:g})" if reach else "not recorded"
        scale = (
            "graded on log FMR"
            if "graded_below" in mapping.metadata
            else f"linear only: 0 for FMR above {_sci(100 * FMR_PER_POINT)}, not yet refit"
        )
        rows.append(
            f"| {model} | {source} | {mapping.fitted_on} | {mapping.metadata.get('fitted', '?')} | "
            f"{mapping.metadata.get('people_with_a_face', mapping.metadata.get('people', '?')):,} | {measured} | "
            f"{scale} | {labels_in_fit(mapping.metadata)} |"
        )
    return f"""
## The maps in force

Which Similarity map each face model uses here, and what it was fitted on. A server
uses the shipped maps unless it is started with `--similarity-map FILE`
(`VISAGE_SIMILARITY_MAP`), a map fitted on the operator's own population with
`visage eval calibrate --data DIR` (one folder per person); `visage eval docs
--similarity-map FILE` writes this page for that map. Every rate on this page
holds for the population its map was fitted on.

| Face model | Map | Fitted on | Fitted | People | FMR measured down to | Below Similarity {LINEAR_FROM:g} | Pairs from |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def _meaning(maps: dict[str, SimilarityMap]) -> str:
    comparisons = GALLERY * PROBES
    rows = []
    for similarity in (20.0, 40.0, 80.0, 90.0, 95.0, 99.0, 99.9):
        fmr = fmr_for_similarity(similarity)
        rows.append(
            f"| {similarity:g} | {_sci(fmr)} | 1 in {round(1 / fmr):,} | {_count(fmr * comparisons)} | "
            f"{_count(fmr * GALLERY)} |"
        )
    return f"""
## What a Similarity means

For every face model, **a Similarity S of {LINEAR_FROM:g} or more means a false-match rate of
(100 - S) x {FMR_PER_POINT:g}**: each point of Similarity from {LINEAR_FROM:g} to 100 is one false match in
{round(1 / FMR_PER_POINT):,} comparisons of two different people. A threshold of 99 lets through about 1 in
{round(1 / fmr_for_similarity(99)):,} pairs of different people; 80 lets through 1 in {round(1 / fmr_for_similarity(80)):,}.
(The scale keeps the thresholds Rekognition users already write at least as strict as
Rekognition's: see `visage.evaluation.calibration`.)

**Below {LINEAR_FROM:g} the scale is graded on the logarithm of the false-match rate**, from
{LINEAR_FROM:g} at {_sci(LINEAR_FMR)} down to 0 at an FMR of 1: S = {LINEAR_FROM:g} x log(FMR) / log({LINEAR_FMR:g}). A
threshold of 40 lets through 1 in {round(1 / fmr_for_similarity(40)):,} pairs of different people, 20 lets
through 1 in {round(1 / fmr_for_similarity(20)):,}, 10 lets through 1 in {round(1 / fmr_for_similarity(10)):,}. So pairs of strangers spread over
0-{LINEAR_FROM:g} instead of all reading 0, and two photos of one person that fall short of {LINEAR_FROM:g} (a turned
head, poor light) still score above strangers: results at a low threshold come back
in a useful order. Everything at {LINEAR_FROM:g} and above means exactly what it meant before.
{_not_regraded(maps)}
A search compares the probe with every face in the collection, so false matches
add up. Searching a gallery of {GALLERY:,} faces with {PROBES} probe photos makes
{comparisons:,} comparisons, and the expected number of false matches is the
false-match rate times that:

| Threshold | FMR | one false match in | expected false matches, {PROBES} probes x {GALLERY:,} faces | per probe |
|---|---|---|---|---|
{chr(10).join(rows)}

At a threshold of 80 (Rekognition's default, which Visage keeps), each probe would bring back about
{_count(fmr_for_similarity(80.0) * GALLERY)} false matches from such a gallery. Use 99 or higher for anything
consequential, and even then have a person check every match.

These rates hold for faces like LFW's (news photographs, mostly frontal, good
light). Poorer photos, other populations and larger galleries change them.
"""


def _not_regraded(maps: dict[str, SimilarityMap]) -> str:
    """A warning naming the maps still fitted on the linear scale alone, if any."""
    old = [m for m, s in maps.items() if "graded_below" not in s.metadata]
    if not old:
        return ""
    plural = len(old) > 1
    return f"""
**Not yet for {" and ".join(old)}:** {"their maps were" if plural else "its map was"} fitted on the linear scale
alone and {"have" if plural else "has"} not been refit since: below {LINEAR_FROM:g} {"they read" if plural else "it reads"} 0 for every
FMR above {_sci(100 * FMR_PER_POINT)} (the band at {LINEAR_FROM:g} and above is the same).
`visage eval calibrate --models {" --models ".join(old)}` refits {"them" if plural else "it"}.
"""


def _accuracy(results: dict[str, Any], fusion: dict[str, Any], sources: Sources) -> str:
    rows = []
    for model, r in results.items():
        a = r["accuracy"]
        rows.append(
            f"| {model} | {r['face_model_version']} | {100 * a['mean']:.2f} % +/- {100 * a['std']:.2f} | "
            f"{r['pairs_without_face']} | {sources.embed_ms(model):g} |"
        )
    return f"""
## LFW verification accuracy

The standard protocol on LFW View 2 (`pairs.txt`: 10 folds of 300 same-person and
300 different-person pairs; each fold's threshold is chosen on the other nine; a
pair with an image where no face is found scores -1 and counts). Mean +/- standard
deviation over the ten folds. Embedding time is the face model alone, per face
(detection is shared by all models and not included): {sources.images_timed()},
`benchmarks/engine_speed.py` (docs/performance.md).

| Face model | Version | 10-fold accuracy | Pairs without a face | Embed ms per face |
|---|---|---|---|---|
{chr(10).join(rows)}

The fusion model's goal was at least 99.5 % and above either model alone:
{_goal(results)}
"""


def _goal(results: dict[str, Any]) -> str:
    if not {"sface", "dlib", "fusion"} <= set(results):
        return "not measured (a model's results are missing)."
    fused = results["fusion"]["accuracy"]["mean"]
    best = max(results["sface"]["accuracy"]["mean"], results["dlib"]["accuracy"]["mean"])
    parts = [
        "reached" if fused >= 0.995 else "**not reached**" + f" ({100 * fused:.2f} % < 99.5 %)",
        "above both" if fused > best else "**not above both models**",
    ]
    return " and ".join([f"99.5 % {parts[0]}", parts[1]]) + "."


def _tar(results: dict[str, Any]) -> str:
    rows = []
    for model, r in results.items():
        cells = []
        for protocol in ("pairs.txt", "all_pairs"):
            for row in r["tar_at_far"].get(protocol, [{}, {}]):
                if not row:
                    cells.append("not run")
                elif not row["resolvable"]:
                    cells.append(f"{100 * row['tar']:.2f} % (n/r)")
                else:
                    cells.append(f"{100 * row['tar']:.2f} %")
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    counts = {
        (r["tar_at_far"]["all_pairs"][0]["genuine_pairs"], r["tar_at_far"]["all_pairs"][0]["impostor_pairs"])
        for r in results.values()
        if "all_pairs" in r["tar_at_far"]
    }
    sizes = " or ".join(f"{g:,} same-person and {i:,} different-person pairs" for g, i in sorted(counts)) or "not run"
    return f"""
## True accept rate at a fixed false accept rate

TAR is the share of same-person pairs accepted at the threshold that accepts at
most the given share (FAR) of different-person pairs. `pairs.txt` has only 3,000
different-person pairs, so FAR 1e-4 cannot be resolved there (n/r: the figure is
TAR with no impostor accepted). "All pairs" uses every pair of LFW images where
a face was found: {sizes}. Same-person pairs there are dominated by the people
with many photos.

| Face model | pairs.txt FAR 1e-3 | pairs.txt FAR 1e-4 | all pairs FAR 1e-3 | all pairs FAR 1e-4 |
|---|---|---|---|---|
{chr(10).join(rows)}

![ROC](accuracy/roc.png) ![DET](accuracy/det.png)
"""


def _pose(cfp: dict[str, Any]) -> str:
    if not cfp:
        return ""
    rows = []
    for model, r in cfp.items():
        cells = []
        for protocol in ("FF", "FP"):
            p = r["protocols"][protocol]
            cells.append(f"{100 * p['accuracy']['mean']:.2f} % +/- {100 * p['accuracy']['std']:.2f}")
        for protocol in ("FF", "FP"):
            tar = r["protocols"][protocol]["tar_at_far"]
            cells.append(f"{100 * tar['tar']:.2f} %" + ("" if tar["resolvable"] else " (n/r)"))
        cells.append(f"{len(r['images_without_face'])} of {r['images']:,}")
        rows.append(f"| {model} | {r['face_model_version']} | " + " | ".join(cells) + " |")
    first = next(iter(cfp.values()))
    folds = ", ".join(map(str, first["protocols"]["FF"]["accuracy"]["folds"]))
    missing, refused = len(first["images_without_face"]), len(first.get("images_refused", []))
    return f"""
## Across pose: CFP frontal-frontal and frontal-profile

CFP (Celebrities in Frontal-Profile) pairs a frontal photo with another frontal
photo (FF) or with a profile photo (FP, close to 90 degrees of yaw) of the same or
another person. The official pairs of folds {folds} (350 same-person and 350 different-person
pairs each; the people of one fold appear in no other); each fold's threshold is chosen
on the other folds (`visage eval cfp`). An image where no face is found, or that is
refused (smaller than 80 px), scores -1 and counts as a miss. TAR at FAR 1e-3 is over
all of a protocol's pairs (1,750 different-person pairs: at most one false accept).
Of the {missing} images without a face, {refused} are refused (under 80 px on a side, as
Rekognition refuses them) and {missing - refused} hold a face the detector does not find; a face
that fills the whole frame is looked for once more with a black border around the image
(docs/engine.md). `sface-crops` is sface on six crops of each face (the aligned crop
zoomed out and in by 10 %, each also mirrored), its vector their normalised sum: the
way of using sface on turned faces whose accuracy was higher on FF, FP and LFW alike
(its TAR at FAR 1e-3 on FP was not), at six times the embedding time, so it is a face
model to choose, not the default. Other ways (flip
averaging alone, alignment without the nose tip or on dlib's 68 points, shifted crops)
were measured on the same pairs by `benchmarks/pose_variants.py` (docs/performance.md).

| Face model | Version | FF accuracy | FP accuracy | FF TAR at FAR 1e-3 | FP TAR at FAR 1e-3 | Images without a face |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def users_section(sources: Sources) -> str:
    """How a user's Similarity comes from its faces, and what five faces buy over one
    (``benchmarks/several_photos.py``'s results; "" without them)."""
    if sources.several_photos is None or not sources.several_photos.exists():
        return ""
    data = json.loads(sources.several_photos.read_text())
    n, probe = data["people"], data["probe_abs_yaw"]
    users = {(r["faces_per_user"], r["threshold"]): r for r in data["rows"] if r["operation"] == "SearchUsersByImage"}
    rows = [
        f"| {faces} | {threshold:g} | "
        + " | ".join(f"{r[k]} ({100 * r[k] / n:.1f} %)" for k in ("hits", "false_identifications", "misses"))
        + " |"
        for (faces, threshold), r in users.items()
    ]
    strangers = "; ".join(
        f"at {t:g}, {users[(1, t)]['any_stranger']} with one face and {users[(5, t)]['any_stranger']} with five"
        for t in sorted({t for _, t in users})
    )
    return f"""
## Several photos per person: SearchUsers

A user (CreateUser, then AssociateFaces) gathers up to {MAX_FACES_PER_USER} faces of one person.
SearchUsers and SearchUsersByImage give each user **the Similarity of its best face**: the
highest Similarity between the probe and any face associated with the user (for SearchUsers
with a `UserId`, the highest over every pair of a face of the searched user and a face of
the other). Users are ranked by that face's raw cosine, and a user is returned when that
Similarity reaches `UserMatchThreshold`. Nothing is averaged: a face added to a user can
raise its score, never lower it. Faces that belong to no user are not searched.

For people seen in several poses (or at several ages, in several lights), make each a user
with a few photos that cover those poses, and search with SearchUsersByImage: the answer
comes as one result per person, not one per face. The best face deciding holds
for strangers too: each face a user holds is one more chance for a stranger to reach the
threshold, so a user of k faces can be falsely matched up to about k times as often as a
single face (the false-match rates above are per pair of faces).

Measured on the {n} LFW people with at least {data["min_images"]} images where a face is found. Each
person is probed with their most turned face (the largest |Yaw| DetectFaces gives; median
{probe["median"]:g} degrees, quartiles {probe["p25"]:g}-{probe["p75"]:g}, largest {probe["max"]:g}) against users that hold one or five
other photos of them: five drawn at random from the rest, the one-face user holding the
first of them. Every other person's user is a distractor. The first result of
SearchUsersByImage is the person's own user (a hit), another user (a false identification)
or none (a miss):

| Faces per user | UserMatchThreshold | Hits | False identifications | Misses |
|---|---|---|---|---|
{chr(10).join(rows)}

Probes that brought back any other user among the first {data["max_results"]}: {strangers}.
`python benchmarks/several_photos.py` (face model {data["face_model_version"]}, commit {data["commit"][:12]}) measures it;
its table in docs/performance.md adds SearchFacesByImage against the one-face users (the
same answers, as the best face decides) and the hits by how turned the probe is.
"""


def _thresholds(maps: dict[str, SimilarityMap], results: dict[str, Any]) -> str:
    parts = [
        """
## Thresholds: false matches and false non-matches

At each Similarity threshold, per face model: the raw cosine it corresponds to;
the FMR measured on every pair of different people the map was fitted on (LFW, with
the labels and photos of "Pairs from" above), with the number of
false matches (and, where counted, how many different pairs of people they come
from); and the FNMR, the share of same-person pairs scoring below the threshold,
over the same-person pairs of those photos
and over the 3,000 same-person pairs of `pairs.txt` (one pair per draw, closer
to a typical person). The maps are fitted on these same pairs, so the measured
FMR agrees with the definition by construction; the next section checks it on
people the fit never saw.
"""
    ]
    for model, mapping in maps.items():
        meta = mapping.metadata
        standard = {r["similarity"]: r for r in results.get(model, {}).get("at_similarity", [])}
        rows = []
        for row in meta["table"]:
            pairs_txt = standard.get(row["similarity"])
            people = f", {row['people_pairs']:,} pairs of people" if row.get("people_pairs") is not None else ""
            rows.append(
                f"| {row['similarity']:g} | {_sci(row['predicted_fmr'])} | {row['raw_threshold']:.3f} | "
                f"{_sci(row['observed_fmr'])} ({row['false_matches']:,}{people}) | {100 * row['fnmr']:.2f} % | "
                + (
                    f"{100 * pairs_txt['fnmr']:.1f} % ({pairs_txt['false_non_matches']} of {pairs_txt['same_pairs']:,})"
                    if pairs_txt
                    else "not run"
                )
                + " |"
            )
        parts.append(f"""
### {model}

{meta["genuine_pairs"]:,} same-person and {meta["impostor_pairs"]:,} different-person pairs.

| Similarity | FMR by definition | cosine | FMR measured (false matches) | FNMR, all same-person pairs | FNMR, pairs.txt |
|---|---|---|---|---|---|
{chr(10).join(rows)}
""")
    parts.append("\n![Similarity maps](accuracy/similarity.png)\n")
    return "".join(parts)


def label_noise_section(sources: Sources, maps: dict[str, SimilarityMap]) -> str:
    """What the held-out check's failures come from: LFW's labels cleaned, then at most a few photos
    per person (``benchmarks/label_cleaning.py``'s results; "" without them), and whether ``maps``
    are fitted that way."""
    if sources.label_cleaning is None or not sources.label_cleaning.exists():
        return ""
    data = json.loads(sources.label_cleaning.read_text())
    variants = data["checks"]
    rows = [
        f"| {name} | {sum(s['passed'] for s in splits)} of {len(splits)} | "
        + " | ".join(f"{s['ratios']['80.0']:.2f} / {s['ratios']['99.0']:.2f}" for s in splits)
        + " |"
        for name, splits in variants.items()
    ]
    clean = next(splits for name, splits in variants.items() if "wrong names left out" in name)
    others = []  # the same run for the other face models, beside sface's results
    for path in sorted(sources.label_cleaning.parent.glob(f"{sources.label_cleaning.stem}_*.json")):
        other = json.loads(path.read_text())
        capped_other = other["checks"][other["capped_variant"]]
        others.append(
            f"{other['model']}: {sum(s['passed'] for s in other['checks'][next(iter(other['checks']))])} of 5 as "
            f"labelled and {sum(s['passed'] for s in capped_other)} of 5 clean with at most "
            f"{other['photos_per_person']} photos per person, in benchmarks/results/{path.with_suffix('.md').name}"
        )
    capped = [
        m for m, s in maps.items() if s.metadata.get("labels", {}).get("photos_per_person") == data["photos_per_person"]
    ]
    fitted_so = (
        f"The maps in force for {', '.join(capped)} are fitted this way (`visage eval calibrate --install --refit-from-50`"
        " rewrites the shipped ones)"
        if capped
        else "The maps in force are not fitted this way"
    )
    worst = max(clean, key=lambda s: s["false_matches"]["80.0"])
    a, b, n = worst["largest_people_pairs_at_80"][0]
    seeds = " | ".join(f"split {s['seed']}" for s in clean)
    return f"""
### What the failures come from

`python benchmarks/label_cleaning.py` ({data["face_model_version"]}, commit {data["commit"][:12]}) runs the
same check on the same five seeds with LFW's labels cleaned, one step at a time
(`visage/data/lfw_labels.json` lists each correction with its evidence:
{data["same_people_groups"]} people filed under two names, counted once; {len(data["mislabelled"])} photos
filed under a name that is not the person shown, left out), and then with at most a
few photos of each person. Each cell is observed / predicted FMR at Similarity 80 and at 99.

| labels | splits passed | {seeds} |
|---|---|{"---|" * len(clean)}
{chr(10).join(rows)}

Cleaning the labels is not enough: the false matches come from the people LFW
photographs most and their look-alike relatives. In split {worst["seed"]}, {n:,} of the
{worst["false_matches"]["80.0"]:,} held-out false matches at Similarity 80 are pairs of
{a.replace("_", " ")}'s and {b.replace("_", " ")}'s photos; George W Bush alone has 530 photos.
Whichever half holds such a family decides the rate. With at most
{data["photos_per_person"]} photos of each person the check holds on
{sum(s["passed"] for s in variants[data["capped_variant"]])} of 5 splits{" (" + "; ".join(others) + ")" if others else ""}. {fitted_so};
`visage eval calibrate` fits on clean labels and at most {data["photos_per_person"]} photos per person by
default, for a map of your own population too, and `--raw-labels --photos-per-person 0`
fits on every LFW image as labelled. A gallery with many photos of a few people and of their relatives will
see more false matches than the rates above promise.
"""


def _heldout(maps: dict[str, SimilarityMap]) -> str:
    parts = [
        f"""
## The calibration checked on people it never saw

Each map is first fitted on a random half of the people it is fitted on (LFW's
{next(iter(maps.values())).metadata["people"]:,} for the shipped maps), and the FMR it predicts at each threshold is
compared with the FMR observed on the pairs of the other half. The rule: within a factor of {CHECK_FACTOR:g} for every predicted FMR down to
{_sci(CHECK_DOWN_TO)}. The published maps are then fitted on everyone.

Read the small counts with care. The 95 % intervals are exact binomial intervals,
which assume every pair is an independent draw. They are not: one mislabelled or
duplicated image makes a false match with every photo of the person it really
shows, so false matches come in clusters. The "pairs of people" column counts the
distinct pairs of names behind the false matches (at Similarity 99 and above);
when it is much smaller than the count of false matches, the real uncertainty is
wider than the interval shown. Rows below {_sci(CHECK_DOWN_TO)} are beyond what half of LFW can
measure and are shown, not checked.

![Held-out check](accuracy/heldout.png)
"""
    ]
    for model, mapping in maps.items():
        check = mapping.metadata["heldout_check"]
        fit, held = check["fit_half"], check["check_half"]
        rows = [
            f"| {r['similarity']:g} | {_sci(r['predicted_fmr'])} | {r['false_matches']:,} | "
            f"{'' if r.get('people_pairs') is None else format(r['people_pairs'], ',')} | {_sci(r['observed_fmr'])} "
            f"({_sci(r['observed_fmr_95ci'][0])} to {_sci(r['observed_fmr_95ci'][1])}) | {r['ratio']:.2f}"
            f"{'' if is_checked(r['predicted_fmr'], r['impostor_pairs']) else ' (not checked)'} | {100 * r['fnmr']:.2f} % |"
            for r in check["rows"]
        ]
        parts.append(f"""
### {model}: {"passed" if check["passed"] else "**failed**"}

Fitted on {fit["images"]:,} images ({fit["impostor_pairs"]:,} impostor pairs), checked on {held["images"]:,} images
({held["impostor_pairs"]:,} impostor pairs, {held["genuine_pairs"]:,} genuine pairs).

| Similarity | predicted FMR | false matches | pairs of people | observed FMR (95 % CI) | observed / predicted | FNMR |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{_other_splits(check, mapping.metadata.get("other_splits", []))}
""")
    return "".join(parts)


def _other_splits(check: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """The same check on other random halves: how much the answer depends on who lands where."""
    if not others:
        return ""
    splits = [
        {
            "seed": check["seed"],
            "passed": check["passed"],
            "ratios": {str(r["similarity"]): r["ratio"] for r in check["rows"]},
            "false_matches": {str(r["similarity"]): r["false_matches"] for r in check["rows"]},
            "largest_people_pair": {str(r["similarity"]): r["largest_people_pair"] for r in check["rows"]},
        },
        *others,
    ]
    header = "| Similarity | " + " | ".join(f"split {s['seed']}" for s in splits) + " |"
    rule = "|---|" + "---|" * len(splits)
    rows = []
    for row in check["rows"]:
        key = str(row["similarity"])
        rows.append(
            f"| {row['similarity']:g} | "
            + " | ".join(f"{s['ratios'][key]:.2f} ({s['false_matches'][key]:,})" for s in splits)
            + " |"
        )
    largest = []
    for s in splits:
        biggest = s["largest_people_pair"].get(str(TAIL_SIMILARITY))
        if biggest:
            total = s["false_matches"][str(TAIL_SIMILARITY)]
            largest.append(
                f"split {s['seed']}: {' and '.join(biggest['people'])}, {biggest['false_matches']:,} of {total:,}"
            )
    verdicts = ", ".join(f"{s['seed']} {'passed' if s['passed'] else 'failed'}" for s in splits)
    return f"""The same check on {len(splits)} random splits (observed / predicted, with the false matches
counted); the first is the one above, whose seed was fixed before any result was seen.
Verdicts: {verdicts}.

{header}
{rule}
{chr(10).join(rows)}

The pair of people with the most false matches at Similarity {TAIL_SIMILARITY:g}, per split: {"; ".join(largest)}.
"""


def _highest(maps: dict[str, SimilarityMap]) -> str:
    parts = [
        """
## The highest-scoring pairs of different people

At the strictest thresholds the false matches are few enough to look at. These
are the highest-scoring pairs LFW labels as different people, per model. Looked
at by eye, most of them are not false matches at all but errors in LFW's labels:
one person filed under two spellings of a name, a photo filed under the wrong
person, or the same news photo filed twice; some are twins or siblings. A map fitted
on clean labels leaves out only the errors `visage/data/lfw_labels.json` lists, each
with evidence from outside the face model (a name, a caption, the same photo under two
names); the pairs listed here are what remains, and they stay in the fit: removing them
on the model's word would mean trusting it to judge its own mistakes. Their effect is to
make the strictest thresholds stricter than they need be, which errs on the side of
fewer false matches.
"""
    ]
    for model, mapping in maps.items():
        rows = [
            f"| {score:.3f} | {left} | {right} |" for score, left, right in mapping.metadata["highest_impostor_pairs"]
        ]
        parts.append(f"""
### {model}

| cosine | image | image |
|---|---|---|
{chr(10).join(rows)}
""")
    return "".join(parts)


def _fusion(fusion: dict[str, Any], sources: Sources) -> str:
    dev = fusion["dev_train_accuracy"]
    costs = {m: f"{sources.embed_ms(m):g}" for m in MODEL_NAMES}
    return f"""
## The fusion model

`fusion` embeds each face with both sface and dlib and keeps one 256-dimensional
unit vector, [sqrt(w) x sface, sqrt(1 - w) x dlib], whose cosine is
w x cos(sface) + (1 - w) x cos(dlib). It is stored and searched like any other
vector, and calibrated like the others. w = {fusion["sface_weight"]} ({fusion["version"]}) was chosen on
{fusion["chosen_on"]}; pairs.txt played no part. 10-fold accuracy on pairsDevTrain: fusion
{100 * dev["fusion"]:.2f} %, sface {100 * dev["sface"]:.2f} %, dlib {100 * dev["dlib"]:.2f} %.

Its cost is both models': {costs["fusion"]} ms per face to embed, against {costs["sface"]} ms for sface
and {costs["dlib"]} ms for dlib (the same benchmark run as the table above).
"""


def _method(maps: dict[str, SimilarityMap]) -> str:
    rows = [
        f"| {m} | {s.metadata['images']:,} | {s.metadata['images_without_face']} | {s.metadata['fitted']} | "
        f"{labels_in_fit(s.metadata)} |"
        for m, s in maps.items()
    ]
    above = [f"- **{m}**: {s.metadata['extrapolation']}." for m, s in maps.items()]
    kept = [f"- **{m}**: {s.metadata['kept_from_50']}." for m, s in maps.items() if "kept_from_50" in s.metadata]
    return f"""
## How the maps are fitted

Genuine pairs are every pair of images of the same person, impostor pairs every
pair of images of different people, over LFW's images as each map's "Pairs from" says
(its table below repeats it). Images where no face is found are left out of the fit
(listed in the map's metadata). The map's knots sit at empirical quantiles of the
impostor scores, ten per decade of FMR from {FIRST_LEVEL_FMR:.2f} down to the last level with at least
{MIN_EVENTS} impostor pairs above it (cosine -1 is FMR 1, Similarity 0); between knots log FMR is
interpolated linearly in the cosine, which keeps the map smooth and strictly increasing.
Where the map reaches Similarity {LINEAR_FROM:g} a knot joins the two pieces of the scale, and from it up
the map is the linear scale's. Above the last knot the FMR cannot be measured, and the map
is deliberately conservative:

{chr(10).join(above)}

A refit on LFW keeps the shipped map's band at and above Similarity {LINEAR_FROM:g}, knot for knot, so
the cosine behind a threshold users have written does not move with each rerun; the data
fit the band below (`visage eval calibrate --refit-from-50` refits the band too):

{chr(10).join(kept) or "- none of the maps in force was refit this way."}

| Face model | Images | Without a face | Fitted | Pairs from |
|---|---|---|---|---|
{chr(10).join(rows)}
"""


def _sci(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}".replace("e-0", "e-")


def _count(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"
