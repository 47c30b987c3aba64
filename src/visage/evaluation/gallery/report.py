"""docs/gallery.md from a gallery run's JSON (:mod:`visage.evaluation.gallery.command`): every figure from the run."""

from __future__ import annotations

from typing import Any

# The ACLU's 2018 test of Rekognition (ACLU, "Amazon's Face Recognition Falsely Matched 28
# Members of Congress With Mugshots", 26 July 2018): its size, for scale.
ACLU_PROBES = 535
ACLU_GALLERY = 25_000
ACLU_FALSE_MATCHES = 28  # members falsely matched


def _controls(controls: dict[str, Any] | None) -> list[str]:
    """The line on the control searches of a reduced run (people who are in the gallery)."""
    if not controls or not controls["searched"]:
        return []
    found = ", ".join(f"{n:,} at {t}" for t, n in controls["found"].items())
    return [
        f"- Controls: {controls['searched']:,} people who are in the gallery, each searched with one of their images "
        f"left out of it; their own person was found: {found}."
    ]


def gallery_markdown(result: dict[str, Any]) -> str:
    run = "full run" if result["limit"] is None else f"reduced run (gallery limited to {result['limit']:,} images)"
    rows = result["thresholds"]
    lines = [
        "<!-- Written by `visage eval gallery`; do not edit by hand. -->",
        "",
        "# Searching people who are not there: false matches in a 1:N gallery",
        "",
        f"Written by `visage eval gallery --out docs/gallery --markdown docs/gallery.md` ({run}, {result['created']}, "
        f"{result['runtime_seconds']:.0f} s: indexing {result['index_seconds']:.0f} s, searching {result['search_seconds']:.0f} s). "
        f"Face model {result['face_model_version']}; Similarity from its map: {result['similarity_map']['method'] or 'no method recorded'}.",
        "",
        "## Set-up",
        "",
        f"- Probes: {result['probe_people']:,} LFW people chosen with seed {result['seed']}, one image each, searched with "
        f"SearchFacesByImage (FaceMatchThreshold {min(r['threshold'] for r in rows):g}, MaxFaces 4096); "
        f"{result['probes_searched']:,} had a face to search.",
        f"- Gallery: {result['gallery_images']:,} images (every other LFW image, the UTKFace crops, the FairFace faces), "
        f"indexed through a `visage serve` started for the run, with boto3's IndexFaces (MaxFaces 1, QualityFilter "
        f"left at its default AUTO): {result['gallery_faces']:,} faces stored; "
        f"{result['gallery_images_without_indexed_face']:,} images stored none ({_reasons(result['unindexed_reasons'])}).",
        "- No image of a probe person is in the gallery, so every match is a false match.",
        *_controls(result.get("controls")),
        f"- Comparisons: {rows[0]['comparisons']:,} (searched probes x gallery faces).",
        "",
        "## Observed against the calibration",
        "",
        "| Similarity threshold | promised FMR | expected false matches (95 % range) | observed | | "
        "expected probes with a false match (95 % range) | observed | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threshold']:g} | {_fmr(r['predicted_fmr'])} | {_expected(r['expected_false_matches'], r['false_matches_range95'])} "
            f"| {r['false_matches']:,} | {r['false_matches_verdict']} "
            f"| {_expected(r['expected_probes'], r['probes_range95'])} | {r['probes_with_false_match']:,} | {r['probes_verdict']} |"
        )
    lines += [
        "",
        "By part of the gallery (the calibration was fitted on LFW pairs):",
        "",
        "| gallery part | faces | "
        + " | ".join(f"at {r['threshold']:g}: observed / expected (95 % range)" for r in rows)
        + " |",
        "|---|---|" + "---|" * len(rows),
    ]
    for part, entry in result["by_source"].items():
        cells = [
            f"{r['false_matches']:,} / {_expected(r['expected_false_matches'], r['false_matches_range95'])}"
            for r in entry["thresholds"]
        ]
        lines.append(f"| {part} | {entry['faces']:,} | " + " | ".join(cells) + " |")
    top = max(rows, key=lambda r: r["threshold"])
    lines += [
        "",
        f"Goal: no false match at Similarity {top['threshold']:g}. "
        + (
            "Met: none was found."
            if top["false_matches"] == 0
            else f"Not met: {top['false_matches']:,} false match{'es' if top['false_matches'] > 1 else ''} "
            f"(for {top['probes_with_false_match']:,} probes) were found."
        ),
        "",
        'What "within" means: the number of false matches is compared with the central 95 % range of a Poisson count '
        "whose mean is the promised FMR times the number of comparisons; the number of probes with at least one false "
        "match with the central 95 % range of a binomial count, each probe matching falsely with probability "
        "1 - (1 - FMR)^(gallery faces).",
        "",
    ]
    lines += _aclu(rows)
    at_top = [m for m in result["false_matches"] if m["similarity"] >= top["threshold"]]
    matches = at_top or result["false_matches"][:10]
    lines += [
        f"## The false matches at Similarity {top['threshold']:g} and above"
        if at_top
        else "## The highest-scoring false matches",
        "",
    ]
    if matches:
        lines += [
            "Look at these before reading them as errors: a match with a person filed under another name, or with a "
            "UTKFace photo of the same public figure, is a true match that this set-up counts as false.",
            "",
            "| probe | gallery image | Similarity |",
            "|---|---|---|",
        ]
        lines += [f"| {m['probe']} | {m['gallery']} | {m['similarity']:.3f} |" for m in matches]
    else:
        lines.append("None at or above the lowest threshold.")
    lines += [
        "",
        "## Caveats",
        "",
        "- False matches are not independent events: a probe that resembles many faces, or a gallery face that resembles "
        "many probes, adds several at once. The Poisson and binomial ranges ignore this and are narrower than the real "
        "spread; an observed count just outside them is a warning, not a proof.",
        '- "Every match is false" assumes no probe person is in the gallery under another name or in the background: '
        "LFW has a few people filed under two names and photos showing a second person (the largest face is the one "
        "indexed or searched), and UTKFace or FairFace may hold public figures. The matches listed above should be looked at.",
        "- The probes are LFW news photos of public figures; the gallery mixes those with UTKFace and FairFace crops. A "
        "gallery of mugshots or ID photos of another population would have other score distributions.",
    ]
    if result["limit"] is not None:
        lines.append("- This is a reduced run: its counts are small and meant for checking the code, not for citing.")
    if result["truncated_searches"]:
        lines.append(
            f"- {len(result['truncated_searches'])} searches returned the maximum of 4096 matches: their counts are lower bounds."
        )
    return "\n".join(lines) + "\n"


def _aclu(rows: list[dict[str, Any]]) -> list[str]:
    lowest = min(rows, key=lambda r: r["threshold"])
    fmr = lowest["predicted_fmr"]
    if fmr is None:
        return []
    per_probe = 1.0 - (1.0 - fmr) ** ACLU_GALLERY
    observed = lowest["false_matches"] / lowest["comparisons"] if lowest["comparisons"] else 0.0
    observed_per_probe = 1.0 - (1.0 - observed) ** ACLU_GALLERY
    return [
        f"For scale: the ACLU searched {ACLU_PROBES} members of Congress against {ACLU_GALLERY:,} mugshots at "
        f"Rekognition's threshold of 80, and {ACLU_FALSE_MATCHES} of them were falsely matched. At this calibration's Similarity "
        f"{lowest['threshold']:g} (FMR {fmr:.1e}), a search of that size would be expected to return "
        f"{fmr * ACLU_PROBES * ACLU_GALLERY:,.0f} false matches, for about {per_probe * ACLU_PROBES:,.0f} of the "
        f"{ACLU_PROBES} members; at the rate observed here ({observed:.1e}), about {observed_per_probe * ACLU_PROBES:,.0f} "
        f"members. A threshold of {lowest['threshold']:g} here is not Rekognition's 80, and a 1:N "
        "search over a large gallery needs a high threshold (99) and human review.",
        "",
    ]


def _fmr(fmr: float | None) -> str:
    return "none" if fmr is None else f"{fmr:.1e}"


def _expected(expected: float | None, allowed: list[int] | tuple[int, int] | None) -> str:
    if expected is None or allowed is None:
        return "n/a"
    shown = f"{expected:,.1f}" if expected >= 1 else f"{expected:.2g}"
    return f"{shown} ({allowed[0]:,}-{allowed[1]:,})"


def _reasons(reasons: dict[str, int]) -> str:
    if not reasons:
        return "no reasons given"
    return ", ".join(f"{name} {count:,}" for name, count in sorted(reasons.items(), key=lambda kv: -kv[1]))
